"""Wires the psychosocial service (`build_components`, for `python -m
services.psychosocial`): repository -> service -> servicer, and the
activities on psychosocial's own API."""

from __future__ import annotations

from pathlib import Path

from masar.contract import PsychosocialNeeds, Sector
from masar.referral import SectorParts, sector_builder
from masar.v1 import psychosocial_pb2_grpc
from services.psychosocial.activities import PsychosocialActivities
from services.psychosocial.models import TABLES, SupportReferralRow
from services.psychosocial.repository import ProviderRepository, PsychosocialHooks
from services.psychosocial.service import PsychosocialService
from services.psychosocial.servicer import SERVICE_NAME, PsychosocialServicer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def psychosocial_parts() -> SectorParts[SupportReferralRow, PsychosocialNeeds]:
    providers = ProviderRepository()
    return SectorParts(
        sector=Sector.PSYCHOSOCIAL,
        model=SupportReferralRow,
        tables=TABLES,
        hooks=PsychosocialHooks(providers),
        servicer=lambda referrals: PsychosocialServicer(
            PsychosocialService(referrals=referrals, providers=providers)
        ),
        service=(SERVICE_NAME, psychosocial_pb2_grpc.add_PsychosocialServiceServicer_to_server),
        activities=lambda channel, proofs: PsychosocialActivities(
            psychosocial_pb2_grpc.PsychosocialServiceStub(channel), proofs
        ),
    )


build_components = sector_builder(psychosocial_parts)
