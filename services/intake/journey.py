"""How intake starts and informs each case's journey, reliably.

Starting: registration writes the case and a "journey start pending" marker
(`journey_starts`, holding the JourneyInput) in one unit of work, then tries
to start `journey-<case_id>` at once. If Temporal is unreachable the marker
stays pending and the dispatcher (the intake outbox's loop) starts it when
Temporal is back. Starting is idempotent: the first start refuses any earlier
run of the same id (`REJECT_DUPLICATE`), and "already started" counts as done.

Informing: every change goes through the kernel outbox. Intake's outbox adds
three rules: a case's updates wait for its journey's start (and keep their
order); an update the journey refuses is undone locally; a reopen refused
because the journey has ended starts a new run of the same workflow id with
the case's current facts.

The start queue lives here rather than in masar.platform.outbox: only intake
starts journeys, and the rules above are about cases. The dispatcher is the
platform outbox's own loop: each round `pending` first starts the journeys
still waiting, then lists the updates that may go.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.converter import AdvancedJSONEncoder, value_to_type
from temporalio.exceptions import WorkflowAlreadyStartedError

from masar.contract import (
    JOURNEY_TASK_QUEUE,
    JOURNEY_WORKFLOW,
    QUERY_STATUS,
    SA_REGION,
    SA_RISK,
    SA_STAGE,
    UPDATE_REOPEN,
    JourneyInput,
    JourneyStatus,
    ReferralStatus,
    Sector,
    Stage,
    journey_workflow_id,
)
from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.outbox import DeliveryOutcome, Outbox, RejectedUpdate
from masar.platform.temporal import TemporalConnector
from services.intake import domain as d
from services.intake.models import OUTBOX
from services.intake.repository import (
    START_DONE,
    CaseRepository,
    ChangeRepository,
    JourneyStartRepository,
)

log = logging.getLogger(__name__)

STAGE_KEY = SearchAttributeKey.for_keyword(SA_STAGE)
RISK_KEY = SearchAttributeKey.for_keyword(SA_RISK)
REGION_KEY = SearchAttributeKey.for_keyword(SA_REGION)
# What the kernel outbox reports when the workflow is not running.
JOURNEY_NOT_RUNNING = "JourneyNotRunning"


def encode_input(journey: JourneyInput) -> str:
    """The JourneyInput as the default payload converter writes it."""
    return json.dumps(journey, cls=AdvancedJSONEncoder)


def decode_input(payload: str) -> JourneyInput:
    value: JourneyInput = value_to_type(JourneyInput, json.loads(payload))
    return value


def search_attributes(journey: JourneyInput) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(STAGE_KEY, Stage.TRIAGE.value),
            SearchAttributePair(RISK_KEY, journey.risk.value),
            SearchAttributePair(REGION_KEY, journey.region),
        ]
    )


@dataclass(frozen=True)
class FollowedReferral:
    """A referral's status as the journey reports it (the follow-up view)."""

    sector: Sector
    referral_id: str
    status: ReferralStatus


class StartOutcome(StrEnum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"
    UNREACHABLE = "unreachable"


class JourneyStarter:
    """Starts journeys from the pending markers; never raises for Temporal
    being away (the marker stays and is retried)."""

    def __init__(
        self,
        database: Database,
        connector: TemporalConnector,
        *,
        task_queue: str = JOURNEY_TASK_QUEUE,
        clock: Callable[[], datetime] = utcnow,
        connect_timeout: float = 3.0,
        rpc_timeout: float = 10.0,
    ) -> None:
        self._db = database
        self._connector = connector
        self.task_queue = task_queue
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._rpc_timeout = rpc_timeout

    async def _client(self) -> Client | None:
        client = self._connector.client
        if client is not None:
            return client
        try:
            return await asyncio.wait_for(self._connector.get(), timeout=self._connect_timeout)
        except Exception:
            return None

    async def _start(
        self, journey: JourneyInput, *, reuse: WorkflowIDReusePolicy
    ) -> tuple[StartOutcome, str | None, str | None]:
        """(outcome, run id, error type name)."""
        client = await self._client()
        if client is None:
            return StartOutcome.UNREACHABLE, None, "TemporalUnreachable"
        try:
            handle = await client.start_workflow(
                JOURNEY_WORKFLOW,
                journey,
                id=journey_workflow_id(journey.case_id),
                task_queue=self.task_queue,
                id_reuse_policy=reuse,
                search_attributes=search_attributes(journey),
                rpc_timeout=timedelta(seconds=self._rpc_timeout),
            )
        except WorkflowAlreadyStartedError:
            return StartOutcome.ALREADY_STARTED, None, None
        except Exception as exc:
            return StartOutcome.UNREACHABLE, None, type(exc).__name__
        return StartOutcome.STARTED, handle.result_run_id, None

    async def ensure_started(self, case_id: str) -> bool:
        """Start the case's journey if its start is still pending. True once
        the journey has been started (now or before)."""
        row = await self._db.run(lambda s: JourneyStartRepository.from_session(s).get(case_id))
        if row is None or row.status == START_DONE:
            return True
        outcome, run_id, error = await self._start(
            decode_input(row.payload), reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE
        )
        if outcome is StartOutcome.UNREACHABLE:
            await self._db.run(
                lambda s: JourneyStartRepository.from_session(s).failed(case_id, error or "Unknown")
            )
            log.warning("journey start pending", extra={"case_id": case_id, "error": error})
            return False
        now = self._clock()
        await self._db.run(
            lambda s: JourneyStartRepository.from_session(s).started(
                case_id, run_id=run_id, now=now
            )
        )
        log.info("journey started", extra={"case_id": case_id, "outcome": outcome.value})
        return True

    async def referral_statuses(self, case_id: str) -> list[FollowedReferral] | None:
        """The case's referrals from its journey's `status` query; None when
        the journey cannot be asked (Temporal away, not started yet)."""
        client = await self._client()
        if client is None:
            return None
        handle = client.get_workflow_handle(journey_workflow_id(case_id))
        try:
            status = await handle.query(
                QUERY_STATUS,
                result_type=JourneyStatus,
                rpc_timeout=timedelta(seconds=self._rpc_timeout),
            )
        except Exception as exc:
            log.info(
                "journey status unavailable",
                extra={"case_id": case_id, "error": type(exc).__name__},
            )
            return None
        return [
            FollowedReferral(sector=r.sector, referral_id=r.referral_id, status=r.status)
            for r in status.referrals
        ]

    async def start_pending(self, limit: int = 50) -> None:
        """Start every pending journey, oldest first; stop at the first that
        cannot be started (Temporal still away)."""
        pending = await self._db.run(
            lambda s: JourneyStartRepository.from_session(s).pending(limit)
        )
        for case_id in pending:
            if not await self.ensure_started(case_id):
                return

    async def start_new_run(self, case_id: str, change_id: str) -> bool:
        """The case's journey has ended and the case was reopened: a new run of
        the same workflow id, carrying the case's current facts."""
        now = self._clock()

        def facts(s: Session) -> JourneyInput:
            cases = CaseRepository.from_session(s)
            return d.journey_input(cases.facts(cases.get_one(case_id)), opened_at=now)

        journey = await self._db.run(facts)
        outcome, run_id, error = await self._start(
            journey, reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE
        )
        if outcome is StartOutcome.UNREACHABLE:
            log.warning("journey new run pending", extra={"case_id": case_id, "error": error})
            return False
        payload = encode_input(journey)

        def record(s: Session) -> None:
            JourneyStartRepository.from_session(s).new_run(
                case_id, run_id=run_id, now=now, payload=payload
            )
            ChangeRepository.from_session(s).mark_new_run(change_id)

        await self._db.run(record)
        log.info("journey new run started", extra={"case_id": case_id, "outcome": outcome.value})
        return True


class IntakeOutbox(Outbox):
    """The kernel outbox, plus the case rules in this module's docstring."""

    def __init__(
        self, database: Database, connector: TemporalConnector, *, starter: JourneyStarter
    ) -> None:
        super().__init__(database, OUTBOX, connector)
        self._database = database
        self._starter = starter

    async def pending(self, limit: int = 100) -> list[str]:
        """Start the journeys still waiting, then the updates that may go now
        (of started journeys only), oldest first."""
        await self._starter.start_pending()
        return await self._database.run(
            lambda s: JourneyStartRepository.from_session(s).queued_events(limit=limit)
        )

    async def deliver(
        self, event_id: str, *, background: bool = False
    ) -> tuple[DeliveryOutcome, RejectedUpdate | None]:
        entry = await self._database.run(
            lambda s: JourneyStartRepository.from_session(s).outbox_entry(event_id)
        )
        if entry is None:
            raise KeyError(event_id)
        case_id, update_name, status = entry
        if status == DeliveryOutcome.QUEUED.value and not await self._starter.ensure_started(
            case_id
        ):
            return DeliveryOutcome.QUEUED, None
        outcome, rejected = await super().deliver(event_id, background=background)
        if outcome is not DeliveryOutcome.REJECTED or rejected is None:
            return outcome, rejected
        if update_name == UPDATE_REOPEN and rejected.error_type == JOURNEY_NOT_RUNNING:
            if await self._starter.start_new_run(case_id, event_id):
                await self._mark(event_id, DeliveryOutcome.DELIVERED, None)
                return DeliveryOutcome.DELIVERED, None
            await self._mark(event_id, DeliveryOutcome.QUEUED, "TemporalUnreachable")
            return DeliveryOutcome.QUEUED, None
        error = rejected.error_type or "Rejected"
        await self._database.run(lambda s: ChangeRepository.from_session(s).revert(event_id, error))
        log.info(
            "journey refused a change; undone",
            extra={"case_id": case_id, "update": update_name, "error": error},
        )
        return outcome, rejected

    async def deliver_in_order(
        self, case_id: str, event_id: str
    ) -> tuple[DeliveryOutcome, RejectedUpdate | None]:
        """Deliver a case's earlier queued updates, then `event_id`: the journey
        sees a case's changes in the order they were made."""
        if not await self._starter.ensure_started(case_id):
            return DeliveryOutcome.QUEUED, None
        earlier = await self._database.run(
            lambda s: JourneyStartRepository.from_session(s).queued_events(case_id=case_id)
        )
        for queued in earlier:
            if queued == event_id:
                break
            outcome, _ = await self.deliver(queued)
            if outcome is DeliveryOutcome.QUEUED:
                return DeliveryOutcome.QUEUED, None
        return await self.deliver(event_id)
