"""The one place Temporal clients are made.

Every process (services, journey worker, CLI, tests) gets its client here, so
the payload codec and the tracing interceptor are configured once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from masar.platform.codec import EncryptionCodec
from masar.platform.crypto import Keyring, process_keyring
from masar.platform.settings import TemporalSettings

log = logging.getLogger(__name__)


def data_converter(*, keyring: Keyring | None = None) -> DataConverter:
    """The data converter every client and worker uses (workers inherit their
    client's): payloads encrypted with the key ring (the process's own unless
    one is given), failure messages and stack traces moved into the encoded
    attributes so that they are encrypted too. A payload that is not
    encrypted, or not under a key of the ring, is refused (masar.platform.codec)."""
    if keyring is None:
        process_keyring()  # fail fast on a malformed key ring setting
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def replay_data_converter(*, keyring: Keyring | None = None) -> DataConverter:
    """For replaying recorded histories only (tests, investigations): like
    `data_converter`, but payloads written before the codec existed are read
    as they are. Never for a client or a worker."""
    converter = data_converter(keyring=keyring)
    return dataclasses.replace(
        converter, payload_codec=EncryptionCodec(keyring, allow_plaintext=True)
    )


def client_interceptors() -> list[Interceptor]:
    """Tracing on every client (and so on every worker built from it)."""
    return [TracingInterceptor()]


def client_options(*, keyring: Keyring | None = None) -> dict[str, Any]:
    """Keyword arguments for `Client.connect` (or a test environment)."""
    return {
        "data_converter": data_converter(keyring=keyring),
        "interceptors": client_interceptors(),
    }


async def connect_temporal(
    settings: TemporalSettings,
    *,
    extra_interceptors: Sequence[Interceptor] = (),
    keyring: Keyring | None = None,
) -> Client:
    options = client_options(keyring=keyring)
    options["interceptors"] = [*options["interceptors"], *extra_interceptors]
    return await Client.connect(settings.address, namespace=settings.namespace, **options)


class TemporalConnector:
    """Connects lazily and keeps retrying, so a service starts (and stores
    decisions in its outbox) even while Temporal is unreachable."""

    def __init__(self, settings: TemporalSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    @property
    def client(self) -> Client | None:
        return self._client

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await connect_temporal(self._settings)
        return self._client

    async def wait(self, stop: asyncio.Event, *, max_backoff: float = 5.0) -> Client | None:
        """Connect, retrying with backoff until connected or `stop` is set."""
        delay = 0.2
        while not stop.is_set():
            try:
                return await self.get()
            except Exception as exc:  # connection refused, DNS, TLS...
                log.warning(
                    "temporal unreachable, retrying",
                    extra={"address": self._settings.address, "error": type(exc).__name__},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, max_backoff)
        return None
