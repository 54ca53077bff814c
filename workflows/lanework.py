"""The journey's lanes: the owed side effects, one activity at a time per collaborator.

`LaneWork` is the part of `SurvivorJourney` (workflows.journey) that performs
what the case file owes (workflows.lanes): one lane per collaborator (each
sector, intake, and the network's for notifications), each performing its
actions in order as activities called by their contract names, with a bounded
retry policy and the idempotency key fixed when the action was owed. A
business failure is final and handed back to the case file; a collaborator
still unreachable after the retries is tried again later with the same key,
after a backoff (an owed referral is never dropped).

Workflow code: deterministic, `workflow.now()` only.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from masar.contract import (
        ERR_INVALID,
        ERR_NO_CONSENT,
        ERR_NO_PROVIDER,
        ERR_SECTOR_UNAVAILABLE,
        ERR_STALE_REFERRAL,
        ERR_UNKNOWN_CASE,
        ERR_UNKNOWN_REFERRAL,
        INTAKE_RECORD_ESCALATION,
        LEGAL_NOTE_CERTIFICATE,
        SECTOR_ACTIVITIES,
        SECTOR_TASK_QUEUES,
        CasePurge,
        ProviderReminder,
        PurgeResult,
        ReferralClosure,
        ReferralCreated,
        Sector,
    )
    from masar.contract.notify import (
        NETWORK_ACKNOWLEDGEMENTS,
        NETWORK_NOTIFY,
        NETWORK_TASK_QUEUE,
        AcknowledgementsResult,
        NotifyResult,
    )
    from masar.contract.transfer import INTAKE_RECORD_TRANSFER_RUNG
    from workflows import calls
    from workflows.casefile import CaseFile
    from workflows.state import INTAKE_LANE, NETWORK_LANE, Action, ActionKind

# Every activity: bounded in time and in attempts. Business failures are
# non-retryable ApplicationErrors with these types.
BUSINESS_ERRORS = [ERR_NO_PROVIDER, ERR_NO_CONSENT, ERR_UNKNOWN_CASE, ERR_UNKNOWN_REFERRAL]
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[*BUSINESS_ERRORS, ERR_INVALID],
)
START_TO_CLOSE = timedelta(seconds=30)
# Also bounds the time an activity waits for its sector's worker.
SCHEDULE_TO_CLOSE = timedelta(minutes=5)
# After an activity has used up its retries (sector down), its lane waits this
# long before trying the same action again, with the same idempotency key:
# an owed referral is never dropped.
LANE_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)


def _lane_sector(lane: str) -> Sector | None:
    return None if lane in (INTAKE_LANE, NETWORK_LANE) else Sector(lane)


def _business_error(err: ActivityError) -> str | None:
    cause = err.cause
    if isinstance(cause, ApplicationError) and (
        cause.type in BUSINESS_ERRORS or cause.type == ERR_INVALID or cause.non_retryable
    ):
        return cause.type or "ApplicationError"
    return None


class LaneWork:
    """The lanes of a journey (mixed into SurvivorJourney, which sets these)."""

    _case: CaseFile
    _draining: bool
    _in_flight: int
    _wake: bool
    # Outcome of actions an update handler waits for: key -> error type ("" = done).
    _outcomes: dict[str, str]

    async def _lane(self, lane: str) -> None:
        while True:
            await workflow.wait_condition(
                lambda: self._case.lanes.next_action(lane, draining=self._draining) is not None
            )
            action = self._case.lanes.next_action(lane, draining=self._draining)
            if action is None:  # pragma: no cover - the condition above says otherwise
                continue
            self._in_flight += 1
            try:
                retry = await self._perform(action)
            finally:
                self._in_flight -= 1
                self._wake = True
            if retry:
                pause = LANE_BACKOFF[min(action.failures, len(LANE_BACKOFF)) - 1]
                # A coordinator waiting for an answer does not wait for the backoff.
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._case.lanes.awaited_in(lane), timeout=pause
                    )

    async def _perform(self, action: Action) -> bool:
        """Perform one owed action; True when it must be tried again later."""
        case = self._case
        lanes = case.lanes
        if case.is_stale(action):
            lanes.done_with(action)
            self._settle(action, ERR_STALE_REFERRAL)
            return False
        try:
            await self._call(action)
        except ActivityError as err:
            error_type = _business_error(err)
            now = workflow.now()
            if error_type is None:
                # Retries used up (sector or intake unreachable).
                action.failures += 1
                if action.failures == 1 or action.awaited_by:
                    case.timeline.note(
                        now,
                        "collaborator_unavailable",
                        sector=_lane_sector(action.lane),
                        referral_id=action.referral_id,
                        detail=action.kind,
                    )
                if action.awaited_by:
                    # The coordinator gets the answer now and may try again.
                    lanes.done_with(action)
                    self._settle(action, ERR_SECTOR_UNAVAILABLE)
                    return False
                return True
            if action.kind == ActionKind.REQUEST:
                case.request_failed(action, error_type, now)
            else:
                case.timeline.note(
                    now,
                    "action_failed",
                    sector=_lane_sector(action.lane),
                    referral_id=action.referral_id,
                    detail=f"{action.kind}:{error_type}",
                )
            lanes.done_with(action)
            self._settle(action, error_type)
            return False
        lanes.done_with(action)
        self._settle(action, "")
        return False

    def _settle(self, action: Action, error_type: str) -> None:
        if action.awaited_by:
            self._outcomes[action.key] = error_type

    async def _call(self, action: Action) -> None:
        case = self._case
        state = case.state
        if action.kind == ActionKind.ESCALATE:
            notice = calls.escalation_notice(state, action)
            await self._activity(INTAKE_RECORD_ESCALATION, SECTOR_TASK_QUEUES["intake"], notice)
            return
        if action.kind == ActionKind.NOTIFY:
            result = await self._activity(
                NETWORK_NOTIFY, NETWORK_TASK_QUEUE, action.notice, NotifyResult
            )
            case.notices.delivered(action, result, workflow.now())
            return
        if action.kind == ActionKind.ACKNOWLEDGEMENTS:
            query = case.notices.query()
            found = await self._activity(
                NETWORK_ACKNOWLEDGEMENTS, NETWORK_TASK_QUEUE, query, AcknowledgementsResult
            )
            case.notices.acknowledged(found, workflow.now())
            return
        if action.kind == ActionKind.TRANSFER_RUNG:
            rung = calls.transfer_rung_notice(state, action)
            await self._activity(INTAKE_RECORD_TRANSFER_RUNG, SECTOR_TASK_QUEUES["intake"], rung)
            return
        if action.kind == ActionKind.CERTIFICATE:
            certificate = calls.certificate_notice(action)
            await self._activity(LEGAL_NOTE_CERTIFICATE, SECTOR_TASK_QUEUES["legal"], certificate)
            return
        sector = Sector(action.lane)
        names = SECTOR_ACTIVITIES[sector]
        queue = SECTOR_TASK_QUEUES[sector.value]
        if action.kind == ActionKind.REQUEST:
            request = calls.referral_request(state, action, case.exclusions(action), workflow.now())
            created = await self._activity(names.request_referral, queue, request, ReferralCreated)
            case.request_succeeded(action, created, workflow.now())
        elif action.kind == ActionKind.REMIND:
            assert action.referral_id is not None
            reminder = ProviderReminder(referral_id=action.referral_id, idempotency_key=action.key)
            await self._activity(names.remind_provider, queue, reminder)
        elif action.kind == ActionKind.CLOSE:
            assert action.referral_id is not None and action.status is not None
            closure = ReferralClosure(
                referral_id=action.referral_id, status=action.status, idempotency_key=action.key
            )
            await self._activity(names.close_referral, queue, closure)
        elif action.kind == ActionKind.PURGE:
            purge = CasePurge(
                case_id=state.case_id,
                sector=sector,
                idempotency_key=action.key,
                withdrawn_at=action.due_at,
            )
            result = await self._activity(names.purge_case, queue, purge, PurgeResult)
            case.timeline.note(
                workflow.now(),
                "case_purged",
                sector=sector,
                detail=f"referrals={result.referrals_withdrawn},records={result.records_purged}",
            )

    async def _activity(
        self, name: str, task_queue: str, arg: Any, result_type: type | None = None
    ) -> Any:
        """Call a collaborator's activity by its registered name (masar.contract)."""
        return await workflow.execute_activity(
            name,
            arg,
            task_queue=task_queue,
            result_type=result_type,
            start_to_close_timeout=START_TO_CLOSE,
            schedule_to_close_timeout=SCHEDULE_TO_CLOSE,
            retry_policy=ACTIVITY_RETRY,
        )
