"""Protobuf <-> domain conversions intake's servicers share: enum tables
(matched by name, so the two sides cannot drift apart unnoticed), required
fields and timestamps, and the case summary. Errors name the field, never a value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from masar.contract import (
    ClinicalItem,
    Need,
    ReferralStatus,
    Risk,
    Sector,
    TransferDeclineReason,
    TransferReason,
    TransferStatus,
    ViolenceType,
    journey_workflow_id,
)
from masar.platform.errors import InvalidArgument
from masar.platform.outbox import DeliveryOutcome
from masar.referral.messages import SECTOR_PB
from masar.v1 import common_pb2, intake_pb2, legal_pb2
from services.intake import domain as d
from services.intake.grants import GrantReason

E = TypeVar("E", bound=Enum)


def _table(members: Iterable[E], wrapper: Any, prefix: str) -> dict[E, Any]:
    """Domain enum member -> protobuf enum number, by name (RAPE ->
    VIOLENCE_TYPE_RAPE); fails at import if the two drift apart."""
    return {m: wrapper.Value(f"{prefix}{m.name}") for m in members}


RISK = _table(Risk, common_pb2.RiskLevel, "RISK_LEVEL_")
REFERRAL_STATUS = _table(ReferralStatus, common_pb2.ReferralStatus, "REFERRAL_STATUS_")
NEED = _table(Need, common_pb2.Sector, "SECTOR_")
# The health sector is the proto's SECTOR_MEDICAL (masar.referral.messages).
SECTOR: dict[Sector, Any] = dict(SECTOR_PB)
VIOLENCE = _table(ViolenceType, intake_pb2.ViolenceType, "VIOLENCE_TYPE_")
CONTEXT = _table(d.IncidentContext, intake_pb2.IncidentContext, "INCIDENT_CONTEXT_")
MIGRANT = _table(d.MigrantStatus, intake_pb2.MigrantStatus, "MIGRANT_STATUS_")
ANSWER = _table(d.Answer, intake_pb2.RiskAnswer, "RISK_ANSWER_")
INDICATOR = _table(d.Indicator, intake_pb2.RiskIndicator, "RISK_INDICATOR_")
SCOPE = _table(d.ConsentScope, intake_pb2.ConsentScope, "CONSENT_SCOPE_")
CONSENT_STATE = _table(d.ConsentState, intake_pb2.ConsentState, "CONSENT_STATE_")
CASE_STATUS = _table(d.CaseStatus, intake_pb2.CaseStatus, "CASE_STATUS_")
JOURNEY = _table(d.JourneyState, intake_pb2.JourneyState, "JOURNEY_STATE_")
CLINICAL = _table(ClinicalItem, intake_pb2.ClinicalItem, "CLINICAL_ITEM_")
CLOSURE = _table(d.ClosureReason, intake_pb2.ClosureReason, "CLOSURE_REASON_")
CHANNEL = _table(d.FollowUpChannel, intake_pb2.FollowUpChannel, "FOLLOW_UP_CHANNEL_")
CHANGE_KIND = _table(d.ChangeKind, intake_pb2.CaseChangeKind, "CASE_CHANGE_KIND_")
MATTER = _table(d.LegalMatter, legal_pb2.LegalMatter, "LEGAL_MATTER_")
GRANT_REASON = _table(GrantReason, intake_pb2.EmergencyReason, "EMERGENCY_REASON_")
TRANSFER_REASON = _table(TransferReason, intake_pb2.TransferReason, "TRANSFER_REASON_")
TRANSFER_STATUS = _table(TransferStatus, intake_pb2.TransferStatus, "TRANSFER_STATUS_")
TRANSFER_DECLINE = _table(
    TransferDeclineReason, intake_pb2.TransferDeclineReason, "TRANSFER_DECLINE_REASON_"
)
DELIVERY: Mapping[DeliveryOutcome | None, Any] = {
    DeliveryOutcome.DELIVERED: common_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryOutcome.QUEUED: common_pb2.DELIVERY_STATE_QUEUED,
}


def _inverse(table: Mapping[E, Any]) -> dict[int, E]:
    return {int(v): k for k, v in table.items()}


RISK_IN = _inverse(RISK)
NEED_IN = _inverse(NEED)
SECTOR_IN = _inverse(SECTOR)
VIOLENCE_IN = _inverse(VIOLENCE)
CONTEXT_IN = _inverse(CONTEXT)
MIGRANT_IN = _inverse(MIGRANT)
ANSWER_IN = _inverse(ANSWER)
SCOPE_IN = _inverse(SCOPE)
CASE_STATUS_IN = _inverse(CASE_STATUS)
CLINICAL_IN = _inverse(CLINICAL)
CLOSURE_IN = _inverse(CLOSURE)
CHANNEL_IN = _inverse(CHANNEL)
MATTER_IN = _inverse(MATTER)
GRANT_REASON_IN = _inverse(GRANT_REASON)
TRANSFER_REASON_IN = _inverse(TRANSFER_REASON)
TRANSFER_STATUS_IN = _inverse(TRANSFER_STATUS)
TRANSFER_DECLINE_IN = _inverse(TRANSFER_DECLINE)


# --- protobuf -> domain ---------------------------------------------------------------


def enum_in(value: int, table: Mapping[int, E], field: str, *, missing: str = "is required") -> E:
    if value == 0:
        raise InvalidArgument(field, missing)
    member = table.get(value)
    if member is None:
        raise InvalidArgument(field, "is not an accepted value here")
    return member


def optional_enum_in(value: int, table: Mapping[int, E], field: str) -> E | None:
    return None if value == 0 else enum_in(value, table, field)


def enums_in(values: Sequence[int], table: Mapping[int, E], field: str) -> list[E]:
    return [enum_in(v, table, f"{field}[{i}]") for i, v in enumerate(values)]


def time_in(message: Message, name: str, field: str) -> datetime:
    if not message.HasField(name):
        raise InvalidArgument(field, "is required")
    ts: Timestamp = getattr(message, name)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is out of range") from None


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def num(table: Mapping[E, Any], member: E | None) -> Any:
    """The protobuf number of an optional member (0, UNSPECIFIED, for none)."""
    return 0 if member is None else table[member]


def summary_pb(s: d.CaseSummary) -> intake_pb2.CaseSummary:
    return intake_pb2.CaseSummary(
        case_id=s.case_id,
        region=s.region,
        risk=RISK[s.risk],
        status=CASE_STATUS[s.status],
        journey=JOURNEY[s.journey],
        created_at=ts(s.created_at),
        updated_at=ts(s.updated_at),
        reopen_count=s.reopen_count,
        workflow_id=journey_workflow_id(s.case_id),
        source_organisation_id=s.source_organisation_id or "",
        holding_organisation_id=s.holding_organisation_id or "",
    )


def escalation_pb(e: d.Escalation) -> intake_pb2.Escalation:
    return intake_pb2.Escalation(
        escalation_id=e.escalation_id,
        case_id=e.case_id,
        region=e.region,
        level=e.level,
        wait=e.wait,
        due_at=ts(e.due_at),
        referral_id=e.referral_id or "",
        recorded_at=ts(e.recorded_at),
        transfer_id=e.transfer_id or "",
        organisation_id=e.organisation_id or "",
    )
