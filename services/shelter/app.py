"""Builds the shelter service's components (SectorComponents) from settings:
repository -> service -> servicer, and the activities on the shelter's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector
from masar.platform.db import Database
from masar.platform.process import SectorComponents
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.referral import ConsentSource, assemble_sector
from masar.v1 import shelter_pb2_grpc
from services.shelter.activities import ShelterActivities
from services.shelter.models import TABLES, PlacementRow
from services.shelter.repository import ShelterHooks, ShelterRepository
from services.shelter.service import ShelterService
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
    shelters = ShelterRepository()
    return assemble_sector(
        sector=Sector.SHELTER,
        settings=settings,
        database=database,
        connector=connector,
        model=PlacementRow,
        tables=TABLES,
        hooks=ShelterHooks(shelters),
        servicer=lambda referrals: ShelterServicer(
            ShelterService(referrals=referrals, shelters=shelters)
        ),
        service=(SERVICE_NAME, shelter_pb2_grpc.add_ShelterServiceServicer_to_server),
        activities=lambda channel, proofs: ShelterActivities(
            shelter_pb2_grpc.ShelterServiceStub(channel), proofs
        ),
        consent=consent,
    )
