"""The whole stack, in-process and real: a Temporal dev server (a real process),
the sector services (intake, shelter, legal, employment, health,
psychosocial) on real ports with real databases and their activity
workers, and the journey worker. Used by integration tests that need every
part at once; each test gets its own dev server, so no task queue is shared
with another test's leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from temporalio.client import Client

from masar import contract as c
from masar.cli.intake import unknown_checklist
from masar.platform.process import SectorProcess, start_sector
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    psychosocial_pb2,
    psychosocial_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)
from services.employment import app as employment_app
from services.health import app as health_app
from services.intake import app as intake_app
from services.legal import app as legal_app
from services.psychosocial import app as psychosocial_app
from services.shelter import app as shelter_app
from tests.conftest import DevServer, free_port
from tests.support_auth import rightful_channel
from workflows.policy import load_policy
from workflows.worker import build_worker

T = TypeVar("T")

APPS: dict[c.ServiceName, Any] = {
    "intake": intake_app,
    "shelter": shelter_app,
    "legal": legal_app,
    "employment": employment_app,
    "health": health_app,
    "psychosocial": psychosocial_app,
}


@dataclasses.dataclass
class LiveStack:
    temporal: DevServer
    client: Client
    sectors: dict[c.ServiceName, SectorProcess]
    channels: dict[c.ServiceName, grpc.aio.Channel]

    @property
    def intake(self) -> intake_pb2_grpc.IntakeServiceStub:
        return intake_pb2_grpc.IntakeServiceStub(self.channels["intake"])

    @property
    def shelter(self) -> shelter_pb2_grpc.ShelterServiceStub:
        return shelter_pb2_grpc.ShelterServiceStub(self.channels["shelter"])

    @property
    def legal(self) -> legal_pb2_grpc.LegalAidServiceStub:
        return legal_pb2_grpc.LegalAidServiceStub(self.channels["legal"])

    @property
    def employment(self) -> employment_pb2_grpc.EmploymentServiceStub:
        return employment_pb2_grpc.EmploymentServiceStub(self.channels["employment"])

    @property
    def health(self) -> health_pb2_grpc.HealthServiceStub:
        return health_pb2_grpc.HealthServiceStub(self.channels["health"])

    @property
    def psychosocial(self) -> psychosocial_pb2_grpc.PsychosocialServiceStub:
        return psychosocial_pb2_grpc.PsychosocialServiceStub(self.channels["psychosocial"])

    async def status(self, case_id: str) -> c.JourneyStatus:
        handle = self.client.get_workflow_handle(c.journey_workflow_id(case_id))
        return await handle.query(c.QUERY_STATUS, result_type=c.JourneyStatus)

    async def wait_status(
        self,
        case_id: str,
        ready: Callable[[c.JourneyStatus], T | None],
        *,
        wait_seconds: float = 30,
    ) -> T:
        """Poll the journey's status until `ready` returns something."""
        deadline = time.monotonic() + wait_seconds
        last: c.JourneyStatus | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                last = await self.status(case_id)
                found = ready(last)
                if found:
                    return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"journey never reached the expected state; last status: {last}")


def referral_in(sector: c.Sector, *statuses: c.ReferralStatus) -> Callable[[c.JourneyStatus], Any]:
    def find(status: c.JourneyStatus) -> c.ReferralView | None:
        for ref in status.referrals:
            if ref.sector == sector and ref.status in statuses:
                return ref
        return None

    return find


@contextlib.asynccontextmanager
async def live_stack(
    data_dir: Path,
    *,
    policy_file: Path | None = None,
    temporal_db: Path | None = None,
    temporal_log: Path | None = None,
) -> AsyncIterator[LiveStack]:
    """`temporal_db`: the dev server persists to that SQLite file (else it
    keeps everything in memory); `temporal_log`: its output goes there."""
    temporal = DevServer(free_port(), db_file=temporal_db, log_file=temporal_log)
    sectors: dict[c.ServiceName, SectorProcess] = {}
    channels: dict[c.ServiceName, grpc.aio.Channel] = {}
    worker_task: asyncio.Task[None] | None = None
    try:
        client = await connect_temporal(
            ServiceSettings.from_env(
                "intake", {"MASAR_TEMPORAL_ADDRESS": temporal.address}
            ).common.temporal
        )
        addresses = {n: f"127.0.0.1:{free_port()}" for n in APPS}
        env_addrs = {f"MASAR_{n.upper()}_ADDR": a for n, a in addresses.items()}
        for name, app in APPS.items():
            settings = ServiceSettings.from_env(
                name,
                {
                    "MASAR_DATA_DIR": str(data_dir),
                    "MASAR_TEMPORAL_ADDRESS": temporal.address,
                    **env_addrs,
                },
            )
            sectors[name] = await start_sector(settings, app.build_components, app.MIGRATIONS_DIR)
            # Each call acts as whoever may make it (tests/support_auth.py).
            channels[name] = rightful_channel(addresses[name])
        worker = build_worker(client, load_policy(policy_file))
        worker_task = asyncio.create_task(worker.run())
        yield LiveStack(temporal=temporal, client=client, sectors=sectors, channels=channels)
        await worker.shutdown()
    finally:
        if worker_task is not None and not worker_task.done():
            worker_task.cancel()
            with contextlib.suppress(BaseException):
                await worker_task
        for chan in channels.values():
            await chan.close()
        for process in sectors.values():
            await process.stop()
        temporal.stop()


def region_organisation(region: str) -> str:
    """The organisation of the network that runs a region's test providers (an
    opaque id; the sectors do not ask the network service about it)."""
    return "org-" + hashlib.sha256(region.encode()).hexdigest()[:12]


async def seed_region(stack: LiveStack, region: str, *, shelters: int = 2) -> dict[str, list[str]]:
    """Reference data for one region: shelters, legal providers, a programme,
    a hospital care unit and a psychosocial provider, all run by
    `region_organisation(region)`."""
    ids: dict[str, list[str]] = {
        "shelter": [],
        "legal": [],
        "employment": [],
        "health": [],
        "psychosocial": [],
    }
    organisation = region_organisation(region)
    for i in range(shelters):
        reply = await stack.shelter.CreateShelter(
            shelter_pb2.CreateShelterRequest(
                name=f"Shelter {i}",
                region=region,
                capacity=6,
                accepts_children=True,
                address=f"confidential address {i}",
                organisation_id=organisation,
                idempotency_key=f"seed-shelter-{region}-{i}",
            )
        )
        ids["shelter"].append(_id_of(reply))
    for i in range(2):
        reply = await stack.legal.CreateProvider(
            legal_pb2.CreateLegalProviderRequest(
                kind=legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION,
                name=f"Association {i}",
                region=region,
                languages=["ar", "ary", "fr"],
                matters=[
                    legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                    legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
                ],
                organisation_id=organisation,
                idempotency_key=f"seed-legal-{region}-{i}",
            )
        )
        ids["legal"].append(_id_of(reply))
    programme = employment_pb2.CreateProgrammeRequest(
        name="Couture",
        kind=employment_pb2.PROGRAMME_KIND_SEWING,
        region=region,
        seats=10,
        languages=["ar", "ary", "fr"],
        organisation_id=organisation,
        idempotency_key=f"seed-programme-{region}",
    )
    programme.start_date.GetCurrentTime()
    ids["employment"].append(_id_of(await stack.employment.CreateProgramme(programme)))
    unit = health_pb2.CreateCareUnitRequest(
        name="Unité intégrée",
        region=region,
        services=[
            health_pb2.CARE_SERVICE_PEP,
            health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION,
            health_pb2.CARE_SERVICE_FORENSIC_EXAM,
            health_pb2.CARE_SERVICE_CERTIFICATE,
        ],
        languages=["ar", "ary", "fr"],
        organisation_id=organisation,
        idempotency_key=f"seed-care-unit-{region}",
    )
    ids["health"].append(_id_of(await stack.health.CreateCareUnit(unit)))
    support = psychosocial_pb2.CreateSupportProviderRequest(
        name="Écoute",
        region=region,
        kinds=[
            psychosocial_pb2.SUPPORT_KIND_COUNSELLING,
            psychosocial_pb2.SUPPORT_KIND_SOCIAL_SUPPORT,
        ],
        languages=["ar", "ary", "fr"],
        organisation_id=organisation,
        idempotency_key=f"seed-psychosocial-{region}",
    )
    ids["psychosocial"].append(_id_of(await stack.psychosocial.CreateSupportProvider(support)))
    return ids


def _id_of(reply: Any) -> str:
    for _, inner in reply.ListFields():
        for name in ("shelter_id", "provider_id", "programme_id", "care_unit_id"):
            if hasattr(inner, name):
                return str(getattr(inner, name))
    raise AssertionError(f"no id in {type(reply).__name__}")


def register_request(
    region: str,
    *,
    needs: tuple[str, ...] = ("shelter", "legal", "employment"),
    consents: tuple[str, ...] = ("shelter", "legal", "employment"),
    risk: str = "high",
    alias: str = "",
    phone: str = "",
    narrative: str = "",
    key: str = "",
) -> intake_pb2.RegisterCaseRequest:
    sectors = {
        "shelter": common_pb2.SECTOR_SHELTER,
        "legal": common_pb2.SECTOR_LEGAL,
        "employment": common_pb2.SECTOR_EMPLOYMENT,
    }
    scopes = {
        "shelter": intake_pb2.CONSENT_SCOPE_SHELTER,
        "legal": intake_pb2.CONSENT_SCOPE_LEGAL,
        "employment": intake_pb2.CONSENT_SCOPE_EMPLOYMENT,
        "health": intake_pb2.CONSENT_SCOPE_HEALTH,
        "psychosocial": intake_pb2.CONSENT_SCOPE_PSYCHOSOCIAL,
    }
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=key or f"reg-{time.monotonic_ns()}",
        survivor=intake_pb2.SurvivorProfile(
            alias=alias,
            birth_year=1994,
            region=region,
            languages=["ary"],
            contact=intake_pb2.ContactDetails(phone=phone),
            accompanying_children=1,
        ),
        incident=intake_pb2.Incident(
            violence_type=intake_pb2.VIOLENCE_TYPE_PHYSICAL_ASSAULT,
            contexts=[intake_pb2.INCIDENT_CONTEXT_INTIMATE_PARTNER],
            narrative=narrative,
        ),
        risk=intake_pb2.RiskAssessmentInput(checklist=unknown_checklist()),
        needs=[sectors[n] for n in needs],
        consents=[scopes[n] for n in consents],
        legal_matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
        employment_interests=["sewing"],
    )
    if risk != "low":
        request.risk.override.level = common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.upper()}")
        request.risk.override.reason = "professional judgement"
    now = time.time()
    request.incident.occurred_at.FromSeconds(int(now // 3600 * 3600) - 3600 * 24)
    return request


async def eventually(call: Callable[[], Awaitable[T]], *, wait_seconds: float = 20) -> T:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
