"""Builds the legal aid service's components (SectorComponents) from settings:
repositories -> service -> servicer, and the activities on legal aid's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector
from masar.platform.db import Database
from masar.platform.process import SectorComponents
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.referral import ConsentSource, assemble_sector
from masar.v1 import legal_pb2_grpc
from services.legal.activities import LegalActivities
from services.legal.models import TABLES, LegalReferralRow
from services.legal.repository import FileRepository, LegalHooks, ProviderRepository
from services.legal.service import LegalAidService
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
    providers = ProviderRepository()
    return assemble_sector(
        sector=Sector.LEGAL,
        settings=settings,
        database=database,
        connector=connector,
        model=LegalReferralRow,
        tables=TABLES,
        hooks=LegalHooks(providers),
        servicer=lambda referrals: LegalAidServicer(
            LegalAidService(referrals=referrals, providers=providers, files=FileRepository())
        ),
        service=(SERVICE_NAME, legal_pb2_grpc.add_LegalAidServiceServicer_to_server),
        activities=lambda channel, proofs: LegalActivities(
            legal_pb2_grpc.LegalAidServiceStub(channel), proofs
        ),
        consent=consent,
    )
