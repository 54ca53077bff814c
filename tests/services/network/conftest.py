"""Fixtures for the network service's tests: the service on a free port, a
real database (SQLite, and PostgreSQL when configured), its own key ring."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from masar.platform.crypto import Keyring, install_keyring
from services.network.app import MIGRATIONS_DIR, build_components
from services.network.credentials import TOTP_PERIOD, Passwords
from services.network.domain import ThrottlePolicy
from services.network.signin import SignInPolicy
from tests.services.harness import RunningSector, running_sector, sector_settings

# argon2id still, at a cost the shared test machines can afford.
CHEAP_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
NO_THROTTLE = SignInPolicy(throttle=ThrottlePolicy(free=10_000))


class StepClock:
    """A still clock a few minutes in the past (tokens it stamps are valid
    now), moved by hand so that every TOTP code falls in its own step."""

    def __init__(self) -> None:
        start = datetime.now(UTC) - timedelta(minutes=5)
        self.now = start.replace(second=1, microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def next_step(self) -> None:
        self.now += timedelta(seconds=TOTP_PERIOD)


@pytest.fixture(autouse=True)
def keyring() -> Iterator[Keyring]:
    ring = Keyring.generate()
    install_keyring(ring)
    yield ring
    install_keyring(None)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@asynccontextmanager
async def network_service(
    tmp_path: Path, database_url: str, **options: Any
) -> AsyncIterator[RunningSector]:
    settings = sector_settings("network", tmp_path, database_url)
    factory = functools.partial(build_components, **options)
    async with running_sector(settings, factory, MIGRATIONS_DIR) as running:
        yield running


@pytest.fixture
async def network(
    tmp_path: Path, database_url: str, clock: StepClock
) -> AsyncIterator[RunningSector]:
    """The service with cheap hashes, no throttling and the step clock."""
    async with network_service(
        tmp_path, database_url, policy=NO_THROTTLE, passwords=CHEAP_PASSWORDS, clock=clock
    ) as running:
        yield running
