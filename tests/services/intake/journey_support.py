"""The bed of the journey API's tests: intake's real gRPC server, the REAL
journey worker on a Temporal dev server of the test's own and intake's own
activity worker (tests/services/intake/test_journey_api*.py), and the people
who call it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy.orm import Session

from masar import contract as c
from masar.platform import audit
from masar.platform.identity import Role
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, journey_pb2, journey_pb2_grpc
from tests.conftest import DevServer, free_port
from tests.services.intake.support import (
    FES,
    RABAT,
    Intake,
    registration,
    running_intake,
)
from tests.support_auth import TEST_ISSUER, bearer, token_for
from workflows.policy import load_policy
from workflows.worker import build_worker

ORG_A, ORG_B = "org-assoc-a", "org-centre-b"
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
# A call that passed authorisation: the rest of the request decided.
PASSED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)
# Tokens without the scope claim their role needs: refused when they are
# verified (issue 12, item 6), or denied by the scope rules meanwhile.
SCOPELESS = ("officer_no_org", "coord_no_region")
PEOPLE = (
    "officer_a",
    "supervisor_a",
    "officer_b",
    "care_unit",
    "coord_fes",
    "coord_rabat",
    "coord_grant",
    *SCOPELESS,
)


def _scopeless_coordinator() -> str:
    """A coordinator's token naming no region (the issuer refuses to make one)."""
    now = int(datetime.now(UTC).timestamp())
    header = {"alg": "EdDSA", "typ": "JWT", "kid": TEST_ISSUER.key_id}
    claims = {
        "iss": "masar",
        "sub": "coord-nowhere",
        "role": "coordinator",
        "org": "",
        "region": "",
        "iat": now,
        "exp": now + 3600,
        "jti": "walk",
    }
    return TEST_ISSUER._sign(header, claims)


def people() -> dict[str, Any]:
    return {
        "officer_a": bearer(token_for(Role.INTAKE_OFFICER, ORG_A, FES, subject="officer-a")),
        "supervisor_a": bearer(token_for(Role.SUPERVISOR, ORG_A, FES, subject="supervisor-a")),
        "officer_b": bearer(token_for(Role.INTAKE_OFFICER, ORG_B, FES, subject="officer-b")),
        "care_unit": bearer(token_for(Role.CARE_UNIT_OFFICER, "org-care-c", FES, subject="cu")),
        "coord_fes": bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes")),
        "coord_rabat": bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rb")),
        # Of Rabat, with an emergency grant on case 1 (Fès).
        "coord_grant": bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-gr")),
        "officer_no_org": bearer(token_for(Role.INTAKE_OFFICER, subject="officer-none")),
        "coord_no_region": bearer(_scopeless_coordinator()),
    }


@dataclass
class Bed:
    intake: Intake
    journeys: journey_pb2_grpc.JourneyServiceStub
    server: DevServer
    who: dict[str, Any]

    async def register(self, person: str, region: str = FES) -> str:
        # Medical care only: clinical windows, no sector to call.
        request = registration(needs=[common_pb2.SECTOR_MEDICAL], consents=[])
        request.survivor.region = region
        reply = await self.intake.stub.RegisterCase(request, metadata=self.who[person])
        assert reply.journey_start == common_pb2.DELIVERY_STATE_DELIVERED
        return str(reply.case.summary.case_id)

    async def listed(self, person: str, **filters: Any) -> set[str] | grpc.StatusCode:
        request = journey_pb2.ListJourneysRequest(filter=journey_pb2.JourneyFilter(**filters))
        try:
            reply = await self.journeys.ListJourneys(request, metadata=self.who[person])
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return {j.case_id for j in reply.journeys}

    async def board(self, person: str) -> set[str] | grpc.StatusCode:
        """What a board shows before SYNCED (then the watch is cancelled)."""
        call = self.journeys.WatchJourneys(
            journey_pb2.WatchJourneysRequest(), metadata=self.who[person], timeout=30
        )
        seen: set[str] = set()
        try:
            async for event in call:
                if event.kind == journey_pb2.JOURNEY_EVENT_KIND_SYNCED:
                    return seen
                assert event.kind == journey_pb2.JOURNEY_EVENT_KIND_ADDED
                seen.add(event.journey.case_id)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()
        raise AssertionError("the board ended before SYNCED")

    def audit_of(self, case_id: str) -> list[audit.AuditEntry]:
        with Session(self.intake.running.process.database.engine) as s:
            return audit.entries_for_case(s, case_id)

    async def status(self, case_id: str) -> c.JourneyStatus:
        status: c.JourneyStatus = await self.intake.handle(case_id).query(
            c.QUERY_STATUS, result_type=c.JourneyStatus
        )
        return status


async def until(check: Callable[[], Awaitable[Any]], *, within: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.2)


async def _connect_when_healthy(settings: TemporalSettings, *, within: float = 30.0) -> Any:
    """The dev server accepts connections a moment before its frontend is
    healthy ("Frontend is not healthy yet"): wait for it, within a bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await connect_temporal(settings)
        except RuntimeError as exc:
            if "not healthy" not in str(exc) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.25)


@asynccontextmanager
async def journey_bed(tmp_path: Path, database_url: str) -> AsyncIterator[Bed]:
    server = DevServer(free_port())
    try:
        client = await _connect_when_healthy(
            TemporalSettings(address=server.address, namespace=server.namespace)
        )
        async with (
            build_worker(client, load_policy()),
            running_intake(
                tmp_path,
                database_url,
                temporal_address=server.address,
                journey_queue=c.JOURNEY_TASK_QUEUE,
                client=client,
                run_worker=True,
            ) as intake,
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{intake.running.process.port}")
            try:
                yield Bed(intake, journey_pb2_grpc.JourneyServiceStub(channel), server, people())
            finally:
                await channel.close()
    finally:
        server.stop()


async def code(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
