"""Request builders shared by the legal aid tests."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from masar.v1 import common_pb2, legal_pb2, legal_pb2_grpc
from tests.services.harness import RunningSector
from tests.support_auth import consent_proof

FES = "fes-meknes"
RABAT = "rabat-sale-kenitra"
ORIENTAL = "oriental"

PROTECTION = legal_pb2.LEGAL_MATTER_PROTECTION_ORDER
COMPLAINT = legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT
FAMILY = legal_pb2.LEGAL_MATTER_FAMILY_LAW
RESIDENCY = legal_pb2.LEGAL_MATTER_RESIDENCY
TRAFFICKING = legal_pb2.LEGAL_MATTER_TRAFFICKING
LAWYER = legal_pb2.LEGAL_PROVIDER_KIND_LAWYER
ASSOCIATION = legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION
CARE_CELL = legal_pb2.LEGAL_PROVIDER_KIND_COURT_CARE_CELL
# The organisation of the network the tests' providers belong to (an opaque id).
ORG = "org-1e9a10000001"


def stub_of(running: RunningSector) -> legal_pb2_grpc.LegalAidServiceStub:
    return legal_pb2_grpc.LegalAidServiceStub(running.channel)


def key() -> str:
    return secrets.token_hex(8)


def case_id() -> str:
    return secrets.token_hex(8)


def raw(value: int) -> Any:
    """An enum number as the wire carries it, known to this build or not."""
    return value


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def ago(**delta: float) -> Timestamp:
    return ts(datetime.now(UTC) - timedelta(**delta))


def ahead(**delta: float) -> Timestamp:
    return ts(datetime.now(UTC) + timedelta(**delta))


def provider_request(
    *,
    region: str = FES,
    languages: Sequence[str] = ("ary", "fr"),
    matters: Sequence[Any] = (PROTECTION, COMPLAINT, FAMILY),
    kind: Any = ASSOCIATION,
    name: str = "Association Amane",
    idem: str | None = None,
    organisation: str = ORG,
) -> legal_pb2.CreateLegalProviderRequest:
    return legal_pb2.CreateLegalProviderRequest(
        kind=kind,
        name=name,
        region=region,
        languages=list(languages),
        matters=list(matters),
        idempotency_key=idem or key(),
        organisation_id=organisation,
    )


async def create_provider(stub, **kwargs) -> legal_pb2.LegalProvider:
    reply = await stub.CreateProvider(provider_request(**kwargs))
    return reply.provider


def aid_request(
    *,
    region: str = FES,
    matters: Sequence[Any] = (PROTECTION,),
    languages: Sequence[str] = ("ary",),
    exclude: Sequence[str] = (),
    provider_id: str = "",
    idem: str | None = None,
    case: str | None = None,
    risk: Any = common_pb2.RISK_LEVEL_HIGH,
) -> legal_pb2.RequestLegalAidRequest:
    case = case or case_id()
    return legal_pb2.RequestLegalAidRequest(
        case_id=case,
        region=region,
        risk=risk,
        needs=legal_pb2.LegalNeeds(matters=list(matters), languages=list(languages)),
        exclude_provider_ids=list(exclude),
        provider_id=provider_id,
        idempotency_key=idem or key(),
        consent_proof=consent_proof(case, "legal"),
    )


async def decide(stub, referral_id: str, *, accept: bool = True, reason: Any = 0, idem=None):
    return await stub.DecideReferral(
        common_pb2.DecideReferralRequest(
            referral_id=referral_id,
            decision=common_pb2.DECISION_ACCEPT if accept else common_pb2.DECISION_DECLINE,
            decline_reason=reason,
            idempotency_key=idem or key(),
        )
    )


async def first_meeting(stub, referral_id: str, *, idem=None):
    return await stub.RecordFirstMeeting(
        legal_pb2.RecordFirstMeetingRequest(
            referral_id=referral_id, met_at=ago(hours=1), idempotency_key=idem or key()
        )
    )
