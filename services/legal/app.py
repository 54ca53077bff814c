"""Wires the legal aid service (`build_components`, for `python -m
services.legal`): repositories -> service -> servicer, and the activities on
legal aid's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import Sector
from masar.referral import SectorParts, sector_builder
from masar.v1 import legal_pb2_grpc
from services.legal.activities import LegalActivities
from services.legal.domain import AidNeeds
from services.legal.models import TABLES, LegalReferralRow
from services.legal.repository import FileRepository, LegalHooks, ProviderRepository
from services.legal.service import LegalAidService
from services.legal.servicer import SERVICE_NAME, LegalAidServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def legal_parts() -> SectorParts[LegalReferralRow, AidNeeds]:
    providers = ProviderRepository()
    return SectorParts(
        sector=Sector.LEGAL,
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
    )


build_components = sector_builder(legal_parts)
