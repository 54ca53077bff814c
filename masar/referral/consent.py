"""Consent proofs: a sector takes a referral only with intake's word for it.

Intake owns the survivor's consents; a sector service cannot read intake's
database. So before a sector records a referral, its activity asks intake (as
the sector's service identity, `IntakeService.IssueConsentProof`) for a proof:
a document signed with the issuer's key, of its own type (never accepted as a
bearer token), naming the case and the sector, and valid for minutes. The
sector's request RPC (RequestPlacement, RequestLegalAid, RequestEnrolment)
verifies it and refuses the request without a valid one — so no code path,
not even a journey bug, can refer a survivor to a sector she has not
consented to. Withdrawing consent afterwards purges the sector (PurgeCase).

A proof stops working when its consent is withdrawn — without the sector
ever calling intake. A proof names when the consent it proves was given
(`consented_at`, intake's clock); the purge a withdrawal sends the sector
carries when it was withdrawn (`withdrawn_at`, intake's clock too, through
the journey: `CasePurge.withdrawn_at`), and the sector keeps it in the
ledger entry of that purge (scope "<sector>.purge", subject the case). From
then on `ConsentVerifier.check_current` refuses any proof of a consent given
at or before the last withdrawal it was told about — an already-issued,
unexpired proof replayed after the purge included — while a proof of a
consent given again afterwards passes. (Before the purge reaches the sector,
only the proof's minutes of life bound a replay.) A purge that carries no
time (a journey from before) counts from when the sector recorded it.

What it does not stop: a process that holds the issuer's signing key can
sign its own proofs (in the local stack every service holds it). Give intake
the signing key and the sectors only the public keys (MASAR_TOKEN_PUBLIC_KEY
plus MASAR_SERVICE_TOKEN) to make intake the only possible signer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from masar.contract import Sector
from masar.platform.clock import as_utc
from masar.platform.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from masar.platform.identity import Role, TokenIssuer, TokenVerifier

PROOF_TYPE = "masar-consent"
PROOF_TTL = timedelta(minutes=10)
PROOF_FIELD = "consent_proof"
# In a sector's purge ledger entry (its result): when intake recorded the withdrawal.
WITHDRAWN_AT = "withdrawn_at"
# How far ahead of the sector's clock intake's may be.
MAX_CLOCK_SKEW = timedelta(minutes=5)
_CASE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, kw_only=True)
class ConsentProof:
    case_id: str
    sector: Sector
    issued_at: datetime
    expires_at: datetime
    proof_id: str
    # When the consent it proves was given (None: a proof from before).
    consented_at: datetime | None = None

    @property
    def given_at(self) -> datetime:
        """The moment a withdrawal must postdate to void this proof."""
        return self.consented_at or self.issued_at


def issue_consent_proof(
    issuer: TokenIssuer,
    *,
    case_id: str,
    sector: Sector,
    ttl: timedelta = PROOF_TTL,
    now: datetime | None = None,
    consented_at: datetime | None = None,
) -> tuple[str, ConsentProof]:
    """Sign "the survivor of `case_id` consents to `sector`, since
    `consented_at`" (intake only: call it after reading the consent — and
    when it was given — in intake's own database)."""
    if not _CASE_ID.fullmatch(case_id):
        raise ValueError("case_id is not a case id")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims: dict[str, Any] = {
        "sub": Role.SERVICE_INTAKE.value,
        "case_id": case_id,
        "sector": sector.value,
    }
    if consented_at is not None:
        claims["consented_at"] = as_utc(consented_at).isoformat()
    document = issuer.sign_document(PROOF_TYPE, claims, ttl=ttl, now=issued)
    claims = issuer.verifier().verify_document(document, PROOF_TYPE, now=issued)
    return document, _proof(claims)


def _proof(claims: dict[str, object]) -> ConsentProof:
    consented = claims.get("consented_at")
    return ConsentProof(
        case_id=str(claims["case_id"]),
        sector=Sector(str(claims["sector"])),
        issued_at=datetime.fromtimestamp(int(str(claims["iat"])), UTC),
        expires_at=datetime.fromtimestamp(int(str(claims["exp"])), UTC),
        proof_id=str(claims.get("jti", "")),
        consented_at=as_utc(datetime.fromisoformat(str(consented))) if consented else None,
    )


def purge_scope(sector: Sector) -> str:
    """The ledger scope of a sector's purges (masar.referral's handshake)."""
    return f"{sector.value}.purge"


def withdrawal_time(told: datetime | None, now: datetime) -> datetime:
    """The withdrawal time a sector records for a purge: the one it was told
    (intake's clock), never more than MAX_CLOCK_SKEW ahead of its own (a time
    from the future would bar the case's next consent from the sector); the
    moment of the purge when it was told none."""
    if told is None:
        return now
    return min(as_utc(told), now + MAX_CLOCK_SKEW)


def last_withdrawal(
    session: Session, ledger: Table, sector: Sector, case_id: str
) -> datetime | None:
    """The latest withdrawal of the case's consent to `sector` the sector was
    told about: its purges' `withdrawn_at` (or, for a purge that carried no
    time, when the sector recorded it). None if it never was."""
    rows = session.execute(
        select(ledger.c.result, ledger.c.created_at).where(
            ledger.c.scope == purge_scope(sector), ledger.c.subject_id == case_id
        )
    ).all()
    latest: datetime | None = None
    for result, recorded_at in rows:
        told = json.loads(result).get(WITHDRAWN_AT) if result else None
        moment = as_utc(datetime.fromisoformat(told) if told else recorded_at)
        latest = moment if latest is None else max(latest, moment)
    return latest


class ConsentVerifier:
    """A sector's check of the proof that comes with a referral request."""

    def __init__(
        self,
        verifier: TokenVerifier,
        sector: Sector,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._verifier = verifier
        self._sector = sector
        self._clock = clock or (lambda: datetime.now(UTC))

    def check(self, document: str, case_id: str, *, field: str = PROOF_FIELD) -> ConsentProof:
        """The proof, if it is intake's, unexpired, and names this case and
        this sector: INVALID_ARGUMENT when missing, FAILED_PRECONDITION when
        it proves nothing for this request (messages name no data)."""
        if not document:
            raise InvalidArgument(field, "is required: the survivor's consent must be proven")
        try:
            claims = self._verifier.verify_document(document, PROOF_TYPE, now=self._clock())
            if claims.get("sub") != Role.SERVICE_INTAKE.value:
                raise ValueError("sub")
            proof = _proof(claims)
        except (Unauthenticated, ValueError, KeyError, TypeError):
            raise FailedPrecondition(f"{field}: not a valid consent proof") from None
        if proof.case_id != case_id or proof.sector is not self._sector:
            raise FailedPrecondition(f"{field}: does not prove consent for this case and sector")
        return proof

    def check_current(
        self, session: Session, proof: ConsentProof, ledger: Table, *, field: str = PROOF_FIELD
    ) -> None:
        """In the unit of work that acts on it: FAILED_PRECONDITION if the
        consent the proof names was withdrawn since (this sector was told so
        by a purge, recorded in its `ledger`)."""
        withdrawn = last_withdrawal(session, ledger, self._sector, proof.case_id)
        if withdrawn is not None and proof.given_at <= withdrawn:
            raise FailedPrecondition(f"{field}: the consent it proves was withdrawn since")


__all__ = [
    "PROOF_FIELD",
    "PROOF_TTL",
    "PROOF_TYPE",
    "WITHDRAWN_AT",
    "ConsentProof",
    "ConsentVerifier",
    "issue_consent_proof",
    "last_withdrawal",
    "purge_scope",
    "withdrawal_time",
]
