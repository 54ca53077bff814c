"""Helpers for the health service's tests: requests with sensible defaults."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from masar.v1 import common_pb2, health_pb2, health_pb2_grpc
from tests.services.harness import RunningSector
from tests.support_auth import consent_proof

FES = "fes-meknes"
CASA = "casablanca-settat"
PEP = health_pb2.CARE_SERVICE_PEP
EC = health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION
FORENSIC = health_pb2.CARE_SERVICE_FORENSIC_EXAM
CERTIFICATE = health_pb2.CARE_SERVICE_CERTIFICATE
ALL_CARE = (PEP, EC, FORENSIC, CERTIFICATE)
# The hospital the tests' care units belong to (an opaque id).
ORG = "org-4ea170000001"


def stub_of(running: RunningSector) -> health_pb2_grpc.HealthServiceStub:
    return health_pb2_grpc.HealthServiceStub(running.channel)


def key() -> str:
    return secrets.token_hex(8)


def ts(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at.astimezone(UTC))
    return value


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)


def unit_request(
    *, region=FES, services=ALL_CARE, languages=("ary", "fr"), idem=None, organisation=ORG
):
    return health_pb2.CreateCareUnitRequest(
        name="Unité intégrée",
        region=region,
        services=list(services),
        languages=list(languages),
        idempotency_key=idem or key(),
        organisation_id=organisation,
    )


async def create_unit(stub, **kwargs):
    return (await stub.CreateCareUnit(unit_request(**kwargs))).care_unit


def medical_request(
    *,
    region=FES,
    care=(),
    languages=(),
    incident_at: datetime | None = None,
    exclude=(),
    provider_id="",
    idem=None,
    case=None,
):
    case = case or secrets.token_hex(8)
    needs = health_pb2.HealthNeeds(care=list(care), languages=list(languages))
    if incident_at is not None:
        needs.incident_at.CopyFrom(ts(incident_at))
    return health_pb2.RequestMedicalCareRequest(
        case_id=case,
        risk=common_pb2.RISK_LEVEL_HIGH,
        region=region,
        needs=needs,
        exclude_provider_ids=list(exclude),
        provider_id=provider_id,
        idempotency_key=idem or key(),
        consent_proof=consent_proof(case, "health"),
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


async def accepted_referral(stub, **kwargs) -> str:
    referral = (await stub.RequestMedicalCare(medical_request(**kwargs))).referral
    await decide(stub, referral.referral_id)
    return str(referral.referral_id)


def pep(referral_id, outcome=health_pb2.PEP_OUTCOME_STARTED, at=None, idem=None):
    return health_pb2.RecordPepRequest(
        referral_id=referral_id,
        outcome=outcome,
        at=ts(at or hours_ago(1)),
        idempotency_key=key() if idem is None else idem,
    )
