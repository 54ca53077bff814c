"""The process shape every sector service shares.

`python -m services.<sector>` reads its settings, migrates its database, serves
its gRPC API (with health and reflection), runs its sector's Temporal activity
worker on `masar-<sector>` and its outbox dispatcher, and stops cleanly on
SIGTERM/SIGINT. A service only provides a `SectorComponents` factory.

Every RPC but health and reflection needs a signed bearer token of a role the
servicer method declares (`masar.platform.access.requires`): `start_sector` installs the
`AuthInterceptor` with the policy taken from the servicers, so a method
without a declaration is closed to everyone (deny by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.worker import Worker

from masar.contract import ServiceName
from masar.platform.access import AccessPolicy, AuthInterceptor
from masar.platform.audit_anchor import AuditAnchorer
from masar.platform.db import Database, migrate
from masar.platform.identity import TokenVerifier
from masar.platform.logs import setup_logging
from masar.platform.metrics import server_interceptors
from masar.platform.outbox import Outbox
from masar.platform.rpc import GrpcService, RunningServer, install_shutdown_signals, start_server
from masar.platform.settings import ServiceSettings, SettingsError, process_environ
from masar.platform.temporal import TemporalConnector

log = logging.getLogger(__name__)


@dataclass
class SectorComponents:
    grpc_services: Sequence[GrpcService]
    activities: Sequence[Callable[..., Any]]
    outbox: Outbox | None = None
    # Closed on shutdown (gRPC channels held by activities, ...).
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Anchors the audit head periodically and at shutdown (masar.platform.audit_anchor).
    anchorer: AuditAnchorer | None = None
    # Other loops run beside the server until the stop event is set (the
    # network's notification dispatcher).
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(
        default_factory=list
    )


ComponentsFactory = Callable[[ServiceSettings, Database, TemporalConnector], SectorComponents]


def identity_environ(settings: ServiceSettings) -> dict[str, str]:
    """Where a service reads its token keys from (`masar.platform.identity`): the process
    environment, with the data dir its settings name (so the local issuer file
    is the one of the stack it belongs to, also when tests run several)."""
    return {**process_environ(), "MASAR_DATA_DIR": str(settings.common.data_dir)}


@dataclass
class SectorProcess:
    """A running sector service: usable in-process by tests, or as `main`."""

    settings: ServiceSettings
    database: Database
    connector: TemporalConnector
    components: SectorComponents
    server: RunningServer
    stop_event: asyncio.Event
    tasks: list[asyncio.Task[Any]]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        self.stop_event.set()
        await self.server.stop(grace=3.0)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.components.anchorer is not None:
            await self.components.anchorer.close()
        for close in self.components.closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
        self.database.dispose()


async def _run_worker(
    connector: TemporalConnector,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    stop: asyncio.Event,
) -> None:
    """Run the activity worker; reconnect and restart it if Temporal goes away."""
    while not stop.is_set():
        client = await connector.wait(stop)
        if client is None:
            return
        worker = Worker(client, task_queue=task_queue, activities=list(activities))
        run = asyncio.create_task(worker.run())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            await worker.shutdown()
            with contextlib.suppress(Exception):
                await run
            return
        stopper.cancel()
        exc = run.exception()
        log.warning(
            "activity worker stopped, restarting",
            extra={"task_queue": task_queue, "error": type(exc).__name__ if exc else None},
        )
        await asyncio.sleep(1.0)


async def start_sector(
    settings: ServiceSettings,
    factory: ComponentsFactory,
    migrations_dir: Path,
    *,
    address: str | None = None,
    run_worker: bool = True,
    verifier: TokenVerifier | None = None,
    auth_clock: Callable[[], datetime] | None = None,
) -> SectorProcess:
    """`verifier` defaults to the keys of `identity_environ(settings)`;
    `auth_clock` (tests) is the clock tokens are checked against."""
    database = Database(settings.database_url)
    await asyncio.to_thread(migrate, database, migrations_dir)
    connector = TemporalConnector(settings.common.temporal)
    components = factory(settings, database, connector)
    auth = AuthInterceptor(
        verifier or TokenVerifier.from_env(identity_environ(settings)),
        AccessPolicy.from_services(components.grpc_services),
        clock=auth_clock,
    )
    server = await start_server(
        components.grpc_services,
        address or settings.addr,
        # Metrics first (refusals are counted), then identity, then error mapping.
        interceptors=[*server_interceptors(), auth],
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    # A service without activities (yet) has no worker to run.
    if run_worker and components.activities:
        tasks.append(
            asyncio.create_task(
                _run_worker(connector, settings.task_queue, components.activities, stop)
            )
        )
    if components.outbox is not None:
        tasks.append(asyncio.create_task(components.outbox.run(stop)))
    if components.anchorer is not None:
        tasks.append(asyncio.create_task(components.anchorer.run(stop)))
    for loop in components.background:
        tasks.append(asyncio.create_task(loop(stop)))
    return SectorProcess(
        settings=settings,
        database=database,
        connector=connector,
        components=components,
        server=server,
        stop_event=stop,
        tasks=tasks,
    )


def run_sector_main(name: ServiceName, factory: ComponentsFactory, migrations_dir: Path) -> None:
    """Entry point body of `python -m services.<name>`."""
    try:
        settings = ServiceSettings.from_env(name)
    except SettingsError as exc:
        print(f"masar {name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(name, level=settings.common.log_level, fmt=settings.common.log_format)
    from masar.platform.telemetry import setup_telemetry

    telemetry = setup_telemetry(
        name, metrics_port=settings.metrics_port, settings=settings.common.telemetry
    )

    async def main() -> None:
        stop = asyncio.Event()
        install_shutdown_signals(stop)
        try:
            process = await start_sector(settings, factory, migrations_dir)
        except SettingsError as exc:
            print(f"masar {name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as exc:
            print(f"masar {name}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("serving", extra={"service": name, "addr": settings.addr})
        await stop.wait()
        log.info("stopping", extra={"service": name})
        await process.stop()

    status = 0
    try:
        asyncio.run(main())
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        telemetry.shutdown()
    # Everything is stopped and flushed. Leave without finalizing the
    # interpreter: the Temporal core's native threads may still touch Python
    # while it finalizes, which aborts the process ("PyGILState_Release").
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
