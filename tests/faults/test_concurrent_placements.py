"""Hundreds of staff accepting placements at once, against a few beds, on
PostgreSQL: exactly the capacity is allocated, never one bed more."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import grpc
import pytest

from masar.contract import Sector
from masar.platform.identity import Role, service_role
from masar.referral.consent import issue_consent_proof
from masar.v1 import common_pb2, shelter_pb2, shelter_pb2_grpc
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import running_sector, sector_settings
from tests.support_auth import TEST_ISSUER

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

REGION = "fes-meknes"
ACCEPTS = 200
BEDS = (3, 4)  # two shelters
# The organisations that run them: staff act as their organisation.
ORGANISATIONS = ("org-da7000000000", "org-da7000000001")


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_concurrent_accepts_allocate_exactly_the_free_beds(
    tmp_path: Path, postgres_url: str
) -> None:
    issuer = TEST_ISSUER  # trusted by services started in-process (tests/conftest.py)
    coordinator = bearer(issuer.issue(role=Role.COORDINATOR, region=REGION))
    journey = bearer(issuer.issue(role=service_role("shelter")))
    # Temporal is unreachable here: each accepted decision waits, QUEUED, in the outbox.
    settings = sector_settings("shelter", tmp_path, postgres_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as shelter:
        stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
        homes = []
        for i, beds in enumerate(BEDS):
            reply = await stub.CreateShelter(
                shelter_pb2.CreateShelterRequest(
                    name=f"Dar {i}",
                    region=REGION,
                    capacity=beds,
                    accepts_children=True,
                    address="secret",
                    idempotency_key=f"home-{i}",
                    organisation_id=ORGANISATIONS[i],
                ),
                metadata=coordinator,
            )
            homes.append(reply.shelter.shelter_id)

        async def request(i: int) -> common_pb2.Referral:
            case_id = secrets.token_hex(8)
            proof, _ = issue_consent_proof(issuer, case_id=case_id, sector=Sector.SHELTER)
            reply = await stub.RequestPlacement(
                shelter_pb2.RequestPlacementRequest(
                    case_id=case_id,
                    risk=common_pb2.RISK_LEVEL_HIGH,
                    region=REGION,
                    needs=shelter_pb2.ShelterNeeds(household_size=1),
                    provider_id=homes[i % len(homes)],
                    idempotency_key=f"place-{i}",
                    consent_proof=proof,
                ),
                metadata=journey,
            )
            return reply.referral

        referrals = await asyncio.gather(*(request(i) for i in range(ACCEPTS)))
        staff = {
            org: bearer(issuer.issue(role=Role.SHELTER_STAFF, org=org, region=REGION))
            for org in ORGANISATIONS
        }

        async def accept(referral: common_pb2.Referral) -> grpc.StatusCode:
            try:
                await stub.DecideReferral(
                    common_pb2.DecideReferralRequest(
                        referral_id=referral.referral_id,
                        decision=common_pb2.DECISION_ACCEPT,
                        idempotency_key=f"accept-{referral.referral_id}",
                    ),
                    metadata=staff[referral.organisation_id],
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(accept(r) for r in referrals))

        capacity = sum(BEDS)
        assert codes.count(grpc.StatusCode.OK) == capacity
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == ACCEPTS - capacity
        for home, beds in zip(homes, BEDS, strict=True):
            assert (
                shelter.scalar(
                    "SELECT count(*) FROM referrals WHERE provider_id = :p AND status = 'ACCEPTED'",
                    p=home,
                )
                == beds
            )
            assert (
                shelter.scalar("SELECT reserved_beds FROM shelters WHERE shelter_id = :p", p=home)
                == beds
            )
        assert shelter.scalar("SELECT count(*) FROM outbox") == capacity
