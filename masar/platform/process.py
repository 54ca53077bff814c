"""The process shape every sector service shares.

`python -m services.<sector>` reads its settings, migrates its database, serves
its gRPC API (with health and reflection), runs its sector's Temporal activity
worker on `masar-<sector>` and its outbox dispatcher, and stops cleanly on
SIGTERM/SIGINT. A service only provides a `SectorComponents` factory.

Every RPC but health and reflection needs a signed bearer token of a role the
servicer method declares (`masar.platform.access.requires`): `start_sector` installs the
`AuthInterceptor` with the policy taken from the servicers, so a method
without a declaration is closed to everyone (deny by default). Tokens must
be for this service (`aud`) and not revoked: a `RevocationPoller` keeps the
revocations current from the network service (masar.platform.revocation).

Keys: the process uses its own key material only (masar.platform.settings
.KeySettings): `run_sector_main` installs the service's own data key ring
(its columns and audit head), its Temporal clients seal payloads with the
payload key ring (the processes that exchange payloads with journeys), and it
verifies tokens with the issuer's public keys. TLS as the settings say
(masar.platform.settings.TlsSettings).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from masar.platform.channels import install_client_tls, service_identity
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.db import Database, migrate
from masar.platform.identity import TokenVerifier
from masar.platform.logs import setup_logging
from masar.platform.metrics import server_interceptors
from masar.platform.outbox import Outbox
from masar.platform.revocation import (
    NetworkRevocationFeed,
    RevocationFeed,
    RevocationList,
    RevocationPoller,
)
from masar.platform.rpc import GrpcService, RunningServer, install_shutdown_signals, start_server
from masar.platform.settings import (
    PAYLOAD_HOLDERS,
    TOKEN_ISSUER_HOLDER,
    Env,
    KeySettings,
    ServiceSettings,
    SettingsError,
    process_environ,
)
from masar.platform.temporal import TemporalConnector, payload_keyring

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
    # Where the service learns revoked tokens (the network service: its own
    # database); None: from the network service (`ListRevocations`).
    revocation_feed: RevocationFeed | None = None


ComponentsFactory = Callable[[ServiceSettings, Database, TemporalConnector], SectorComponents]


def identity_environ(settings: ServiceSettings) -> dict[str, str]:
    """Where a service reads its key material from (`process_keys`): the process
    environment, with the data dir its settings name (so the local key files
    are those of the stack it belongs to, also when tests run several)."""
    return {**process_environ(), "MASAR_DATA_DIR": str(settings.common.data_dir)}


def process_keys(settings: ServiceSettings) -> KeySettings:
    """The service's own key material (`identity_environ`)."""
    return KeySettings.from_env(
        settings.name, Env(identity_environ(settings)), settings.common.data_dir
    )


def data_keyring(keys: KeySettings) -> Keyring:
    """The service's own data key ring: MASAR_KEYRING, MASAR_KEY_FILE, else
    $MASAR_DATA_DIR/keys/<service>/data-keyring.json (created on first use)."""
    if keys.data_keyring:
        return Keyring.parse(keys.data_keyring)
    if keys.data_key_file is not None:
        if not keys.data_key_file.is_file():
            raise SettingsError("MASAR_KEY_FILE does not name a readable file")
        return Keyring.from_json(keys.data_key_file.read_text(), source="MASAR_KEY_FILE")
    return Keyring.load_or_create(keys.data_keyring_path)


def payload_keys(settings: ServiceSettings, keys: KeySettings) -> Keyring | None:
    """The payload codec's key ring of a service that exchanges payloads with
    journeys: MASAR_PAYLOAD_KEYRING / MASAR_PAYLOAD_KEY_FILE, else its copy
    $MASAR_DATA_DIR/keys/<service>/payload-keyring.json (made by `masar up`),
    else — a deployment configured before the keys were separated — its
    MASAR_KEYRING / MASAR_KEY_FILE. None for a service that exchanges none."""
    configured = payload_keyring(settings.common.temporal)
    if configured is not None:
        return configured
    if settings.name not in PAYLOAD_HOLDERS:
        return None
    path = keys.payload_keyring_path
    if path.is_file():
        return Keyring.from_json(path.read_text(), source=str(path))
    if keys.data_keyring or keys.data_key_file is not None:
        log.warning(
            "no payload key ring configured: the data key ring seals payloads "
            "(set MASAR_PAYLOAD_KEY_FILE)",
            extra={"service": settings.name},
        )
        return None
    raise SettingsError(
        "no payload key ring: set MASAR_PAYLOAD_KEY_FILE (or MASAR_PAYLOAD_KEYRING), "
        f"or start the stack with `masar up`, which creates {path}"
    )


def revocation_feed(settings: ServiceSettings, keys: KeySettings) -> RevocationFeed | None:
    """The network service's `ListRevocations`, asked as this service's
    identity; None for a process that is itself the issuer (the network
    service, which reads its own database; tests and benchmarks that run
    every service in one process with the issuer's key)."""
    if settings.name == TOKEN_ISSUER_HOLDER or keys.token_signing_key:
        return None
    return NetworkRevocationFeed(
        settings.common.service_addrs["network"],
        service_identity(settings.name, keys, settings.common),
        tls=settings.common.tls,
    )


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
    revocations: RevocationList = field(default_factory=RevocationList)
    poller: RevocationPoller | None = None

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
    revocations: RevocationFeed | None = None,
    revocation_interval: float | None = None,
) -> SectorProcess:
    """`verifier` defaults to the issuer's public keys (`process_keys`);
    `auth_clock` (tests) is the clock tokens are checked against;
    `revocations` (tests) replaces the feed of revoked tokens, polled every
    `revocation_interval` seconds (default MASAR_REVOCATION_POLL_SECONDS)."""
    keys = process_keys(settings)
    database = Database(settings.database_url)
    await asyncio.to_thread(migrate, database, migrations_dir)
    # Payloads sealed with the key ring the settings name (`install_process_keys`).
    connector = TemporalConnector(settings.common.temporal)
    components = factory(settings, database, connector)
    revoked = RevocationList()
    auth = AuthInterceptor(
        verifier or TokenVerifier.from_keys(keys),
        AccessPolicy.from_services(components.grpc_services),
        clock=auth_clock,
        audience=settings.name,
        revocations=revoked,
    )
    server = await start_server(
        components.grpc_services,
        address or settings.addr,
        # Metrics first (refusals are counted), then identity, then error mapping.
        interceptors=[*server_interceptors(), auth],
        tls=settings.common.tls,
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    feed = revocations or components.revocation_feed or revocation_feed(settings, keys)
    poller = None
    if feed is not None:
        poller = RevocationPoller(
            feed, revoked, interval=revocation_interval or settings.revocation_poll_seconds
        )
        tasks.append(asyncio.create_task(poller.run(stop)))
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
        revocations=revoked,
        poller=poller,
    )


def install_process_keys(settings: ServiceSettings) -> ServiceSettings:
    """A service process's own keys, installed once at its start: its data
    key ring (its columns, its audit head) and the client TLS of its calls
    to other services. Returns the settings its Temporal clients read the
    payload key ring from (its copy on the local stack)."""
    keys = process_keys(settings)
    if keys.token_signing_key and settings.name != TOKEN_ISSUER_HOLDER:
        log.warning(
            "this service holds the token-signing key (MASAR_TOKEN_SIGNING_KEY): only the "
            "network service should; it mints its own tokens and polls no revocations",
            extra={"service": settings.name},
        )
    install_keyring(data_keyring(keys))
    install_client_tls(settings.common.tls)
    temporal = settings.common.temporal
    if payload_keys(settings, keys) is not None and payload_keyring(temporal) is None:
        temporal = dataclasses.replace(temporal, payload_key_file=keys.payload_keyring_path)
    return dataclasses.replace(
        settings, common=dataclasses.replace(settings.common, temporal=temporal)
    )


def run_sector_main(name: ServiceName, factory: ComponentsFactory, migrations_dir: Path) -> None:
    """Entry point body of `python -m services.<name>`."""
    try:
        settings = ServiceSettings.from_env(name)
    except SettingsError as exc:
        print(f"masar {name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(name, level=settings.common.log_level, fmt=settings.common.log_format)
    try:
        settings = install_process_keys(settings)
    except SettingsError as exc:
        print(f"masar {name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
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
