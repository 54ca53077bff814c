"""Builds the legal aid service's components (SectorComponents) from settings."""

from __future__ import annotations

from pathlib import Path

import grpc

from masar.contract import Sector
from masar.db import Database
from masar.grpc_server import GrpcService
from masar.outbox import Outbox
from masar.referrals import IdempotencyLedger, ReferralHandshake, dial_address
from masar.service import SectorComponents
from masar.settings import ServiceSettings
from masar.temporal import TemporalConnector
from masar.v1 import legal_pb2_grpc
from services.legal.activities import LegalActivities
from services.legal.domain import AidNeeds
from services.legal.models import TABLES, LegalReferralRow
from services.legal.repository import FileRepository, LegalHooks, ProviderRepository
from services.legal.servicer import SERVICE_NAME, LegalAidServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def build_components(
    settings: ServiceSettings, database: Database, connector: TemporalConnector
) -> SectorComponents:
    providers = ProviderRepository()
    outbox = Outbox(database, TABLES.outbox, connector)
    handshake: ReferralHandshake[LegalReferralRow, AidNeeds] = ReferralHandshake(
        sector=Sector.LEGAL,
        model=LegalReferralRow,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(TABLES.idempotency),
        hooks=LegalHooks(providers),
    )
    servicer = LegalAidServicer(handshake=handshake, providers=providers, files=FileRepository())
    # The activities call this service's own API, like any other client.
    channel = grpc.aio.insecure_channel(dial_address(settings.addr))
    activities = LegalActivities(legal_pb2_grpc.LegalAidServiceStub(channel))
    return SectorComponents(
        grpc_services=[
            GrpcService(
                SERVICE_NAME, servicer, legal_pb2_grpc.add_LegalAidServiceServicer_to_server
            )
        ],
        activities=activities.definitions(),
        outbox=outbox,
        closers=[channel.close],
    )
