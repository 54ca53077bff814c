"""Notifications' rules, pure: who is told what, what an event does to the
recipients' open items (the daily digest's source), how deliveries back off,
and when a notification that reached nobody is escalated.

No SQLAlchemy, gRPC or Temporal here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from masar.contract import REGIONS
from masar.contract.notify import NotifyEvent, NotifyKind
from masar.platform.errors import InvalidArgument
from services.network.domain import AccountRole

# Daily digests are sent at a local hour of Morocco's time.
DIGEST_ZONE = ZoneInfo("Africa/Casablanca")
DEFAULT_DIGEST_HOUR = 7

# The sectors' staff roles (masar.contract.Sector values and the later ones).
SECTOR_ROLES: dict[str, AccountRole] = {
    "shelter": AccountRole.SHELTER_STAFF,
    "legal": AccountRole.LEGAL_AID,
    "employment": AccountRole.EMPLOYMENT_OFFICER,
    "health": AccountRole.HEALTH_STAFF,
    "psychosocial": AccountRole.PSYCHOSOCIAL_STAFF,
}
HOLDERS = frozenset({AccountRole.INTAKE_OFFICER, AccountRole.SUPERVISOR})

# Sent by the network itself, never by a journey.
NETWORK_KINDS = frozenset({NotifyKind.UNDELIVERED, NotifyKind.DIGEST})
# Tell nobody: they only change the open items.
SILENT_KINDS = frozenset({NotifyKind.RESOLVED})
# Open (or move the deadline of) the recipients' item for the event's subject.
# A breach (BREACH) opens none: it has no deadline of its own, and its subject
# is the legal aid referral, whose item it must not move.
OPENING_KINDS = frozenset(
    {
        NotifyKind.NEW_REFERRAL,
        NotifyKind.REMINDER,
        NotifyKind.ESCALATION,
        NotifyKind.REROUTED,
        NotifyKind.REGIONAL,
        NotifyKind.CLINICAL_WINDOW,
        NotifyKind.TRANSFER_REQUESTED,
        NotifyKind.CLOSURE_REQUESTED,
        NotifyKind.UNDELIVERED,
    }
)
# Close everyone's item for the event's subject (the referral is decided or
# gone, the transfer answered, ...).
RESOLVING_KINDS = frozenset(
    {
        NotifyKind.REFERRAL_DECIDED,
        NotifyKind.EXPIRED,
        NotifyKind.TRANSFER_ANSWERED,
        NotifyKind.RESOLVED,
    }
)

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]{0,179}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ORG = re.compile(r"org-[0-9a-f]{12}")


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENDING = "sending"  # claimed by a dispatcher until its lease ends
    SENT = "sent"
    FAILED = "failed"  # given up (a permanent refusal, or too many attempts)


class ReachState(StrEnum):
    PENDING = "pending"  # not known to have reached anyone yet
    REACHED = "reached"  # a channel delivered it, or a recipient acknowledged it
    UNDELIVERED = "undelivered"  # nobody to tell, or nothing reached anyone in time
    SILENT = "silent"  # nobody was to be told (RESOLVED, ...)


@dataclass(frozen=True)
class Audience:
    """Active accounts of these roles: of one organisation, or of a region."""

    roles: frozenset[AccountRole]
    organisation_id: str = ""
    region: str = ""


def coordinators(region: str) -> Audience:
    return Audience(frozenset({AccountRole.COORDINATOR}), region=region)


def audience(event: NotifyEvent) -> list[Audience]:
    """Who is told of `event` (issue 13, "Who is told what")."""
    kind = event.kind
    region = coordinators(event.region)
    holder = event.holding_organisation_id
    if kind in (NotifyKind.NEW_REFERRAL, NotifyKind.REMINDER):
        role = SECTOR_ROLES.get(event.sector)
        if role is None or not event.provider_organisation_id:
            return []
        return [Audience(frozenset({role}), organisation_id=event.provider_organisation_id)]
    if kind in (
        NotifyKind.ESCALATION,
        NotifyKind.REROUTED,
        NotifyKind.CLOSURE_REQUESTED,
        NotifyKind.UNDELIVERED,
    ):
        return [region]
    if kind in (NotifyKind.REGIONAL, NotifyKind.EXPIRED):
        return [region, *_of(holder, AccountRole.SUPERVISOR)]
    if kind is NotifyKind.CLINICAL_WINDOW:
        return [region, *_of(holder, AccountRole.INTAKE_OFFICER)]
    if kind is NotifyKind.BREACH:
        # A protection order was breached: the risk went up (issue 15).
        return [region, *_of(holder, *HOLDERS)]
    if kind is NotifyKind.REFERRAL_DECIDED:
        return _of(holder, *HOLDERS)
    if kind in (NotifyKind.TRANSFER_REQUESTED, NotifyKind.TRANSFER_ANSWERED):
        receiving = event.receiving_organisation_id
        extra = _of(receiving, *HOLDERS) if receiving and receiving != holder else []
        return [*_of(holder, *HOLDERS), *extra]
    return []


def _of(organisation_id: str, *roles: AccountRole) -> list[Audience]:
    if not organisation_id:
        return []
    return [Audience(frozenset(roles), organisation_id=organisation_id)]


def item_key(event: NotifyEvent) -> str:
    """The subject an event is about, for the open items: its referral, its
    transfer, or the case's closure / clinical windows."""
    if event.referral_id:
        return f"referral:{event.referral_id}"
    if event.transfer_id:
        return f"transfer:{event.transfer_id}"
    if event.kind is NotifyKind.CLINICAL_WINDOW:
        return "clinical"
    if event.kind is NotifyKind.CLOSURE_REQUESTED:
        return "closure"
    return ""


def check_event(event: NotifyEvent) -> NotifyEvent:
    """Refuse a malformed event (InvalidArgument naming the field)."""
    try:
        kind = NotifyKind(event.kind)
    except ValueError:
        raise InvalidArgument("kind", "is not a notification kind") from None
    if kind in NETWORK_KINDS:
        raise InvalidArgument("kind", "is sent by the network service itself")
    if not _KEY.fullmatch(event.idempotency_key or ""):
        raise InvalidArgument("idempotency_key", "must be 1 to 180 letters, digits or :._/-")
    if not _ID.fullmatch(event.case_id or ""):
        raise InvalidArgument("case_id", "is not a case id")
    if event.region not in REGIONS:
        raise InvalidArgument("region", "is not a region")
    for name in ("referral_id", "transfer_id"):
        value = getattr(event, name)
        if value and not _ID.fullmatch(value):
            raise InvalidArgument(name, "is not an id")
    for name in (
        "provider_organisation_id",
        "holding_organisation_id",
        "receiving_organisation_id",
    ):
        value = getattr(event, name)
        if value and not _ORG.fullmatch(value):
            raise InvalidArgument(name, "is not an organisation id")
    if event.sector and event.sector not in SECTOR_ROLES:
        raise InvalidArgument("sector", "is not a sector")
    if not 0 <= event.rung <= 9:
        raise InvalidArgument("rung", "must be between 0 and 9")
    if kind in (NotifyKind.NEW_REFERRAL, NotifyKind.REMINDER) and not event.sector:
        raise InvalidArgument("sector", "is required for a referral's staff")
    if kind in (NotifyKind.REFERRAL_DECIDED, NotifyKind.EXPIRED) and not event.referral_id:
        raise InvalidArgument("referral_id", "is required for this kind")
    transfer_kinds = (NotifyKind.TRANSFER_REQUESTED, NotifyKind.TRANSFER_ANSWERED)
    if kind in transfer_kinds and not event.transfer_id:
        raise InvalidArgument("transfer_id", "is required for this kind")
    event.kind = kind
    return event


# --- deliveries ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """Retries of an external channel: attempt n waits base * 2^(n-1) (at
    most `cap`) after a temporary failure; after `max_attempts` the delivery
    is given up. A claimed delivery is left to another dispatcher once its
    lease ends (the process died mid-send: it is sent again, with the same
    Message-ID / delivery id). A notification that no channel delivered and
    nobody acknowledged within `undelivered_after` is escalated."""

    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(minutes=10)
    max_attempts: int = 30
    lease: timedelta = timedelta(seconds=60)
    undelivered_after: timedelta = timedelta(minutes=15)
    poll: timedelta = timedelta(seconds=2)
    batch: int = 20

    def backoff(self, attempts: int) -> timedelta:
        return min(self.base * (1 << min(max(attempts - 1, 0), 30)), self.cap)


# --- the daily digest ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OpenItem:
    case_id: str
    item_key: str
    kind: str
    referral_id: str
    sector: str
    deadline: datetime | None


@dataclass(frozen=True, kw_only=True)
class DigestLine:
    case_id: str
    referral_id: str
    sector: str
    kind: str
    deadline: datetime
    overdue: bool


def local_day(now: datetime) -> date:
    return now.astimezone(DIGEST_ZONE).date()


def digest_due(*, now: datetime, hour: int, last_sent_on: str | None) -> bool:
    """Once per local day, at or after the account's local hour."""
    local = now.astimezone(DIGEST_ZONE)
    return local.hour >= hour and last_sent_on != local.date().isoformat()


def digest_lines(items: list[OpenItem], now: datetime) -> list[DigestLine]:
    """What is overdue, then what is due later today (local day), by deadline."""
    end_of_day = datetime.combine(local_day(now) + timedelta(days=1), time(0), DIGEST_ZONE)
    lines = [
        DigestLine(
            case_id=i.case_id,
            referral_id=i.referral_id,
            sector=i.sector,
            kind=i.kind,
            deadline=i.deadline,
            overdue=i.deadline <= now,
        )
        for i in items
        if i.deadline is not None and i.deadline < end_of_day
    ]
    return sorted(lines, key=lambda line: (not line.overdue, line.deadline, line.case_id))


def check_digest_hour(hour: int) -> int:
    if not 0 <= hour <= 23:
        raise InvalidArgument("digest_hour", "must be between 0 and 23")
    return hour


def check_webhook_url(url: str, field: str = "webhook_url") -> str:
    url = url.strip()
    if url and (not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url) or len(url) > 500):
        raise InvalidArgument(field, "must be an http:// or https:// URL")
    return url
