"""Helpers for the employment service's tests: requests with sensible defaults."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from masar.v1 import common_pb2, employment_pb2, employment_pb2_grpc
from tests.services.harness import RunningSector
from tests.support_auth import consent_proof

FES = "fes-meknes"
CASA = "casablanca-settat"
SEWING = employment_pb2.PROGRAMME_KIND_SEWING
PASTRY = employment_pb2.PROGRAMME_KIND_CONFECTIONERY
GOLD = employment_pb2.PROGRAMME_KIND_GOLDSMITHING
# The organisation of the network that runs the tests' programmes (an opaque id).
ORG = "org-e3910e000001"


def stub_of(running: RunningSector) -> employment_pb2_grpc.EmploymentServiceStub:
    return employment_pb2_grpc.EmploymentServiceStub(running.channel)


def key() -> str:
    return secrets.token_hex(8)


def start(month: int) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime(2030, month, 1, tzinfo=UTC))
    return ts


def programme_request(
    *,
    kind=SEWING,
    region=FES,
    seats=3,
    month=1,
    languages=("ary", "fr"),
    idem=None,
    organisation=ORG,
):
    return employment_pb2.CreateProgrammeRequest(
        name="Atelier",
        kind=kind,
        region=region,
        seats=seats,
        start_date=start(month),
        languages=list(languages),
        idempotency_key=idem or key(),
        organisation_id=organisation,
    )


async def create_programme(stub, **kwargs):
    return (await stub.CreateProgramme(programme_request(**kwargs))).programme


def enrolment(
    *, region=FES, interests=(), languages=(), exclude=(), provider_id="", idem=None, case=None
):
    case = case or secrets.token_hex(8)
    return employment_pb2.RequestEnrolmentRequest(
        case_id=case,
        risk=common_pb2.RISK_LEVEL_MEDIUM,
        region=region,
        needs=employment_pb2.EmploymentNeeds(interests=list(interests), languages=list(languages)),
        exclude_provider_ids=list(exclude),
        provider_id=provider_id,
        idempotency_key=idem or key(),
        consent_proof=consent_proof(case, "employment"),
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


async def seats(stub, programme_id) -> tuple[int, int]:
    reply = await stub.ListProgrammes(employment_pb2.ListProgrammesRequest())
    (found,) = [p for p in reply.programmes if p.programme_id == programme_id]
    return found.seats_taken, found.seats_free
