"""Helpers for the psychosocial service's tests: requests with sensible defaults."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from masar.v1 import common_pb2, psychosocial_pb2, psychosocial_pb2_grpc
from tests.services.harness import RunningSector
from tests.support_auth import consent_proof

FES = "fes-meknes"
CASA = "casablanca-settat"
COUNSELLING = psychosocial_pb2.SUPPORT_KIND_COUNSELLING
SOCIAL = psychosocial_pb2.SUPPORT_KIND_SOCIAL_SUPPORT
GROUP = psychosocial_pb2.SUPPORT_KIND_GROUP_SUPPORT
ATTENDED = psychosocial_pb2.ATTENDANCE_ATTENDED
MISSED = psychosocial_pb2.ATTENDANCE_MISSED
# The association running the tests' providers (an opaque id).
ORG = "org-a55000000001"


def stub_of(running: RunningSector) -> psychosocial_pb2_grpc.PsychosocialServiceStub:
    return psychosocial_pb2_grpc.PsychosocialServiceStub(running.channel)


def key() -> str:
    return secrets.token_hex(8)


def ts(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at.astimezone(UTC))
    return value


def days_ago(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)


def provider_request(
    *, region=FES, kinds=(COUNSELLING, SOCIAL), languages=("ary", "fr"), idem=None, organisation=ORG
):
    return psychosocial_pb2.CreateSupportProviderRequest(
        name="Écoute et accompagnement",
        region=region,
        kinds=list(kinds),
        languages=list(languages),
        idempotency_key=idem or key(),
        organisation_id=organisation,
    )


async def create_provider(stub, **kwargs):
    return (await stub.CreateSupportProvider(provider_request(**kwargs))).provider


def support_request(
    *, region=FES, support=(), languages=(), exclude=(), provider_id="", idem=None, case=None
):
    case = case or secrets.token_hex(8)
    return psychosocial_pb2.RequestSupportRequest(
        case_id=case,
        risk=common_pb2.RISK_LEVEL_MEDIUM,
        region=region,
        needs=psychosocial_pb2.PsychosocialNeeds(support=list(support), languages=list(languages)),
        exclude_provider_ids=list(exclude),
        provider_id=provider_id,
        idempotency_key=idem or key(),
        consent_proof=consent_proof(case, "psychosocial"),
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
    referral = (await stub.RequestSupport(support_request(**kwargs))).referral
    await decide(stub, referral.referral_id)
    return str(referral.referral_id)


def session(referral_id, attendance=ATTENDED, held_at=None, idem=None):
    return psychosocial_pb2.RecordSessionRequest(
        referral_id=referral_id,
        held_at=ts(held_at or days_ago(1)),
        attendance=attendance,
        idempotency_key=key() if idem is None else idem,
    )
