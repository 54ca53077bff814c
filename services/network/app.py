"""Wiring of the network service: one factory, everything through constructors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from masar.platform.clients import ClientRegistry
from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.idempotency import IdempotencyLedger
from masar.platform.identity import TokenIssuer
from masar.platform.process import SectorComponents, identity_environ, process_keys
from masar.platform.rpc import GrpcService
from masar.platform.settings import ServiceSettings, SettingsError
from masar.platform.temporal import TemporalConnector
from masar.v1.identity_pb2_grpc import add_IdentityServiceServicer_to_server
from masar.v1.network_pb2_grpc import add_NetworkServiceServicer_to_server
from services.network.activities import NetworkActivities
from services.network.audience import DeliveryPolicy
from services.network.credentials import LookupHashes, Passwords
from services.network.dispatcher import AfterSend, Dispatcher
from services.network.identity_servicer import SERVICE_NAME as IDENTITY_SERVICE_NAME
from services.network.identity_servicer import IdentityServicer
from services.network.mail import FileMailer, Mailer, SmtpMailer, parse_smtp_url
from services.network.models import IDEMPOTENCY
from services.network.notifications import NotificationDesk
from services.network.service import NetworkDirectory
from services.network.servicer import LOOPBACK, SERVICE_NAME, NetworkServicer
from services.network.signin import SignInDesk, SignInPolicy
from services.network.tokens import LocalRevocationFeed, TokenDesk

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
    delivery: DeliveryPolicy | None = None,
    notify_clock: Callable[[], datetime] = utcnow,
    after_send: AfterSend | None = None,
) -> SectorComponents:
    """`policy`, `passwords` and `clock` are for tests (short delays, cheaper
    hashes, a moving clock); so are `delivery` (short retries and delays),
    `notify_clock` (the notifications' clock: digests at a chosen hour) and
    `after_send` (a hook between a channel's acceptance and its commit). The
    service uses the defaults. The service signs the tokens it gives at
    sign-in, so it needs the issuer's key (MASAR_TOKEN_SIGNING_KEY, or the
    local stack's issuer file)."""
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
    notify = settings.notify
    notifications = NotificationDesk(database, policy=delivery, clock=notify_clock)
    dispatcher = Dispatcher(
        database,
        notifications,
        mailer=mailer_for(settings),
        sender=notify.smtp_from,
        console_url=notify.console_url,
        clock=notify_clock,
        after_send=after_send,
    )
    servicer = NetworkServicer(
        directory=directory,
        desk=desk,
        trusted_proxies=trusted_proxies,
        notifications=notifications,
        console_url=notify.console_url,
    )
    # The identity provider: tokens beyond sign-in, and their revocations.
    identity = IdentityServicer(
        database=database,
        desk=TokenDesk(database, issuer, clock=clock),
        clients=ClientRegistry.from_keys(process_keys(settings)),
    )
    return SectorComponents(
        grpc_services=[
            GrpcService(SERVICE_NAME, servicer, add_NetworkServiceServicer_to_server),
            GrpcService(IDENTITY_SERVICE_NAME, identity, add_IdentityServiceServicer_to_server),
        ],
        activities=NetworkActivities(notifications).all(),
        background=[dispatcher.run],
        revocation_feed=LocalRevocationFeed(database),
    )


def mail_dir(settings: ServiceSettings) -> Path:
    """Where e-mails are written when no SMTP server is configured."""
    return settings.common.data_dir / "mail"


def mailer_for(settings: ServiceSettings) -> Mailer:
    """SMTP when MASAR_SMTP_URL is set; else .eml files under $MASAR_DATA_DIR/mail/."""
    if settings.notify.smtp_url:
        try:
            target = parse_smtp_url(settings.notify.smtp_url)
        except ValueError as exc:
            raise SettingsError(f"MASAR_SMTP_URL: {exc}") from None
        return SmtpMailer(target)
    return FileMailer(mail_dir(settings))
