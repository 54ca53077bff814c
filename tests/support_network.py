"""The network service (the identity provider) in-process, for tests of code
that asks it for tokens: on the test's event loop (`running_network`) or on
a thread of its own for synchronous code such as `masar token issue`
(`NetworkThread`). Its keys are the data dir's, as `masar up` makes them:
the token-signing key under keys/network/, the bootstrap client's key under
keys/cli/ (trusted through keys/public/clients/)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from masar.platform.clients import ensure_client_key
from masar.platform.process import SectorProcess, start_sector
from masar.platform.revocation import RevocationFeed
from masar.platform.settings import KeySettings, ServiceSettings
from services.network.app import MIGRATIONS_DIR, build_components
from services.network.credentials import Passwords
from tests.conftest import free_port

CHEAP_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))


def network_settings(data_dir: Path, database_url: str | None = None) -> ServiceSettings:
    env = {
        "MASAR_DATA_DIR": str(data_dir),
        "MASAR_NETWORK_DATABASE_URL": database_url or f"sqlite:///{data_dir / 'network.db'}",
        "MASAR_NETWORK_ADDR": f"127.0.0.1:{free_port()}",
        # Nothing listens there: Temporal is "down".
        "MASAR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    return ServiceSettings.from_env("network", env)


def bootstrap_client(data_dir: Path, *clients: str) -> None:
    """The client keys `masar up` makes (the CLI's bootstrap client, and
    services'), their public halves where the network service looks."""
    for name in ("cli", *clients):
        ensure_client_key(KeySettings(holder=name, data_dir=data_dir))


@contextlib.asynccontextmanager
async def running_network(
    settings: ServiceSettings,
    *,
    revocations: RevocationFeed | None = None,
    revocation_interval: float | None = None,
    **components: Any,
) -> AsyncIterator[SectorProcess]:
    def factory(s: Any, database: Any, connector: Any) -> Any:
        return build_components(s, database, connector, passwords=CHEAP_PASSWORDS, **components)

    process = await start_sector(
        settings,
        factory,
        MIGRATIONS_DIR,
        run_worker=False,
        revocations=revocations,
        revocation_interval=revocation_interval,
    )
    try:
        yield process
    finally:
        await process.stop()


class NetworkThread:
    """The network service on a thread with its own event loop."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return self.settings.addr

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with running_network(self.settings):
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def start(self) -> NetworkThread:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
