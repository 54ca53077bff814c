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

What it does not stop: a process that holds the issuer's signing key can
sign its own proofs (in the local stack every service holds it). Give intake
the signing key and the sectors only the public keys (MASAR_TOKEN_PUBLIC_KEY
plus MASAR_SERVICE_TOKEN) to make intake the only possible signer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from masar.contract import Sector
from masar.platform.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from masar.platform.identity import Role, TokenIssuer, TokenVerifier

PROOF_TYPE = "masar-consent"
PROOF_TTL = timedelta(minutes=10)
PROOF_FIELD = "consent_proof"
_CASE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, kw_only=True)
class ConsentProof:
    case_id: str
    sector: Sector
    issued_at: datetime
    expires_at: datetime
    proof_id: str


def issue_consent_proof(
    issuer: TokenIssuer,
    *,
    case_id: str,
    sector: Sector,
    ttl: timedelta = PROOF_TTL,
    now: datetime | None = None,
) -> tuple[str, ConsentProof]:
    """Sign "the survivor of `case_id` consents to `sector`" (intake only:
    call it after reading the consent in intake's own database)."""
    if not _CASE_ID.fullmatch(case_id):
        raise ValueError("case_id is not a case id")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    document = issuer.sign_document(
        PROOF_TYPE,
        {"sub": Role.SERVICE_INTAKE.value, "case_id": case_id, "sector": sector.value},
        ttl=ttl,
        now=issued,
    )
    claims = issuer.verifier().verify_document(document, PROOF_TYPE, now=issued)
    return document, _proof(claims)


def _proof(claims: dict[str, object]) -> ConsentProof:
    return ConsentProof(
        case_id=str(claims["case_id"]),
        sector=Sector(str(claims["sector"])),
        issued_at=datetime.fromtimestamp(int(str(claims["iat"])), UTC),
        expires_at=datetime.fromtimestamp(int(str(claims["exp"])), UTC),
        proof_id=str(claims.get("jti", "")),
    )


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


__all__ = [
    "PROOF_FIELD",
    "PROOF_TTL",
    "PROOF_TYPE",
    "ConsentProof",
    "ConsentVerifier",
    "issue_consent_proof",
]
