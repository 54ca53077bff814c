"""Builds the shelter service's components (SectorComponents) from settings."""

from __future__ import annotations

from pathlib import Path

import grpc

from masar.contract import Sector, ShelterNeeds
from masar.db import Database
from masar.grpc_server import GrpcService
from masar.outbox import Outbox
from masar.referrals import IdempotencyLedger, ReferralHandshake, dial_address
from masar.service import SectorComponents
from masar.settings import ServiceSettings
from masar.temporal import TemporalConnector
from masar.v1 import shelter_pb2_grpc
from services.shelter.activities import ShelterActivities
from services.shelter.models import TABLES, PlacementRow
from services.shelter.repository import ShelterHooks, ShelterRepository
from services.shelter.servicer import SERVICE_NAME, ShelterServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def build_components(
    settings: ServiceSettings, database: Database, connector: TemporalConnector
) -> SectorComponents:
    shelters = ShelterRepository()
    outbox = Outbox(database, TABLES.outbox, connector)
    handshake: ReferralHandshake[PlacementRow, ShelterNeeds] = ReferralHandshake(
        sector=Sector.SHELTER,
        model=PlacementRow,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(TABLES.idempotency),
        hooks=ShelterHooks(shelters),
    )
    servicer = ShelterServicer(handshake=handshake, shelters=shelters)
    # The activities call this service's own API, like any other client.
    channel = grpc.aio.insecure_channel(dial_address(settings.addr))
    activities = ShelterActivities(shelter_pb2_grpc.ShelterServiceStub(channel))
    return SectorComponents(
        grpc_services=[
            GrpcService(
                SERVICE_NAME, servicer, shelter_pb2_grpc.add_ShelterServiceServicer_to_server
            )
        ],
        activities=activities.definitions(),
        outbox=outbox,
        closers=[channel.close],
    )
