"""What an owed action sends: the argument of the activity that performs it.

The journey's lanes (workflows.journey) call each collaborator's activity by
its contract name; the messages that carry intake's escalations and transfer
rungs are built here from the action and the journey's state. Plain values,
no Temporal.
"""

from __future__ import annotations

from datetime import datetime

from masar.contract import (
    CARE_SERVICES,
    CertificateNotice,
    EscalationNotice,
    HealthNeeds,
    ReferralRequest,
    Sector,
    care_called_for,
)
from masar.contract.transfer import TransferRungNotice
from workflows.state import Action, JourneyState

# The care a medical referral asks for only while its window is open.
WINDOWED_CARE = frozenset(CARE_SERVICES) - {"certificate"}


def referral_request(
    state: JourneyState, action: Action, exclusions: list[str], now: datetime
) -> ReferralRequest:
    """A REQUEST action: each sector learns only its own needs."""
    sector = Sector(action.lane)
    return ReferralRequest(
        case_id=state.case_id,
        sector=sector,
        region=state.region,
        risk=state.risk,
        idempotency_key=action.key,
        exclude_provider_ids=exclusions,
        provider_id=action.provider_id,
        shelter=state.shelter if sector is Sector.SHELTER else None,
        legal=state.legal if sector is Sector.LEGAL else None,
        employment=state.employment if sector is Sector.EMPLOYMENT else None,
        health=health_needs(state, now) if sector is Sector.HEALTH else None,
        psychosocial=state.psychosocial if sector is Sector.PSYCHOSOCIAL else None,
    )


def health_needs(state: JourneyState, now: datetime) -> HealthNeeds:
    """What a care unit learns: the care she needs now — the care intake
    asked for, less what a clinical window closed on since (a rerouted
    referral hours later no longer asks for PEP past 72 h) —, the incident's
    time and her languages."""
    now_called = care_called_for(state.violence_type, state.incident_at, now)
    asked = state.health.care if state.health is not None else now_called
    care = [item for item in asked if item not in WINDOWED_CARE or item in now_called]
    return HealthNeeds(
        care=care,
        incident_at=state.incident_at,
        languages=list(state.health.languages) if state.health is not None else [],
    )


def certificate_notice(action: Action) -> CertificateNotice:
    """A CERTIFICATE action: legal aid learns that a certificate exists."""
    assert action.referral_id is not None and action.issued_at is not None
    assert action.itt_days is not None
    return CertificateNotice(
        referral_id=action.referral_id,
        issued_at=action.issued_at,
        itt_days=action.itt_days,
        idempotency_key=action.key,
    )


def escalation_notice(state: JourneyState, action: Action) -> EscalationNotice:
    """An ESCALATE action: intake's coordinators' inbox."""
    assert action.due_at is not None
    return EscalationNotice(
        case_id=state.case_id,
        region=state.region,
        level=action.level,
        wait=action.wait,
        due_at=action.due_at,
        idempotency_key=action.key,
        referral_id=action.referral_id,
    )


def transfer_rung_notice(state: JourneyState, action: Action) -> TransferRungNotice:
    """A TRANSFER_RUNG action: intake reminds or escalates a transfer request."""
    assert action.due_at is not None and action.transfer_id is not None
    return TransferRungNotice(
        case_id=state.case_id,
        region=state.region,
        transfer_id=action.transfer_id,
        to_organisation_id=action.to_organisation_id or "",
        level=action.level,
        due_at=action.due_at,
        idempotency_key=action.key,
        lapsed=action.lapsed,
    )
