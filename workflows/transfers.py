"""Case transfers between organisations, as the journey keeps them.

request (intake, with the survivor's consent) -> PENDING, under the
`transfer_accept` wait's ladder:
  rung 1 (reminder): intake reminds the receiving organisation;
  rung 2 (escalation): the region's coordinators are told — nothing reroutes
    the request by itself, a coordinator may redirect it (its wait starts over);
  rung 3: LAPSED — the case stays with its holder.
-> ACCEPTED (the receiving organisation holds the case now) or DECLINED.

Each rung is owed to intake's lane as an `intake.record_transfer_rung`
action (masar.contract.transfer). Like the referral tracks, this rule object
only changes state, owes actions and notes timeline events; time comes in
as `now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from masar.contract import (
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    TRANSFER_ACCEPT_DEFAULT_SECONDS,
    TRANSFER_ACCEPT_WAIT,
    TransferDecision,
    TransferRedirect,
    TransferRequest,
    TransferStatus,
    TransferView,
)
from workflows.ladder import RUNG_EVENTS, EscalationLadder, SlaTerms
from workflows.lanes import ActionLanes, Timeline
from workflows.notices import Notices
from workflows.state import (
    INTAKE_LANE,
    Action,
    ActionKind,
    JourneyState,
    LadderWait,
    TransferState,
)


def transfer_wait(terms: SlaTerms, now: datetime) -> LadderWait:
    """The wait for an answer: the policy's `transfer_accept` deadline, or its
    shipped default when the journey's recorded policy predates the wait."""
    wait = terms.wait(TRANSFER_ACCEPT_WAIT, now)
    if wait is not None:
        return wait
    seconds = TRANSFER_ACCEPT_DEFAULT_SECONDS[terms.risk.value]
    return terms.ladder.wait(TRANSFER_ACCEPT_WAIT, now, timedelta(seconds=seconds))


class TransferDesk:
    """The case's transfers (state.transfers) and their ladder."""

    def __init__(
        self, state: JourneyState, lanes: ActionLanes, timeline: Timeline, notices: Notices
    ) -> None:
        self._state = state
        self._lanes = lanes
        self._timeline = timeline
        self._notices = notices

    @property
    def transfers(self) -> list[TransferState]:
        return self._state.transfers

    def find(self, transfer_id: str) -> TransferState | None:
        for transfer in self._state.transfers:
            if transfer.transfer_id == transfer_id:
                return transfer
        return None

    def pending(self) -> TransferState | None:
        for transfer in self._state.transfers:
            if transfer.status is TransferStatus.PENDING:
                return transfer
        return None

    def waits(self) -> list[tuple[TransferState, LadderWait]]:
        return [(t, t.wait) for t in self._state.transfers if t.wait is not None]

    # --- updates ---------------------------------------------------------------------

    def request(self, event: TransferRequest, now: datetime, terms: SlaTerms) -> None:
        transfer = TransferState(
            transfer_id=event.transfer_id,
            from_organisation_id=event.from_organisation_id,
            to_organisation_id=event.to_organisation_id,
            reason=event.reason,
            status=TransferStatus.PENDING,
            requested_at=now,
            wait=transfer_wait(terms, now),
        )
        self._state.transfers.append(transfer)
        self._timeline.note(
            now, "transfer_requested", detail=f"{event.transfer_id}:{event.reason.value}"
        )
        if self._notices.on and not self._state.holding_organisation_id:
            self._state.holding_organisation_id = event.from_organisation_id
        self._notices.transfer_requested(transfer, now)

    def decide(self, event: TransferDecision, now: datetime) -> None:
        transfer = self.find(event.transfer_id)
        assert transfer is not None
        transfer.final_level = transfer.wait.level if transfer.wait is not None else 0
        transfer.wait = None
        transfer.decided_at = now
        if event.accepted:
            transfer.status = TransferStatus.ACCEPTED
            self._timeline.note(now, "transfer_accepted", detail=transfer.transfer_id)
            self._notices.transfer_answered(transfer, now)
            if self._notices.on:
                self._state.holding_organisation_id = transfer.to_organisation_id
            return
        transfer.status = TransferStatus.DECLINED
        reason = event.decline_reason.value if event.decline_reason else "unspecified"
        self._timeline.note(now, "transfer_declined", detail=f"{transfer.transfer_id}:{reason}")
        self._notices.transfer_answered(transfer, now)

    def redirect(self, event: TransferRedirect, now: datetime, terms: SlaTerms) -> None:
        transfer = self.find(event.transfer_id)
        assert transfer is not None
        transfer.to_organisation_id = event.to_organisation_id
        transfer.redirects += 1
        transfer.wait = transfer_wait(terms, now)
        self._timeline.note(
            now, "transfer_redirected", detail=transfer.transfer_id, actor=event.coordinator_id
        )
        self._notices.transfer_requested(transfer, now)

    def retime(self, terms: SlaTerms) -> None:
        """The risk changed: a waiting request keeps its start, with the new deadline."""
        for _, wait in self.waits():
            wait.deadline_seconds = transfer_wait(terms, wait.started_at).deadline_seconds

    # --- the ladder ------------------------------------------------------------------------

    def climb(
        self, transfer: TransferState, level: int, now: datetime, ladder: EscalationLadder
    ) -> None:
        """Rung `level` of the request's wait is due; the last one lapses it."""
        wait = transfer.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        due_at = ladder.deadline(wait)
        lapsed = level >= LEVEL_REGIONAL
        if lapsed:
            transfer.status = TransferStatus.LAPSED
            transfer.final_level = level
            transfer.wait = None
            transfer.decided_at = now
            self._timeline.note(now, "transfer_lapsed", level=level, detail=transfer.transfer_id)
            self._notices.transfer_answered(transfer, now)
        else:
            self._timeline.note(
                now,
                RUNG_EVENTS[level],
                level=level,
                detail=f"{TRANSFER_ACCEPT_WAIT}:{transfer.transfer_id}",
            )
            if level == LEVEL_COORDINATOR:
                self._notices.transfer_escalated(transfer, wait, now, due_at)
        self._lanes.owe(
            INTAKE_LANE,
            ActionKind.TRANSFER_RUNG,
            level=level,
            wait=TRANSFER_ACCEPT_WAIT,
            due_at=due_at,
            transfer_id=transfer.transfer_id,
            to_organisation_id=transfer.to_organisation_id,
            lapsed=lapsed,
        )

    def is_stale(self, action: Action) -> bool:
        """A reminder or escalation whose request was answered or redirected
        meanwhile; the lapse is always told."""
        if action.lapsed:
            return False
        transfer = self.find(action.transfer_id or "")
        return (
            transfer is None
            or transfer.status is not TransferStatus.PENDING
            or transfer.to_organisation_id != action.to_organisation_id
        )

    # --- the status query -------------------------------------------------------------------

    def views(self, ladder: EscalationLadder | None) -> list[TransferView]:
        return [
            TransferView(
                transfer_id=t.transfer_id,
                from_organisation_id=t.from_organisation_id,
                to_organisation_id=t.to_organisation_id,
                status=t.status,
                deadline=ladder.deadline(t.wait) if ladder is not None and t.wait else None,
                escalation_level=t.wait.level if t.wait is not None else t.final_level,
                reason=t.reason,
                requested_at=t.requested_at,
                decided_at=t.decided_at,
            )
            for t in self._state.transfers
        ]
