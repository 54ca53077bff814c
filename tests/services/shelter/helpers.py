"""Helpers for the shelter service's tests: requests with sensible defaults."""

from __future__ import annotations

import secrets

from masar.v1 import common_pb2, shelter_pb2, shelter_pb2_grpc
from tests.services.harness import RunningSector
from tests.support_auth import consent_proof

FES = "fes-meknes"
RABAT = "rabat-sale-kenitra"
WHEELCHAIR = shelter_pb2.ACCESSIBILITY_FEATURE_WHEELCHAIR
# The organisation of the network that runs the tests' shelters (an opaque id).
ORG = "org-5e1e75000001"


def stub_of(running: RunningSector) -> shelter_pb2_grpc.ShelterServiceStub:
    return shelter_pb2_grpc.ShelterServiceStub(running.channel)


def key() -> str:
    return secrets.token_hex(8)


def case_id() -> str:
    return secrets.token_hex(8)


async def create_shelter(
    stub, *, region=FES, capacity=3, children=True, access=(), name="Dar", organisation=ORG
):
    reply = await stub.CreateShelter(
        shelter_pb2.CreateShelterRequest(
            name=name,
            region=region,
            capacity=capacity,
            accepts_children=children,
            accessibility=list(access),
            address="12 derb secret, medina",
            idempotency_key=key(),
            organisation_id=organisation,
        )
    )
    return reply.shelter


def placement(
    *,
    region=FES,
    household=1,
    children=0,
    access=(),
    exclude=(),
    provider_id="",
    idem=None,
    case=None,
):
    case = case or case_id()
    return shelter_pb2.RequestPlacementRequest(
        consent_proof=consent_proof(case, "shelter"),
        case_id=case,
        risk=common_pb2.RISK_LEVEL_HIGH,
        region=region,
        needs=shelter_pb2.ShelterNeeds(
            household_size=household, children=children, accessibility_needs=list(access)
        ),
        exclude_provider_ids=list(exclude),
        provider_id=provider_id,
        idempotency_key=idem or key(),
    )


async def decide(stub, referral_id, *, accept=True, reason=0, idem=None):
    return await stub.DecideReferral(
        common_pb2.DecideReferralRequest(
            referral_id=referral_id,
            decision=common_pb2.DECISION_ACCEPT if accept else common_pb2.DECISION_DECLINE,
            decline_reason=reason,
            idempotency_key=idem or key(),
        )
    )


async def beds(stub, shelter_id) -> tuple[int, int, int]:
    reply = await stub.ListShelters(shelter_pb2.ListSheltersRequest())
    (found,) = [s for s in reply.shelters if s.shelter_id == shelter_id]
    return found.reserved_beds, found.occupied_beds, found.free_beds
