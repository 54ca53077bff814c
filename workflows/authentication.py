"""Who sent an Update: the journey verifies its actor assertion.

Every Update carries an `ActorAssertion` (masar.contract.assertion) signed by
the service that sent it. The validators verify it before anything is
written, deterministically: no I/O, `workflow.now()` for time, and the
issuers' public keys from the policy local activity (recorded in the history:
`SlaPolicy.issuer_keys`). Refused, with an `ApplicationError` whose message
names the field and never a value:

- ERR_UNAUTHENTICATED: no assertion, an unknown key, a bad signature, an
  expired assertion (or one from the future), or one already used (the
  journey keeps the ids it has seen within the assertions' lifetime, carried
  across continue-as-new);
- ERR_FORBIDDEN: an assertion for another case, another Update or another
  payload; an issuer or role that may not send this Update; a sector service
  asserting for another sector's referral; a coordinator of another region
  (without an emergency grant the issuer vouched for).

The timeline's actor for coordinators' actions is the assertion's actor,
never a field of the payload.

When (workflows.journey): each Update's validator authenticates it before
anything is written; its handler checks again once the run is ready (all but
the lifetime, which the validator checked) — in runs that started with the
`masar-authenticated-updates` patch, and whenever the Update carries an
assertion. The histories recorded before the patch hold Updates without
assertions, and they replay as they ran. A run that started before the patch
(a journey running when the worker was upgraded) recorded a policy without
keys: its validators check everything but the signature, and the first
Update carrying an assertion loads the keys through the policy activity
(behind the `masar-issuer-keys-in-run` patch, reached only by such Updates)
before its handler verifies the signature; from then on its validators
verify signatures too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from masar.contract import ERR_FORBIDDEN, ERR_UNAUTHENTICATED, ActorAssertion, IssuerKey
from masar.contract.assertion import (
    ASSERTION_CLOCK_SKEW_SECONDS,
    ASSERTION_TTL_SECONDS,
    COORDINATOR,
    MAX_SEEN_ASSERTIONS,
    UPDATE_AUTHORITY,
    payload_digest,
    sector_roles,
    signing_bytes,
)
from workflows.casefile import CaseFile
from workflows.state import SeenAssertion
from workflows.validation import reject

TTL = timedelta(seconds=ASSERTION_TTL_SECONDS)
SKEW = timedelta(seconds=ASSERTION_CLOCK_SKEW_SECONDS)


@dataclass(frozen=True)
class _Key:
    issuer: str
    key: Ed25519PublicKey


class IssuerKeys:
    """The issuers' public keys of this run, by key id."""

    def __init__(self, keys: Iterable[IssuerKey]) -> None:
        self._keys: dict[str, _Key] = {}
        for key in keys:
            try:
                raw = base64.b64decode(key.public_key, validate=True)
                self._keys[key.key_id] = _Key(key.issuer, Ed25519PublicKey.from_public_bytes(raw))
            except (binascii.Error, ValueError):
                continue  # a malformed key verifies nothing

    def verify(self, assertion: ActorAssertion) -> None:
        known = self._keys.get(assertion.key_id)
        if known is None or known.issuer != assertion.issuer:
            raise reject(ERR_UNAUTHENTICATED, "assertion: signed by an unknown key")
        try:
            signature = base64.b64decode(assertion.signature, validate=True)
            known.key.verify(signature, signing_bytes(assertion))
        except (binascii.Error, ValueError, InvalidSignature):
            raise reject(ERR_UNAUTHENTICATED, "assertion: the signature does not verify") from None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def assertion_of(event: Any) -> ActorAssertion | None:
    assertion = getattr(event, "assertion", None)
    return assertion if isinstance(assertion, ActorAssertion) else None


def authenticate(
    case: CaseFile,
    keys: IssuerKeys | None,
    update_name: str,
    event: Any,
    now: datetime | None,
) -> ActorAssertion:
    """The verified assertion of `event`, sent as `update_name`; raises the
    rejection otherwise. `keys` None: the signature is left to the handler
    (the run's keys are not loaded yet); `now` None: the lifetime is not
    checked (the handler, after the validator checked it)."""
    assertion = assertion_of(event)
    if assertion is None:
        raise reject(ERR_UNAUTHENTICATED, "assertion: required")
    if keys is not None:
        keys.verify(assertion)
    if now is not None:
        issued = _aware(assertion.issued_at)
        if now - issued > TTL:
            raise reject(ERR_UNAUTHENTICATED, "assertion: expired")
        if issued - now > SKEW:
            raise reject(ERR_UNAUTHENTICATED, "assertion: issued in the future")
    if any(seen.assertion_id == assertion.assertion_id for seen in case.state.seen_assertions):
        raise reject(ERR_UNAUTHENTICATED, "assertion: already used")
    _check_scope(case, update_name, event, assertion)
    return assertion


def _check_scope(case: CaseFile, update_name: str, event: Any, assertion: ActorAssertion) -> None:
    if assertion.case_id != case.state.case_id:
        raise reject(ERR_FORBIDDEN, "assertion: made for another case")
    if assertion.update_name != update_name:
        raise reject(ERR_FORBIDDEN, "assertion: made for another update")
    if assertion.payload_digest != payload_digest(event):
        raise reject(ERR_FORBIDDEN, "assertion: made for another payload")
    authority = UPDATE_AUTHORITY.get(update_name)
    if authority is None or assertion.issuer not in authority.issuers:
        raise reject(ERR_FORBIDDEN, "assertion: the issuer may not send this update")
    if authority.sector:
        # A sector service speaks for its own sector's referrals only (that
        # the referral is of the sector the payload names, the validators
        # check: workflows.validation).
        sector = getattr(getattr(event, "sector", None), "value", None)
        if sector != assertion.issuer:
            raise reject(ERR_FORBIDDEN, "assertion: the issuer may not act on this referral")
        allowed = sector_roles(assertion.issuer)
    else:
        allowed = authority.roles
    if assertion.role not in allowed:
        raise reject(ERR_FORBIDDEN, "assertion: the role may not send this update")
    # A coordinator acts on her own region's cases, or under an emergency
    # grant that the issuer checked (it names the grant).
    if (
        assertion.role == COORDINATOR
        and assertion.region != case.state.region
        and not assertion.grant_id
    ):
        raise reject(ERR_FORBIDDEN, "assertion: a coordinator of another region")


def remember(case: CaseFile, assertion: ActorAssertion, now: datetime) -> None:
    """Keep the assertion's id (a replay is refused); forget expired ones."""
    oldest = now - TTL - SKEW
    seen = [s for s in case.state.seen_assertions if _aware(s.issued_at) >= oldest]
    seen.append(SeenAssertion(assertion.assertion_id, _aware(assertion.issued_at)))
    case.state.seen_assertions = seen[-MAX_SEEN_ASSERTIONS:]
