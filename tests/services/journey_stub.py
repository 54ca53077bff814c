"""Test support for sector services: a STAND-IN for the journey (StubJourney:
it records the referral updates it is sent and refuses the referrals it is
told to; it is not workflows.journey.SurvivorJourney), an activity caller,
and a TCP gate that makes Temporal unreachable until it is opened. Tests that
use it say so; each sector's test_<sector>_contract.py runs the real journey.

The workflows are unsandboxed (they are tiny and deterministic), so this
module can import anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    ClinicalCareRecorded,
    ProtectionOrderBreach,
    ReferralDecision,
    ReferralMilestone,
    UpdateResult,
)


@dataclass
class StubJourneyInput:
    # Referral ids whose updates the journey refuses, as a stale referral.
    refuse: list[str] = field(default_factory=list)


@dataclass
class SeenEvent:
    update: str
    event_id: str
    referral_id: str
    accepted: bool | None = None
    decline_reason: str | None = None
    milestone: str | None = None
    detail: str | None = None
    # Clinical care recorded (the health sector): the event code, ITT days, visit.
    care: str | None = None
    itt_days: int | None = None
    visit: str | None = None


@workflow.defn(name="StubJourney", sandboxed=False)
class StubJourney:
    """Records every referral update it accepts; refuses the referrals it was told to."""

    def __init__(self) -> None:
        self.events: list[SeenEvent] = []
        self.refuse: set[str] = set()
        self.done = False

    @workflow.run
    async def run(self, params: StubJourneyInput) -> None:
        self.refuse = set(params.refuse)
        await workflow.wait_condition(lambda: self.done)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.update(name=contract.UPDATE_REFERRAL_DECISION)
    def decision(self, event: ReferralDecision) -> UpdateResult:
        self.events.append(
            SeenEvent(
                update=contract.UPDATE_REFERRAL_DECISION,
                event_id=event.event_id,
                referral_id=event.referral_id,
                accepted=event.accepted,
                decline_reason=event.decline_reason,
            )
        )
        return UpdateResult(event_id=event.event_id)

    @decision.validator
    def check_decision(self, event: ReferralDecision) -> None:
        if event.referral_id in self.refuse:
            raise ApplicationError("stale referral", type="StaleReferral")

    @workflow.update(name=contract.UPDATE_REFERRAL_MILESTONE)
    def milestone(self, event: ReferralMilestone) -> UpdateResult:
        self.events.append(
            SeenEvent(
                update=contract.UPDATE_REFERRAL_MILESTONE,
                event_id=event.event_id,
                referral_id=event.referral_id,
                milestone=str(event.milestone),
                detail=event.detail,
            )
        )
        return UpdateResult(event_id=event.event_id)

    @milestone.validator
    def check_milestone(self, event: ReferralMilestone) -> None:
        if event.referral_id in self.refuse:
            raise ApplicationError("stale referral", type="StaleReferral")

    @workflow.update(name=contract.UPDATE_CLINICAL_CARE)
    def clinical_care(self, event: ClinicalCareRecorded) -> UpdateResult:
        self.events.append(
            SeenEvent(
                update=contract.UPDATE_CLINICAL_CARE,
                event_id=event.event_id,
                referral_id=event.referral_id,
                care=str(event.event),
                itt_days=event.itt_days,
                visit=str(event.visit) if event.visit else None,
            )
        )
        return UpdateResult(event_id=event.event_id)

    @clinical_care.validator
    def check_clinical_care(self, event: ClinicalCareRecorded) -> None:
        if event.referral_id in self.refuse:
            raise ApplicationError("stale referral", type="StaleReferral")

    @workflow.update(name=contract.UPDATE_BREACH)
    def breach(self, event: ProtectionOrderBreach) -> UpdateResult:
        self.events.append(
            SeenEvent(
                update=contract.UPDATE_BREACH,
                event_id=event.event_id,
                referral_id=event.referral_id,
            )
        )
        return UpdateResult(event_id=event.event_id)

    @breach.validator
    def check_breach(self, event: ProtectionOrderBreach) -> None:
        if event.referral_id in self.refuse:
            raise ApplicationError("stale referral", type="StaleReferral")

    @workflow.query
    def seen(self) -> list[SeenEvent]:
        return self.events


@dataclass
class ActivityCall:
    activity: str
    task_queue: str
    arg: Any


@workflow.defn(name="CallSectorActivity", sandboxed=False)
class CallSectorActivity:
    """Runs one activity by name on a sector's task queue, as the journey does."""

    @workflow.run
    async def run(self, call: ActivityCall) -> Any:
        return await workflow.execute_activity(
            call.activity,
            call.arg,
            task_queue=call.task_queue,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=0.2)),
        )


async def start_stub_journey(
    client: Client, case_id: str, task_queue: str, *, refuse: list[str] | None = None
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        StubJourney.run,
        StubJourneyInput(refuse=refuse or []),
        id=contract.journey_workflow_id(case_id),
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=5),
    )


async def seen_events(handle: WorkflowHandle[Any, Any]) -> list[SeenEvent]:
    return await handle.query(StubJourney.seen)


class TcpGate:
    """A local port that refuses connections until `open()`, then forwards
    them to `target` ("host:port"): Temporal "down", then "back"."""

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        host, _, target_port = target.rpartition(":")
        self._target = (host, int(target_port))
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)
