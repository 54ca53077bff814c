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
from temporalio.service import TLSConfig

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


def payload_keyring(settings: TemporalSettings) -> Keyring | None:
    """The payload codec's key ring the settings name (MASAR_PAYLOAD_KEYRING,
    MASAR_PAYLOAD_KEY_FILE); None: the process's own key ring."""
    if settings.payload_keyring:
        return Keyring.parse(settings.payload_keyring, source="MASAR_PAYLOAD_KEYRING")
    if settings.payload_key_file is not None:
        return Keyring.from_json(
            settings.payload_key_file.read_text(), source="MASAR_PAYLOAD_KEY_FILE"
        )
    return None


def connection_options(settings: TemporalSettings) -> dict[str, Any]:
    """TLS (server CA, client certificate: mTLS) and API key, from the settings
    (MASAR_TEMPORAL_TLS_*, MASAR_TEMPORAL_API_KEY); nothing on the local stack."""
    options: dict[str, Any] = {}
    if settings.tls:
        options["tls"] = TLSConfig(
            server_root_ca_cert=settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None,
            client_cert=settings.tls_cert_file.read_bytes() if settings.tls_cert_file else None,
            client_private_key=(
                settings.tls_key_file.read_bytes() if settings.tls_key_file else None
            ),
            domain=settings.tls_server_name,
        )
    if settings.api_key:
        options["api_key"] = settings.api_key
    return options


async def connect_temporal(
    settings: TemporalSettings,
    *,
    extra_interceptors: Sequence[Interceptor] = (),
    keyring: Keyring | None = None,
) -> Client:
    """`keyring` for the payloads, else the one the settings name, else the
    process's."""
    options = client_options(keyring=keyring or payload_keyring(settings))
    options["interceptors"] = [*options["interceptors"], *extra_interceptors]
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        **connection_options(settings),
        **options,
    )


class TemporalConnector:
    """Connects lazily and keeps retrying, so a service starts (and stores
    decisions in its outbox) even while Temporal is unreachable."""

    def __init__(self, settings: TemporalSettings, *, keyring: Keyring | None = None) -> None:
        self._settings = settings
        self._keyring = keyring
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
                self._client = await connect_temporal(self._settings, keyring=self._keyring)
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
