"""The handshake's values: a referral as the sector sees it, a request for a
new one, the filters of a listing, the result of a staff action, and the
statuses each step moves between. No SQL, no protobuf."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from masar.contract import DeclineReason, Milestone, ReferralStatus, Risk, Sector
from masar.platform.errors import ResourceExhausted
from masar.platform.outbox import DeliveryOutcome
from masar.platform.paging import DEFAULT_PAGE_SIZE

N = TypeVar("N")  # the sector's needs (contract.ShelterNeeds, legal AidNeeds, ...)

OPEN_STATUSES = frozenset(
    {ReferralStatus.PENDING, ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE}
)
CLOSING_STATUSES = frozenset(
    {ReferralStatus.REROUTED, ReferralStatus.EXPIRED, ReferralStatus.WITHDRAWN}
)
# Which status a milestone leaves, by default, and which it enters.
MILESTONE_FROM: dict[Milestone, frozenset[ReferralStatus]] = {
    Milestone.STARTED: frozenset({ReferralStatus.ACCEPTED}),
    Milestone.COMPLETED: frozenset({ReferralStatus.IN_SERVICE}),
}
MILESTONE_TO: dict[Milestone, ReferralStatus] = {
    Milestone.STARTED: ReferralStatus.IN_SERVICE,
    Milestone.COMPLETED: ReferralStatus.COMPLETED,
}


class NoEligibleProvider(ResourceExhausted):
    """No provider can take this referral: none eligible or with capacity, or
    the provider a coordinator named is unknown or cannot take it (the message
    then starts with "provider_id: " and says why)."""

    def __init__(self, message: str = "no eligible provider with free capacity") -> None:
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class ReferralRecord:
    """A referral as the sector sees it: ids, status and codes, nothing personal."""

    referral_id: str
    case_id: str
    sector: Sector
    provider_id: str
    status: ReferralStatus
    risk: Risk
    region: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None = None
    decline_reason: DeclineReason | None = None
    reminders: int = 0
    # The organisation whose staff act on it; None when its provider named none.
    organisation_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReferralDraft(Generic[N]):
    """A validated request for a new referral."""

    case_id: str
    region: str
    risk: Risk
    idempotency_key: str
    needs: N
    exclude_provider_ids: frozenset[str] = frozenset()
    # Set when a coordinator reassigns the referral to a named provider.
    provider_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class StaffDecision:
    """A provider's answer to a PENDING referral."""

    accept: bool
    decline_reason: DeclineReason | None
    idempotency_key: str


@dataclass(frozen=True, kw_only=True)
class ReferralFilter:
    provider_id: str | None = None
    organisation_id: str | None = None
    status: ReferralStatus | None = None
    case_id: str | None = None
    region: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None


@dataclass(frozen=True)
class ReferralPage:
    referrals: list[ReferralRecord]
    next_page_token: str | None


@dataclass(frozen=True)
class StaffActionResult:
    """A decision or milestone recorded, and whether the journey has it yet."""

    referral: ReferralRecord
    delivery: DeliveryOutcome  # DELIVERED or QUEUED


def stable_event_id(referral_id: str, kind: str, idempotency_key: str) -> str:
    """The journey deduplicates on this: same referral, action and key -> same id."""
    digest = hashlib.sha256(f"{kind}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return f"{referral_id}-{kind[:1]}{digest}"
