"""Wires the health service (`build_components`, for `python -m
services.health`): repository -> service -> servicer, and the activities on
health's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import HealthNeeds, Sector
from masar.referral import SectorParts, sector_builder
from masar.v1 import health_pb2_grpc
from services.health.activities import HealthActivities
from services.health.models import TABLES, CareReferralRow
from services.health.repository import CareUnitRepository, HealthHooks
from services.health.service import HealthService
from services.health.servicer import SERVICE_NAME, HealthServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def health_parts() -> SectorParts[CareReferralRow, HealthNeeds]:
    units = CareUnitRepository()
    return SectorParts(
        sector=Sector.HEALTH,
        model=CareReferralRow,
        tables=TABLES,
        hooks=HealthHooks(units),
        servicer=lambda referrals: HealthServicer(HealthService(referrals=referrals, units=units)),
        service=(SERVICE_NAME, health_pb2_grpc.add_HealthServiceServicer_to_server),
        activities=lambda channel, proofs: HealthActivities(
            health_pb2_grpc.HealthServiceStub(channel), proofs
        ),
    )


build_components = sector_builder(health_parts)
