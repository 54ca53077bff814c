"""Fixtures for the sector services' tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from masar.platform.crypto import Keyring, install_keyring


@pytest.fixture(autouse=True)
def keyring() -> Iterator[Keyring]:
    """Each test encrypts PII columns under its own fresh key ring."""
    ring = Keyring.generate()
    install_keyring(ring)
    yield ring
    install_keyring(None)
