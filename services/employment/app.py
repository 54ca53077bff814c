"""Wires the employment service (`build_components`, for `python -m
services.employment`): repository -> service -> servicer, and the activities
on employment's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import EmploymentNeeds, Sector
from masar.referral import SectorParts, sector_builder
from masar.v1 import employment_pb2_grpc
from services.employment.activities import EmploymentActivities
from services.employment.models import TABLES, EnrolmentRow
from services.employment.repository import EmploymentHooks, ProgrammeRepository
from services.employment.service import EmploymentService
from services.employment.servicer import SERVICE_NAME, EmploymentServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def employment_parts() -> SectorParts[EnrolmentRow, EmploymentNeeds]:
    programmes = ProgrammeRepository()
    return SectorParts(
        sector=Sector.EMPLOYMENT,
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
    )


build_components = sector_builder(employment_parts)
