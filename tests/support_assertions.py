"""Signing journey Updates in tests that send them straight to Temporal, as
the rightful sending service would (masar.platform.assertions).

The signers here are this process's own: journey workers built in the same
process trust them (`register_public_key`), as they trust the services that
tests run in-process."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from typing import Any, TypeVar

from masar import contract as c
from masar.platform.assertions import Actor, AssertionSigner, register_public_key

T = TypeVar("T")

SIGNERS: dict[str, AssertionSigner] = {
    name: AssertionSigner.generate(name) for name in ("intake", "shelter", "legal", "employment")
}
for _signer in SIGNERS.values():
    register_public_key(_signer.public_key)


def signed(
    update_name: str,
    case_id: str,
    event: T,
    actor: Actor,
    *,
    issuer: str = "intake",
    now: datetime | None = None,
) -> T:
    """`event` with an actor assertion signed by `issuer` for `actor`."""
    assertion = SIGNERS[issuer].sign(update_name, case_id, event, actor, now=now)
    result: Any = dataclasses.replace(event, assertion=assertion)  # type: ignore[type-var]
    return result


def as_coordinator(
    update_name: str, case_id: str, event: T, *, region: str, coordinator_id: str = "coord-1"
) -> T:
    """Sent by intake's journey API for a coordinator of `region`."""
    return signed(update_name, case_id, event, Actor(coordinator_id, "coordinator", region=region))


def _event_id() -> str:
    return f"evt-{secrets.token_hex(6)}"


def every_update(ref: c.ReferralView, now: datetime) -> dict[str, Any]:
    """One plausible event for each journey Update (unsigned)."""
    return {
        c.UPDATE_REFERRAL_DECISION: c.ReferralDecision(
            event_id=_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.SHELTER,
            accepted=False,
            decided_at=now,
            decline_reason="NO_CAPACITY",
        ),
        c.UPDATE_REFERRAL_MILESTONE: c.ReferralMilestone(
            event_id=_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.SHELTER,
            milestone=c.Milestone.STARTED,
            at=now,
        ),
        c.UPDATE_CONSENT: c.ConsentChange(
            event_id=_event_id(), sector=c.Sector.SHELTER, granted=False, at=now
        ),
        c.UPDATE_RISK: c.RiskChange(event_id=_event_id(), risk=c.Risk.LOW, at=now),
        c.UPDATE_FOLLOW_UP: c.FollowUpContact(event_id=_event_id(), at=now),
        c.UPDATE_MEDICAL_CARE: c.MedicalCareConfirmed(
            event_id=_event_id(), item=c.ClinicalItem.PEP, at=now
        ),
        c.UPDATE_CLOSURE_REQUEST: c.ClosureRequest(
            event_id=_event_id(), at=now, reason="needs_met"
        ),
        c.UPDATE_REOPEN: c.ReopenRequest(event_id=_event_id(), at=now),
        c.UPDATE_REASSIGN: c.Reassignment(
            event_id=_event_id(),
            referral_id=ref.referral_id,
            provider_id="shelter-c",
            coordinator_id="anyone-from-any-region",
            reason="closer",
        ),
        c.UPDATE_EXTEND: c.DeadlineExtension(
            event_id=_event_id(),
            target=ref.referral_id,
            extend_by_seconds=365 * 86400,
            coordinator_id="anyone-from-any-region",
            reason="x",
        ),
        c.UPDATE_CLOSURE_DECISION: c.ClosureDecision(
            event_id=_event_id(),
            approve=True,
            coordinator_id="anyone-from-any-region",
            reason="x",
        ),
        c.UPDATE_TRANSFER_REQUEST: c.TransferRequest(
            event_id=_event_id(),
            transfer_id="trf-00000000000000aa",
            from_organisation_id="org-a",
            to_organisation_id="org-evil",
            reason=c.TransferReason.CAPACITY,
            requested_at=now,
            consent_at=now,
        ),
        c.UPDATE_TRANSFER_DECISION: c.TransferDecision(
            event_id=_event_id(),
            transfer_id="trf-00000000000000aa",
            to_organisation_id="org-evil",
            accepted=True,
            decided_at=now,
        ),
        c.UPDATE_CLINICAL_CARE: c.ClinicalCareRecorded(
            event_id=_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.HEALTH,
            event=c.CareEvent.PEP_STARTED,
            at=now,
            recorded_at=now,
        ),
        c.UPDATE_BREACH: c.ProtectionOrderBreach(
            event_id=_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.LEGAL,
            at=now,
            recorded_at=now,
            risk=c.Risk.CRITICAL,
        ),
        c.UPDATE_TRANSFER_REDIRECT: c.TransferRedirect(
            event_id=_event_id(),
            transfer_id="trf-00000000000000aa",
            to_organisation_id="org-evil",
            coordinator_id="anyone-from-any-region",
            redirected_at=now,
            consent_at=now,
        ),
    }
