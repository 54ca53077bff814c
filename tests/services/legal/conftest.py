"""Fixtures for the legal aid service's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from masar.platform.crypto import Keyring, install_keyring
from services.legal.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, running_sector, sector_settings


@pytest.fixture(autouse=True)
def keyring() -> Iterator[Keyring]:
    """Each test encrypts PII columns under its own fresh key ring."""
    ring = Keyring.generate()
    install_keyring(ring)
    yield ring
    install_keyring(None)


@pytest.fixture
async def legal(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    """The legal aid service on SQLite and on PostgreSQL; Temporal unreachable."""
    settings = sector_settings("legal", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running
