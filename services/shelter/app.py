"""Builds the shelter service's components (SectorComponents) from settings."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector, ShelterNeeds
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
from masar.v1 import intake_pb2_grpc, shelter_pb2_grpc
from services.shelter.activities import ShelterActivities
from services.shelter.models import TABLES, PlacementRow
from services.shelter.repository import ShelterHooks, ShelterRepository
from services.shelter.servicer import SERVICE_NAME, ShelterServicer

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
    clients = sector_clients(settings, Sector.SHELTER)
    shelters = ShelterRepository()
    outbox = Outbox(database, TABLES.outbox, connector)
    handshake: ReferralHandshake[PlacementRow, ShelterNeeds] = ReferralHandshake(
        sector=Sector.SHELTER,
        model=PlacementRow,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(TABLES.idempotency),
        consent=clients.consent_verifier,
        audited=True,
        hooks=ShelterHooks(shelters),
    )
    servicer = ShelterServicer(handshake=handshake, shelters=shelters)
    # The activities call this service's own API, like any other client, as
    # the sector's service identity; intake proves the consent of each request.
    activities = ShelterActivities(
        shelter_pb2_grpc.ShelterServiceStub(clients.own),
        consent or IntakeConsent(intake_pb2_grpc.IntakeServiceStub(clients.intake)),
    )
    return SectorComponents(
        grpc_services=[
            GrpcService(
                SERVICE_NAME, servicer, shelter_pb2_grpc.add_ShelterServiceServicer_to_server
            )
        ],
        activities=activities.definitions(),
        outbox=outbox,
        closers=clients.closers,
    )
