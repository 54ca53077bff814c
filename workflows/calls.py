"""What an owed action sends: the argument of the activity that performs it.

The journey's lanes (workflows.journey) call each collaborator's activity by
its contract name; the messages that carry intake's escalations and transfer
rungs are built here from the action and the journey's state. Plain values,
no Temporal.
"""

from __future__ import annotations

from masar.contract import EscalationNotice
from masar.contract.transfer import TransferRungNotice
from workflows.state import Action, JourneyState


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
