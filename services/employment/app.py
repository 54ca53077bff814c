"""Builds the employment service's components (SectorComponents) from settings."""

from __future__ import annotations

from pathlib import Path

from masar.contract import EmploymentNeeds, Sector
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
from masar.v1 import employment_pb2_grpc, intake_pb2_grpc
from services.employment.activities import EmploymentActivities
from services.employment.models import TABLES, EnrolmentRow
from services.employment.repository import EmploymentHooks, ProgrammeRepository
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
    clients = sector_clients(settings, Sector.EMPLOYMENT)
    programmes = ProgrammeRepository()
    outbox = Outbox(database, TABLES.outbox, connector)
    handshake: ReferralHandshake[EnrolmentRow, EmploymentNeeds] = ReferralHandshake(
        sector=Sector.EMPLOYMENT,
        model=EnrolmentRow,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(TABLES.idempotency),
        consent=clients.consent_verifier,
        audited=True,
        hooks=EmploymentHooks(programmes),
    )
    servicer = EmploymentServicer(handshake=handshake, programmes=programmes)
    # The activities call this service's own API, like any other client, as
    # the sector's service identity; intake proves the consent of each request.
    activities = EmploymentActivities(
        employment_pb2_grpc.EmploymentServiceStub(clients.own),
        consent or IntakeConsent(intake_pb2_grpc.IntakeServiceStub(clients.intake)),
    )
    return SectorComponents(
        grpc_services=[
            GrpcService(
                SERVICE_NAME,
                servicer,
                employment_pb2_grpc.add_EmploymentServiceServicer_to_server,
            )
        ],
        activities=activities.definitions(),
        outbox=outbox,
        closers=clients.closers,
    )
