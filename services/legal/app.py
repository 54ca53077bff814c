"""Builds the legal aid service's components (SectorComponents) from settings."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector
from masar.db import Database
from masar.grpc_server import GrpcService
from masar.outbox import Outbox
from masar.referrals import (
    ConsentSource,
    IdempotencyLedger,
    IntakeConsent,
    ReferralHandshake,
    sector_clients,
)
from masar.service import SectorComponents
from masar.settings import ServiceSettings
from masar.temporal import TemporalConnector
from masar.v1 import intake_pb2_grpc, legal_pb2_grpc
from services.legal.activities import LegalActivities
from services.legal.domain import AidNeeds
from services.legal.models import TABLES, LegalReferralRow
from services.legal.repository import FileRepository, LegalHooks, ProviderRepository
from services.legal.servicer import SERVICE_NAME, LegalAidServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def build_components(
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    *,
    consent: ConsentSource | None = None,
) -> SectorComponents:
    """`consent` is for tests only (a stand-in for intake's consent proofs);
    the service asks intake."""
    clients = sector_clients(settings, Sector.LEGAL)
    providers = ProviderRepository()
    outbox = Outbox(database, TABLES.outbox, connector)
    handshake: ReferralHandshake[LegalReferralRow, AidNeeds] = ReferralHandshake(
        sector=Sector.LEGAL,
        model=LegalReferralRow,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(TABLES.idempotency),
        consent=clients.consent_verifier,
        audited=True,
        hooks=LegalHooks(providers),
    )
    servicer = LegalAidServicer(handshake=handshake, providers=providers, files=FileRepository())
    # The activities call this service's own API, like any other client, as
    # the sector's service identity; intake proves the consent of each request.
    activities = LegalActivities(
        legal_pb2_grpc.LegalAidServiceStub(clients.own),
        consent or IntakeConsent(intake_pb2_grpc.IntakeServiceStub(clients.intake)),
    )
    return SectorComponents(
        grpc_services=[
            GrpcService(
                SERVICE_NAME, servicer, legal_pb2_grpc.add_LegalAidServiceServicer_to_server
            )
        ],
        activities=activities.definitions(),
        outbox=outbox,
        closers=clients.closers,
    )
