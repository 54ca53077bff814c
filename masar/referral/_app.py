"""The wiring every referral-receiving sector shares: a sector's `app.py`
gives its `SectorParts` and gets its `build_components` from
`sector_builder`, which assembles its handshake on its own tables and outbox,
its servicer, and its activities calling its own API as the sector's service
identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

import grpc
import grpc.aio

from masar.contract import Sector
from masar.platform.assertions import AssertionSigner
from masar.platform.channels import authorised_channel, service_token_source
from masar.platform.consent_keys import consent_verifier
from masar.platform.db import Database
from masar.platform.idempotency import IdempotencyLedger
from masar.platform.outbox import Outbox
from masar.platform.process import SectorComponents, identity_environ, process_keys
from masar.platform.rpc import GrpcService
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.referral._activities import ConsentSource, IntakeConsent, SectorActivities
from masar.referral._handshake import SectorHandshake
from masar.referral._models import HandshakeTables
from masar.referral._repository import M, N, SectorHooks
from masar.referral.anchoring import service_anchorer
from masar.referral.consent import ConsentVerifier
from masar.v1 import intake_pb2_grpc


def dial_address(listen_address: str) -> str:
    """Where a process reaches its own gRPC server: a wildcard listen host
    ("0.0.0.0", "[::]") becomes the loopback address."""
    host, _, port = listen_address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        return f"127.0.0.1:{port}"
    return listen_address


@dataclass
class SectorClients:
    """What a sector's components need to act as its own service identity:
    a channel to its own API (its activities) and one to intake (consent
    proofs), both carrying the identity's tokens, and the verifier of the
    consent proofs its request RPC receives."""

    own: grpc.aio.Channel
    intake: grpc.aio.Channel
    consent_verifier: ConsentVerifier

    @property
    def closers(self) -> list[Callable[[], Any]]:
        return [self.own.close, self.intake.close]


def sector_clients(settings: ServiceSettings, sector: Sector) -> SectorClients:
    """Built from the sector's settings (token keys: `masar.platform.identity`,
    read from `masar.platform.process.identity_environ(settings)`)."""
    environ = identity_environ(settings)
    identity = service_token_source(sector.value, environ)
    return SectorClients(
        own=authorised_channel(dial_address(settings.addr), identity),
        intake=authorised_channel(dial_address(settings.common.service_addrs["intake"]), identity),
        # Intake's consent key (its public half): never the token issuer's.
        consent_verifier=ConsentVerifier(consent_verifier(process_keys(settings)), sector),
    )


@dataclass(frozen=True, kw_only=True)
class SectorParts(Generic[M, N]):
    """What a sector brings to its wiring: its referral model and tables, its
    hooks, `servicer` (builds the servicer and its service layer on the
    handshake), `service` (the gRPC service name and its registration
    function) and `activities` (built on a channel to its own API and a source
    of consent proofs)."""

    sector: Sector
    model: type[M]
    tables: HandshakeTables
    hooks: SectorHooks[M, N]
    servicer: Callable[[SectorHandshake[M, N]], Any]
    service: tuple[str, Callable[[Any, grpc.aio.Server], None]]
    activities: Callable[[grpc.aio.Channel, ConsentSource], SectorActivities]


class ComponentsBuilder(Protocol):
    """A sector's `build_components` (a `masar.platform.process.ComponentsFactory`);
    `consent` replaces intake's consent proofs in tests only."""

    def __call__(
        self,
        settings: ServiceSettings,
        database: Database,
        connector: TemporalConnector,
        *,
        consent: ConsentSource | None = None,
    ) -> SectorComponents: ...


def sector_builder(parts: Callable[[], SectorParts[Any, Any]]) -> ComponentsBuilder:
    """A sector's `build_components`, from the function that gives its parts
    (called once per build)."""

    def build_components(
        settings: ServiceSettings,
        database: Database,
        connector: TemporalConnector,
        *,
        consent: ConsentSource | None = None,
    ) -> SectorComponents:
        return assemble_sector(parts(), settings, database, connector, consent=consent)

    return build_components


def assemble_sector(
    parts: SectorParts[M, N],
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    *,
    consent: ConsentSource | None = None,
) -> SectorComponents:
    """A sector's components: its handshake on its own tables and outbox, its
    servicer, and its activities on a channel to its own API, with intake
    proving each request's consent (`consent` replaces intake in tests only)."""
    clients = sector_clients(settings, parts.sector)
    outbox = Outbox(database, parts.tables.outbox, connector)
    # The sector's own assertion key signs its staff's decisions and milestones.
    outbox.signer = AssertionSigner.from_env(parts.sector.value, identity_environ(settings))
    handshake: SectorHandshake[M, N] = SectorHandshake(
        sector=parts.sector,
        model=parts.model,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(parts.tables.idempotency),
        consent=clients.consent_verifier,
        audited=True,
        hooks=parts.hooks,
    )
    name, register = parts.service
    steps = parts.activities(
        clients.own,
        consent or IntakeConsent(intake_pb2_grpc.IntakeServiceStub(clients.intake)),
    )
    return SectorComponents(
        grpc_services=[GrpcService(name, parts.servicer(handshake), register)],
        activities=steps.definitions(),
        outbox=outbox,
        closers=clients.closers,
        anchorer=service_anchorer(settings, database),
    )
