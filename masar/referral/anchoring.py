"""A service's audit anchoring, wired: its head signed with its anchoring key
and sent to the network service's `AnchorAuditHead` as the service's own
identity (masar.platform.audit_anchor explains the scheme)."""

from __future__ import annotations

import grpc.aio

from masar.platform.audit_anchor import (
    ANCHORED_SERVICES,
    AnchorKey,
    AnchorSettings,
    AuditAnchorer,
)
from masar.platform.channels import TokenSource, authorised_channel, service_token_source
from masar.platform.db import Database
from masar.platform.process import identity_environ
from masar.platform.settings import ServiceSettings
from masar.v1 import network_pb2, network_pb2_grpc


class NetworkAnchorSink:
    """`AnchorAuditHead` on the network service (a channel made on first use,
    in the loop that uses it)."""

    def __init__(self, address: str, tokens: TokenSource, *, timeout: float = 5.0) -> None:
        self._address = address
        self._tokens = tokens
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    async def anchor(
        self, service: str, sequence: int, head_hash: str, key_id: str, signature: bytes
    ) -> None:
        if self._channel is None:
            self._channel = authorised_channel(self._address, self._tokens)
        stub = network_pb2_grpc.NetworkServiceStub(self._channel)
        await stub.AnchorAuditHead(
            network_pb2.AnchorAuditHeadRequest(
                service=service,
                sequence=sequence,
                head_hash=head_hash,
                key_id=key_id,
                signature=signature,
            ),
            timeout=self._timeout,
        )

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def service_anchorer(settings: ServiceSettings, database: Database) -> AuditAnchorer | None:
    """The anchorer of a service whose audit log is anchored (None for the
    network service itself, or when MASAR_AUDIT_ANCHOR=off)."""
    environ = identity_environ(settings)
    options = AnchorSettings.from_env(environ)
    if not options.enabled or settings.name not in ANCHORED_SERVICES:
        return None
    return AuditAnchorer(
        service=settings.name,
        database=database,
        key=lambda: AnchorKey.from_env(settings.name, environ),
        sink=NetworkAnchorSink(
            settings.common.service_addrs["network"],
            service_token_source(settings.name, environ),
        ),
        settings=options,
    )
