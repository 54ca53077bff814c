"""Wires the shelter service (`build_components`, for `python -m
services.shelter`): repository -> service -> servicer, and the activities on
the shelter's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector, ShelterNeeds
from masar.referral import SectorParts, sector_builder
from masar.v1 import shelter_pb2_grpc
from services.shelter.activities import ShelterActivities
from services.shelter.models import TABLES, PlacementRow
from services.shelter.repository import ShelterHooks, ShelterRepository
from services.shelter.service import ShelterService
from services.shelter.servicer import SERVICE_NAME, ShelterServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def shelter_parts() -> SectorParts[PlacementRow, ShelterNeeds]:
    shelters = ShelterRepository()
    return SectorParts(
        sector=Sector.SHELTER,
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
    )


build_components = sector_builder(shelter_parts)
