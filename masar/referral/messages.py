"""The handshake at the gRPC edge: masar.v1 messages <-> the kit's domain
values. Sector servicers translate with these and nothing else crosses:
protobuf stays here and in the servicers.

- the shared shapes of common.proto: `referral_to_pb`, `delivery_to_pb`,
  `decision_from_pb`, `filter_from_pb`, `closing_status_from_pb`, and the
  responses `decided_to_pb`, `page_to_pb`, `purged_to_pb`;
- list RPCs: `page_size_from_pb`, and page tokens from `masar.platform.paging`;
- a sector's request RPC: `draft_from_pb` (or `parse_draft`) validates the
  fields every one carries;
- enums and times: `risk_to_pb`/`risk_from_pb`, `status_*`, `decline_reason_*`,
  `code_from_pb`/`code_to_pb` (a sector enum as its lowercase code),
  `timestamp_pb`/`from_timestamp_pb`.

Errors name the field (with `prefix` where a request nests it), never the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from masar.contract import DeclineReason, PurgeResult, ReferralStatus, Risk, Sector
from masar.platform.clock import as_utc
from masar.platform.errors import InvalidArgument
from masar.platform.outbox import DeliveryOutcome
from masar.platform.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_page_token
from masar.platform.validation import (
    check_provider_id,
    require_case_id,
    require_idempotency_key,
    require_organisation_id,
    require_region,
)
from masar.referral._domain import (
    CLOSING_STATUSES,
    ReferralDraft,
    ReferralFilter,
    ReferralPage,
    ReferralRecord,
    StaffActionResult,
    StaffDecision,
)
from masar.v1 import common_pb2

N = TypeVar("N")

# --- times and enums -------------------------------------------------------------------


def timestamp_pb(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(as_utc(value))
    return ts


def from_timestamp_pb(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def code_from_pb(enum_type: Any, value: int, *, prefix: str, field: str) -> str:
    """A sector enum value (e.g. EXIT_REASON_TRANSFERRED) as its lowercase code
    ("transferred"); UNSPECIFIED or unknown numbers are INVALID_ARGUMENT."""
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name: str = enum_type.Name(value)
    except ValueError:
        raise InvalidArgument(field, "is not a known value") from None
    return name.removeprefix(prefix).lower()


def code_to_pb(enum_type: Any, code: str | None, *, prefix: str) -> Any:
    """The inverse of `code_from_pb`; None is the UNSPECIFIED value (0)."""
    if code is None:
        return 0
    return enum_type.Value(f"{prefix}{code.upper()}")


# The contract's sectors and masar.v1.Sector: the health sector is the
# proto's SECTOR_MEDICAL (the medical need at intake); the others by name.
SECTOR_PB: dict[Sector, common_pb2.Sector.ValueType] = {
    sector: common_pb2.Sector.Value(
        "SECTOR_MEDICAL" if sector is Sector.HEALTH else f"SECTOR_{sector.name}"
    )
    for sector in Sector
}
SECTOR_IN: dict[int, Sector] = {int(value): sector for sector, value in SECTOR_PB.items()}


def sector_to_pb(sector: Sector) -> common_pb2.Sector.ValueType:
    return SECTOR_PB[sector]


def sector_from_pb(value: int, field: str = "sector") -> Sector:
    """A masar.v1.Sector as the contract's Sector; INVALID_ARGUMENT for
    UNSPECIFIED or a number this build does not know."""
    if value == 0:
        raise InvalidArgument(field, "is required")
    sector = SECTOR_IN.get(value)
    if sector is None:
        raise InvalidArgument(field, "is not a known sector")
    return sector


def status_to_pb(status: ReferralStatus) -> common_pb2.ReferralStatus.ValueType:
    return common_pb2.ReferralStatus.Value(f"REFERRAL_STATUS_{status.name}")


def status_from_pb(value: int, field: str = "status") -> ReferralStatus | None:
    """None for UNSPECIFIED; INVALID_ARGUMENT for a number this build does not know."""
    if value == 0:
        return None
    try:
        name = common_pb2.ReferralStatus.Name(common_pb2.ReferralStatus.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known referral status") from None
    return ReferralStatus(name.removeprefix("REFERRAL_STATUS_"))


def risk_to_pb(risk: Risk) -> common_pb2.RiskLevel.ValueType:
    return common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.name}")


def risk_from_pb(value: int, field: str = "risk") -> Risk:
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name = common_pb2.RiskLevel.Name(common_pb2.RiskLevel.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known risk level") from None
    return Risk(name.removeprefix("RISK_LEVEL_").lower())


def decline_reason_to_pb(reason: DeclineReason | None) -> common_pb2.DeclineReason.ValueType:
    if reason is None:
        return common_pb2.DECLINE_REASON_UNSPECIFIED
    return common_pb2.DeclineReason.Value(f"DECLINE_REASON_{reason.name}")


def decline_reason_from_pb(value: int, field: str = "decline_reason") -> DeclineReason | None:
    if value == 0:
        return None
    try:
        name = common_pb2.DeclineReason.Name(common_pb2.DeclineReason.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known decline reason") from None
    return DeclineReason(name.removeprefix("DECLINE_REASON_"))


def delivery_to_pb(outcome: DeliveryOutcome) -> common_pb2.DeliveryState.ValueType:
    if outcome is DeliveryOutcome.DELIVERED:
        return common_pb2.DELIVERY_STATE_DELIVERED
    if outcome is DeliveryOutcome.QUEUED:
        return common_pb2.DELIVERY_STATE_QUEUED
    return common_pb2.DELIVERY_STATE_UNSPECIFIED


# --- the referral ---------------------------------------------------------------------------


def referral_to_pb(record: ReferralRecord) -> common_pb2.Referral:
    """A ReferralRecord as masar.v1.Referral."""
    message = common_pb2.Referral(
        referral_id=record.referral_id,
        case_id=record.case_id,
        sector=sector_to_pb(record.sector),
        provider_id=record.provider_id,
        status=status_to_pb(record.status),
        risk=risk_to_pb(record.risk),
        region=record.region,
        decline_reason=decline_reason_to_pb(record.decline_reason),
        reminders=record.reminders,
        organisation_id=record.organisation_id or "",
        created_at=timestamp_pb(record.created_at),
        updated_at=timestamp_pb(record.updated_at),
    )
    if record.decided_at is not None:
        message.decided_at.CopyFrom(timestamp_pb(record.decided_at))
    return message


def referral_from_pb(message: common_pb2.Referral) -> ReferralRecord:
    """masar.v1.Referral as a ReferralRecord (clients and activities)."""
    return ReferralRecord(
        referral_id=message.referral_id,
        case_id=message.case_id,
        sector=sector_from_pb(message.sector),
        provider_id=message.provider_id,
        status=status_from_pb(message.status) or ReferralStatus.PENDING,
        risk=risk_from_pb(message.risk),
        region=message.region,
        created_at=from_timestamp_pb(message.created_at),
        updated_at=from_timestamp_pb(message.updated_at),
        decided_at=from_timestamp_pb(message.decided_at)
        if message.HasField("decided_at")
        else None,
        decline_reason=decline_reason_from_pb(message.decline_reason),
        reminders=message.reminders,
        organisation_id=message.organisation_id or None,
    )


def parse_draft(
    *,
    case_id: str,
    region: str,
    risk: int,
    idempotency_key: str,
    needs: N,
    exclude_provider_ids: Iterable[str] = (),
    provider_id: str = "",
    prefix: str = "",
) -> ReferralDraft[N]:
    """Validate the fields every sector's request RPC carries; `prefix` is put
    before field names in errors (e.g. "request.")."""
    excluded = frozenset(exclude_provider_ids)
    for value in excluded:
        check_provider_id(value, f"{prefix}exclude_provider_ids")
    return ReferralDraft(
        case_id=require_case_id(case_id, f"{prefix}case_id"),
        region=require_region(region, f"{prefix}region"),
        risk=risk_from_pb(risk, f"{prefix}risk"),
        idempotency_key=require_idempotency_key(idempotency_key, f"{prefix}idempotency_key"),
        needs=needs,
        exclude_provider_ids=excluded,
        provider_id=check_provider_id(provider_id, f"{prefix}provider_id") if provider_id else None,
    )


class ReferralRequestMessage(Protocol):
    """The fields every sector's request RPC carries (RequestPlacementRequest,
    RequestLegalAidRequest, RequestEnrolmentRequest), besides its needs."""

    @property
    def case_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def risk(self) -> int: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def exclude_provider_ids(self) -> Iterable[str]: ...
    @property
    def provider_id(self) -> str: ...


def draft_from_pb(request: ReferralRequestMessage, needs: N) -> ReferralDraft[N]:
    """A sector's request RPC as a draft, with the `needs` the sector read from it."""
    return parse_draft(
        case_id=request.case_id,
        region=request.region,
        risk=request.risk,
        idempotency_key=request.idempotency_key,
        needs=needs,
        exclude_provider_ids=request.exclude_provider_ids,
        provider_id=request.provider_id,
    )


# --- the shared RPCs of common.proto ----------------------------------------------------------


def decision_from_pb(request: common_pb2.DecideReferralRequest) -> StaffDecision:
    key = require_idempotency_key(request.idempotency_key)
    if request.decision == common_pb2.DECISION_ACCEPT:
        if request.decline_reason:
            raise InvalidArgument("decline_reason", "must be unset to accept")
        return StaffDecision(accept=True, decline_reason=None, idempotency_key=key)
    if request.decision == common_pb2.DECISION_DECLINE:
        reason = decline_reason_from_pb(request.decline_reason)
        if reason is None:
            raise InvalidArgument("decline_reason", "is required to decline")
        return StaffDecision(accept=False, decline_reason=reason, idempotency_key=key)
    raise InvalidArgument("decision", "must be DECISION_ACCEPT or DECISION_DECLINE")


def decided_to_pb(result: StaffActionResult) -> common_pb2.DecideReferralResponse:
    return common_pb2.DecideReferralResponse(
        referral=referral_to_pb(result.referral), delivery=delivery_to_pb(result.delivery)
    )


def page_size_from_pb(value: int) -> int:
    """A list request's page_size: 0 is the default size."""
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def filter_from_pb(request: common_pb2.ListReferralsRequest) -> ReferralFilter:
    """The listing asked for (the service narrows it to what the caller may see)."""
    page_size = page_size_from_pb(request.page_size)
    filters = ReferralFilter(
        provider_id=check_provider_id(request.provider_id) if request.provider_id else None,
        organisation_id=require_organisation_id(request.organisation_id)
        if request.organisation_id
        else None,
        region=require_region(request.region) if request.region else None,
        status=status_from_pb(request.status),
        case_id=require_case_id(request.case_id) if request.case_id else None,
        page_size=page_size,
        page_token=request.page_token or None,
    )
    if filters.page_token:
        decode_page_token(filters.page_token)
    return filters


def page_to_pb(page: ReferralPage) -> common_pb2.ListReferralsResponse:
    return common_pb2.ListReferralsResponse(
        referrals=[referral_to_pb(r) for r in page.referrals],
        next_page_token=page.next_page_token or "",
    )


def closing_status_from_pb(value: int, field: str = "status") -> ReferralStatus:
    status = status_from_pb(value, field)
    if status is None or status not in CLOSING_STATUSES:
        raise InvalidArgument(field, "must be REROUTED, EXPIRED or WITHDRAWN")
    return status


def purged_to_pb(result: PurgeResult) -> common_pb2.PurgeCaseResponse:
    return common_pb2.PurgeCaseResponse(
        referrals_withdrawn=result.referrals_withdrawn, records_purged=result.records_purged
    )
