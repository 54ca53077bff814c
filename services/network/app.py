"""Wiring of the network service: one factory, everything through constructors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.idempotency import IdempotencyLedger
from masar.platform.identity import TokenIssuer
from masar.platform.process import SectorComponents, identity_environ
from masar.platform.rpc import GrpcService
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.v1.network_pb2_grpc import add_NetworkServiceServicer_to_server
from services.network.activities import NetworkActivities
from services.network.credentials import LookupHashes, Passwords
from services.network.models import IDEMPOTENCY
from services.network.service import NetworkDirectory
from services.network.servicer import LOOPBACK, SERVICE_NAME, NetworkServicer
from services.network.signin import SignInDesk, SignInPolicy

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def build_components(
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    *,
    policy: SignInPolicy | None = None,
    passwords: Passwords | None = None,
    clock: Callable[[], datetime] = utcnow,
    trusted_proxies: frozenset[str] = LOOPBACK,
) -> SectorComponents:
    """`policy`, `passwords` and `clock` are for tests (short delays, cheaper
    hashes, a moving clock); the service uses the defaults. The service signs
    the tokens it gives at sign-in, so it needs the issuer's key
    (MASAR_TOKEN_SIGNING_KEY, or the local stack's issuer file)."""
    issuer = TokenIssuer.from_env(identity_environ(settings))
    lookups = LookupHashes()
    hasher = passwords or Passwords()
    directory = NetworkDirectory(
        database,
        ledger=IdempotencyLedger(IDEMPOTENCY),
        lookups=lookups,
        passwords=hasher,
        clock=clock,
    )
    desk = SignInDesk(
        database, issuer=issuer, lookups=lookups, passwords=hasher, policy=policy, clock=clock
    )
    servicer = NetworkServicer(directory=directory, desk=desk, trusted_proxies=trusted_proxies)
    return SectorComponents(
        grpc_services=[GrpcService(SERVICE_NAME, servicer, add_NetworkServiceServicer_to_server)],
        activities=NetworkActivities().all(),
    )
