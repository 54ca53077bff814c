"""Builds the employment service's components (SectorComponents) from settings:
repository -> service -> servicer, and the activities on employment's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector
from masar.platform.db import Database
from masar.platform.process import SectorComponents
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.referral import ConsentSource, assemble_sector
from masar.v1 import employment_pb2_grpc
from services.employment.activities import EmploymentActivities
from services.employment.models import TABLES, EnrolmentRow
from services.employment.repository import EmploymentHooks, ProgrammeRepository
from services.employment.service import EmploymentService
from services.employment.servicer import SERVICE_NAME, EmploymentServicer

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
    programmes = ProgrammeRepository()
    return assemble_sector(
        sector=Sector.EMPLOYMENT,
        settings=settings,
        database=database,
        connector=connector,
        model=EnrolmentRow,
        tables=TABLES,
        hooks=EmploymentHooks(programmes),
        servicer=lambda referrals: EmploymentServicer(
            EmploymentService(referrals=referrals, programmes=programmes)
        ),
        service=(SERVICE_NAME, employment_pb2_grpc.add_EmploymentServiceServicer_to_server),
        activities=lambda channel, proofs: EmploymentActivities(
            employment_pb2_grpc.EmploymentServiceStub(channel), proofs
        ),
        consent=consent,
    )
