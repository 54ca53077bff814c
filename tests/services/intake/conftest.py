"""Fixtures for the intake service's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client

from masar.platform.crypto import Keyring, install_keyring
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from tests.services.intake.support import Intake, running_intake, stand_in_journey


@pytest.fixture(autouse=True)
def keyring() -> Iterator[Keyring]:
    """Each test encrypts PII columns under its own fresh key ring."""
    ring = Keyring.generate()
    install_keyring(ring)
    yield ring
    install_keyring(None)


@pytest.fixture
async def temporal_client(temporal_dev_server) -> Client:
    return await connect_temporal(
        TemporalSettings(address=temporal_dev_server.address, namespace="default")
    )


@pytest.fixture
async def journey_queue(temporal_client: Client) -> AsyncIterator[str]:
    """The stand-in journey's task queue, with its worker running."""
    async with stand_in_journey(temporal_client) as queue:
        yield queue


@pytest.fixture
async def intake(
    tmp_path, database_url, temporal_dev_server, temporal_client, journey_queue
) -> AsyncIterator[Intake]:
    """Intake on SQLite and PostgreSQL, with Temporal up and the stand-in journey."""
    async with running_intake(
        tmp_path,
        database_url,
        temporal_address=temporal_dev_server.address,
        journey_queue=journey_queue,
        client=temporal_client,
    ) as running:
        yield running
