"""Helpers for the intake tests: requests, a running intake with a stand-in
journey on the real dev server, and reading what the journey received."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from masar.contract import JourneyInput, journey_workflow_id
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc, legal_pb2
from services.intake.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.services.intake.standin import Seen, StandInJourney

FES = "fes-meknes"
RABAT = "rabat-sale-kenitra"
ALIAS = "Khadija-alias-7f3a"
PHONE = "+212 611 223 344"
EMAIL = "k.secret@example.org"
NARRATIVE = "narrative-secret-9c1d happened at home"
YES, NO = intake_pb2.RISK_ANSWER_YES, intake_pb2.RISK_ANSWER_NO
INDICATORS = (
    "threats_to_kill",
    "strangulation",
    "weapon",
    "escalation",
    "separation",
    "stalking",
    "pregnancy",
    "children_threatened",
    "perpetrator_access",
)


def key() -> str:
    return secrets.token_hex(8)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def hours_ago(hours: int) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours)


def checklist(*yes: str) -> intake_pb2.RiskChecklist:
    return intake_pb2.RiskChecklist(**{i: YES if i in yes else NO for i in INDICATORS})


def registration(**changes: Any) -> intake_pb2.RegisterCaseRequest:
    """A complete, valid registration; `changes` replace top-level fields."""
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=key(),
        survivor=intake_pb2.SurvivorProfile(
            alias=ALIAS,
            birth_year=1994,
            nationality="MA",
            migrant_status=intake_pb2.MIGRANT_STATUS_NOT_A_MIGRANT,
            languages=["ary", "fr"],
            region=FES,
            contact=intake_pb2.ContactDetails(
                phone=PHONE, email=EMAIL, safe_contact_instructions="after 6pm only"
            ),
            accompanying_children=2,
        ),
        incident=intake_pb2.Incident(
            occurred_at=ts(hours_ago(10)),
            violence_type=intake_pb2.VIOLENCE_TYPE_RAPE,
            contexts=[intake_pb2.INCIDENT_CONTEXT_INTIMATE_PARTNER],
            narrative=NARRATIVE,
        ),
        risk=intake_pb2.RiskAssessmentInput(checklist=checklist("weapon", "stalking")),
        needs=[
            common_pb2.SECTOR_SHELTER,
            common_pb2.SECTOR_LEGAL,
            common_pb2.SECTOR_EMPLOYMENT,
            common_pb2.SECTOR_MEDICAL,
        ],
        household=intake_pb2.HouseholdNeeds(accessibility_needs=["wheelchair"]),
        legal_matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
        employment_interests=["sewing"],
        consents=[
            intake_pb2.CONSENT_SCOPE_SHELTER,
            intake_pb2.CONSENT_SCOPE_LEGAL,
            intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
        ],
    )
    for name, value in changes.items():
        request.ClearField(cast(Any, name))
        field = getattr(request, name)
        if isinstance(value, list):
            field.extend(value)
        elif hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


@dataclass
class Intake:
    running: RunningSector
    stub: intake_pb2_grpc.IntakeServiceStub
    client: Client | None

    def handle(self, case_id: str) -> WorkflowHandle[Any, Any]:
        assert self.client is not None
        return self.client.get_workflow_handle(journey_workflow_id(case_id))

    async def journey_input(
        self, case_id: str, run_id: str | None = None
    ) -> tuple[JourneyInput, bytes]:
        """The decoded start argument of the case's journey, and its raw payload."""
        assert self.client is not None
        handle = self.client.get_workflow_handle(journey_workflow_id(case_id), run_id=run_id)
        history = await handle.fetch_history()
        payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
        [journey] = await self.client.data_converter.decode(payloads, [JourneyInput])
        return journey, b"".join(p.data for p in payloads)

    async def journey_updates(self, case_id: str) -> list[Seen]:
        return await self.handle(case_id).query(StandInJourney.updates)


@asynccontextmanager
async def stand_in_journey(client: Client) -> AsyncIterator[str]:
    """A worker running the stand-in journey on its own task queue."""
    queue = f"intake-test-journey-{secrets.token_hex(4)}"
    async with Worker(client, task_queue=queue, workflows=[StandInJourney]):
        yield queue


@asynccontextmanager
async def running_intake(
    tmp_path: Path,
    database_url: str,
    *,
    temporal_address: str | None,
    journey_queue: str = "unused-journey-queue",
    client: Client | None = None,
    run_worker: bool = False,
    task_queue: str | None = None,
) -> AsyncIterator[Intake]:
    settings = sector_settings(
        "intake",
        tmp_path,
        database_url,
        temporal_address=temporal_address,
        task_queue=task_queue,
    )
    factory = functools.partial(build_components, journey_task_queue=journey_queue)
    async with running_sector(settings, factory, MIGRATIONS_DIR, run_worker=run_worker) as running:
        yield Intake(running, intake_pb2_grpc.IntakeServiceStub(running.channel), client)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    """Poll `check` with short sleeps until it holds (no long fixed waits)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)
