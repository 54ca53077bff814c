"""Test support: a sector service running in-process on a free port, with a
real gRPC client, a real database and its own key ring; and the real journey
on a Temporal dev server of its own, for the sectors' contract tests.

`RunningSector.channel` acts as the rightful caller of each RPC
(tests/support_auth.py); `channel_as(role, org, region)` acts as anyone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import func, select, text
from temporalio.client import Client, WorkflowHandle

from masar.contract import (
    JOURNEY_TASK_QUEUE,
    JOURNEY_WORKFLOW,
    QUERY_STATUS,
    JourneyInput,
    JourneyStatus,
    ServiceName,
    journey_workflow_id,
)
from masar.platform.identity import Role
from masar.platform.process import ComponentsFactory, SectorProcess, start_sector
from masar.platform.rpc import FIELD_METADATA_KEY
from masar.platform.settings import ServiceSettings, TemporalSettings
from masar.platform.temporal import connect_temporal
from tests.conftest import free_port
from tests.support_auth import authed_channel, rightful_channel


@dataclasses.dataclass
class RunningSector:
    process: SectorProcess
    channel: grpc.aio.Channel
    address: str
    extra_channels: list[grpc.aio.Channel] = dataclasses.field(default_factory=list)

    def channel_as(
        self, role: Role | str | None = None, org: str = "", region: str = "", **kw: Any
    ) -> grpc.aio.Channel:
        """A channel acting as `role` (or presenting `token=`), closed with the service."""
        chan = authed_channel(f"127.0.0.1:{self.process.port}", role, org, region, **kw)
        self.extra_channels.append(chan)
        return chan

    def count(self, table: str) -> int:
        with self.process.database.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(text(table))).scalar_one())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.process.database.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()


def sector_settings(
    name: ServiceName,
    tmp_path: Path,
    database_url: str,
    *,
    temporal_address: str | None = None,
    task_queue: str | None = None,
) -> ServiceSettings:
    env = {
        "MASAR_DATA_DIR": str(tmp_path),
        f"MASAR_{name.upper()}_DATABASE_URL": database_url,
        f"MASAR_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}",
        # Nothing listens there unless a test says otherwise: Temporal is "down".
        "MASAR_TEMPORAL_ADDRESS": temporal_address or f"127.0.0.1:{free_port()}",
    }
    settings = ServiceSettings.from_env(name, env)
    if task_queue is not None:
        settings = dataclasses.replace(settings, task_queue=task_queue)
    return settings


@asynccontextmanager
async def running_sector(
    settings: ServiceSettings,
    factory: ComponentsFactory,
    migrations_dir: Path,
    *,
    run_worker: bool = False,
) -> AsyncIterator[RunningSector]:
    process = await start_sector(settings, factory, migrations_dir, run_worker=run_worker)
    channel = rightful_channel(f"127.0.0.1:{process.port}")
    running = RunningSector(process=process, channel=channel, address=settings.addr)
    try:
        yield running
    finally:
        await channel.close()
        for extra in running.extra_channels:
            await extra.close()
        await process.stop()


def error_field(error: grpc.aio.AioRpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(FIELD_METADATA_KEY)


# --- the REAL journey, for each sector's contract test ---------------------------------


@dataclasses.dataclass
class JourneyBed:
    """A Temporal dev server of its own running the real journey worker."""

    client: Client
    address: str

    async def start(self, inp: JourneyInput) -> WorkflowHandle[Any, Any]:
        """Start the journey as intake does (workflow id journey-<case_id>)."""
        await self.client.start_workflow(
            JOURNEY_WORKFLOW,
            inp,
            id=journey_workflow_id(inp.case_id),
            task_queue=JOURNEY_TASK_QUEUE,
        )
        return self.client.get_workflow_handle(
            journey_workflow_id(inp.case_id), result_type=JourneyStatus
        )

    async def until(
        self,
        handle: WorkflowHandle[Any, Any],
        predicate: Callable[[JourneyStatus], bool],
        *,
        within: float = 30.0,
    ) -> JourneyStatus:
        """Poll the journey's `status` query until `predicate` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        status: JourneyStatus | None = None
        while loop.time() < deadline:
            status = await handle.query(QUERY_STATUS, result_type=JourneyStatus)
            if predicate(status):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"the journey did not get there; last status: {status}")


@asynccontextmanager
async def real_journey() -> AsyncIterator[JourneyBed]:
    """A fresh in-memory Temporal dev server (search attributes registered)
    and the real journey worker on it: workflows.worker.build_worker, i.e.
    workflows.journey.SurvivorJourney with the shipped SLA policy, on
    masar-journey. The server is the test's own because the journey calls
    the sectors on the contract's fixed task queues (masar-shelter, ...)."""
    from tests.conftest import DevServer
    from workflows.policy import load_policy
    from workflows.worker import build_worker

    server = DevServer(free_port())
    try:
        client = await connect_temporal(
            TemporalSettings(address=server.address, namespace=server.namespace)
        )
        async with build_worker(client, load_policy()):
            yield JourneyBed(client=client, address=server.address)
    finally:
        server.stop()
