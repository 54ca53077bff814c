"""Legal aid: providers, matters, protection orders, hearings and their rules.

Plain dataclasses and functions: no protobuf, no SQL. Errors name the field,
never the value the caller sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from masar.contract import ITT_HEAVIER_ABOVE, MAX_ITT_DAYS, ReferralStatus
from masar.platform.clock import utcnow
from masar.platform.errors import FailedPrecondition, InvalidArgument
from masar.referral import ReferralRecord

# Events that already happened may not be dated in the future, beyond the
# clock skew between a provider's device and the server.
CLOCK_SKEW = timedelta(minutes=5)
MAX_NAME_LENGTH = 200
MAX_NOTE_LENGTH = 2000
MAX_LANGUAGES = 10
# A lowercase BCP 47-style tag: "ary" (Darija), "zgh" (Tamazight), "ar", "fr", "en-gb".
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")

# Where legal aid adds to a file: once the provider has accepted, until the
# referral is completed or closed.
WORKING = frozenset({ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE})
# A ban pronounced with a conviction (art. 88-1) outlives the closed matter:
# the breaches of an existing order are still recorded on a completed referral.
ORDER_FOLLOW_UP = WORKING | {ReferralStatus.COMPLETED}


class ProviderKind(StrEnum):
    LAWYER = "lawyer"
    LEGAL_AID_ASSOCIATION = "legal_aid_association"
    COURT_CARE_CELL = "court_care_cell"  # Law 103-13 care cell at a court


class LegalMatter(StrEnum):
    """The matters of the contract's LegalNeeds.matters."""

    PROTECTION_ORDER = "protection_order"
    CRIMINAL_COMPLAINT = "criminal_complaint"
    FAMILY_LAW = "family_law"
    RESIDENCY = "residency"
    TRAFFICKING = "trafficking"  # Law 27-14


class MatterStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class MatterOutcome(StrEnum):
    RELIEF_GRANTED = "RELIEF_GRANTED"
    RELIEF_DENIED = "RELIEF_DENIED"
    CONVICTION = "CONVICTION"
    ACQUITTAL = "ACQUITTAL"
    DISMISSED = "DISMISSED"
    SETTLED = "SETTLED"
    WITHDRAWN_BY_SURVIVOR = "WITHDRAWN_BY_SURVIVOR"
    TRANSFERRED = "TRANSFERRED"
    NO_CONTACT = "NO_CONTACT"


class ProtectionMeasure(StrEnum):
    NO_CONTACT_DURING_PROSECUTION = "art_88_3"  # Penal Code art. 88-3
    CONTACT_BAN_AFTER_CONVICTION = "art_88_1"  # Penal Code art. 88-1


class ProtectionOrderStatus(StrEnum):
    REQUESTED = "requested"
    GRANTED = "granted"
    DENIED = "denied"
    BREACHED = "breached"  # an offence in itself (Penal Code art. 321-1)


class CourtLevel(StrEnum):
    FIRST_INSTANCE = "first_instance"
    FAMILY_SECTION = "family_section"
    APPEAL = "appeal"
    CASSATION = "cassation"
    ADMINISTRATIVE = "administrative"


class HearingKind(StrEnum):
    INVESTIGATION = "investigation"
    TRIAL = "trial"
    CONCILIATION = "conciliation"
    JUDGMENT = "judgment"
    APPEAL = "appeal"


class HearingStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    ADJOURNED = "adjourned"
    CANCELLED = "cancelled"


# --- value checks ---------------------------------------------------------------


def check_language(value: str, field_name: str) -> str:
    tag = value.strip().lower()
    if not _LANGUAGE_TAG.match(tag):
        raise InvalidArgument(field_name, "must be a language tag such as 'ary'")
    return tag


def check_languages(
    values: Iterable[str], field_name: str = "languages", *, required: bool = False
) -> list[str]:
    """Lowercase, deduplicated language tags, in the order given."""
    tags: list[str] = []
    for index, raw in enumerate(values):
        tag = check_language(raw, f"{field_name}[{index}]")
        if tag not in tags:
            tags.append(tag)
    if required and not tags:
        raise InvalidArgument(field_name, "needs at least one language")
    if len(tags) > MAX_LANGUAGES:
        raise InvalidArgument(field_name, f"must list at most {MAX_LANGUAGES} languages")
    return tags


def check_matters(values: Sequence[LegalMatter], field_name: str = "matters") -> list[LegalMatter]:
    if not values:
        raise InvalidArgument(field_name, "needs at least one matter")
    unique: list[LegalMatter] = []
    for matter in values:
        if matter not in unique:
            unique.append(matter)
    return unique


def check_past(value: datetime, field_name: str, *, now: datetime | None = None) -> datetime:
    """An event that already happened: not in the future."""
    if value > (now or utcnow()) + CLOCK_SKEW:
        raise InvalidArgument(field_name, "must not be in the future")
    return value


# --- providers -----------------------------------------------------------------


@dataclass
class Provider:
    provider_id: str
    kind: ProviderKind
    name: str
    region: str
    languages: list[str]
    matters: list[LegalMatter]
    created_at: datetime
    open_referrals: int = 0
    # None: registered before providers named their organisation.
    organisation_id: str | None = None

    def takes(self, matters: Iterable[LegalMatter]) -> bool:
        return set(matters) <= set(self.matters)

    def speaks_any(self, languages: Iterable[str]) -> bool:
        wanted = set(languages)
        return not wanted or bool(wanted & set(self.languages))


@dataclass(frozen=True)
class NewProvider:
    """A validated provider registration."""

    kind: ProviderKind
    name: str
    region: str
    languages: tuple[str, ...]
    matters: tuple[LegalMatter, ...]
    organisation_id: str  # the organisation of the network it belongs to


@dataclass(frozen=True)
class AidNeeds:
    """All legal aid learns of the survivor (the contract's LegalNeeds):
    the matters she wants help with and the languages she speaks."""

    matters: tuple[LegalMatter, ...]
    languages: tuple[str, ...] = ()


def choose_provider(
    candidates: Iterable[Provider],
    *,
    region: str,
    matters: Sequence[LegalMatter],
    languages: Sequence[str],
    exclude: Iterable[str] = (),
) -> Provider | None:
    """The provider to refer her to, or None when nobody is eligible.

    Eligible: not already tried, takes every requested matter, and speaks one
    of her languages (when she named any). Among those: her own region first,
    then the provider with the fewest open referrals, then the oldest.
    """
    excluded = set(exclude)
    eligible = [
        p
        for p in candidates
        if p.provider_id not in excluded and p.takes(matters) and p.speaks_any(languages)
    ]
    if not eligible:
        return None
    return min(
        eligible,
        key=lambda p: (p.region != region, p.open_referrals, p.created_at, p.provider_id),
    )


# --- the legal file --------------------------------------------------------------


@dataclass
class MatterRecord:
    matter: LegalMatter
    status: MatterStatus
    opened_at: datetime
    closed_at: datetime | None = None
    outcome: MatterOutcome | None = None


def close_matter(
    matters: Sequence[MatterRecord],
    matter: LegalMatter,
    *,
    outcome: MatterOutcome,
    closed_at: datetime,
) -> tuple[MatterRecord, bool]:
    """Close one open matter; returns it and whether no open matter remains."""
    record = next((m for m in matters if m.matter is matter), None)
    if record is None:
        raise InvalidArgument("matter", "is not one of the referral's matters")
    if record.status is MatterStatus.CLOSED:
        raise FailedPrecondition("the matter is already closed")
    if closed_at < record.opened_at - CLOCK_SKEW:
        raise InvalidArgument("closed_at", "must not be before the matter was opened")
    record.status = MatterStatus.CLOSED
    record.outcome = outcome
    record.closed_at = closed_at
    return record, all(m.status is MatterStatus.CLOSED for m in matters)


@dataclass
class ProtectionOrder:
    order_id: str
    referral_id: str
    measure: ProtectionMeasure
    status: ProtectionOrderStatus
    requested_at: datetime
    updated_at: datetime
    decided_at: datetime | None = None
    effective_until: datetime | None = None
    breached_at: datetime | None = None
    breaches: int = 0


_ORDER_TRANSITIONS: dict[ProtectionOrderStatus, frozenset[ProtectionOrderStatus]] = {
    ProtectionOrderStatus.REQUESTED: frozenset(
        {ProtectionOrderStatus.GRANTED, ProtectionOrderStatus.DENIED}
    ),
    ProtectionOrderStatus.GRANTED: frozenset({ProtectionOrderStatus.BREACHED}),
    ProtectionOrderStatus.DENIED: frozenset(),
    # Every further breach is recorded: each is a new offence (art. 321-1).
    ProtectionOrderStatus.BREACHED: frozenset({ProtectionOrderStatus.BREACHED}),
}


def open_protection_order(
    *,
    order_id: str,
    referral_id: str,
    measure: ProtectionMeasure,
    status: ProtectionOrderStatus,
    at: datetime,
    effective_until: datetime | None,
    now: datetime,
) -> ProtectionOrder:
    """A new order: requested, or granted when the court decided at once."""
    check_past(at, "at", now=now)
    if status not in (ProtectionOrderStatus.REQUESTED, ProtectionOrderStatus.GRANTED):
        raise InvalidArgument("status", "a new order must be REQUESTED or GRANTED")
    order = ProtectionOrder(
        order_id=order_id,
        referral_id=referral_id,
        measure=measure,
        status=ProtectionOrderStatus.REQUESTED,
        requested_at=at,
        updated_at=now,
    )
    if status is ProtectionOrderStatus.GRANTED:
        advance_protection_order(
            order, status=status, at=at, effective_until=effective_until, now=now
        )
    elif effective_until is not None:
        raise InvalidArgument("effective_until", "is only set when the order is GRANTED")
    return order


def advance_protection_order(
    order: ProtectionOrder,
    *,
    status: ProtectionOrderStatus,
    at: datetime,
    effective_until: datetime | None,
    now: datetime,
) -> ProtectionOrder:
    check_past(at, "at", now=now)
    if status not in _ORDER_TRANSITIONS[order.status]:
        raise FailedPrecondition("the protection order cannot move to this status from its own")
    if effective_until is not None and status is not ProtectionOrderStatus.GRANTED:
        raise InvalidArgument("effective_until", "is only set when the order is GRANTED")
    if status in (ProtectionOrderStatus.GRANTED, ProtectionOrderStatus.DENIED):
        if at < order.requested_at:
            raise InvalidArgument("at", "must not be before the order was requested")
        if effective_until is not None and effective_until <= at:
            raise InvalidArgument("effective_until", "must be after the decision")
        order.decided_at = at
        order.effective_until = effective_until
    else:  # BREACHED
        assert order.decided_at is not None
        if at < order.decided_at:
            raise InvalidArgument("at", "must not be before the order was granted")
        if order.effective_until is not None and at > order.effective_until:
            raise InvalidArgument("at", "must be while the order was in force")
        order.breached_at = at if order.breached_at is None else max(order.breached_at, at)
        order.breaches += 1
    order.status = status
    order.updated_at = now
    return order


@dataclass
class Hearing:
    hearing_id: str
    referral_id: str
    matter: LegalMatter
    court: CourtLevel
    kind: HearingKind
    status: HearingStatus
    scheduled_at: datetime
    updated_at: datetime
    note: str | None = None


_HEARING_TRANSITIONS: dict[HearingStatus, frozenset[HearingStatus]] = {
    HearingStatus.SCHEDULED: frozenset(
        {HearingStatus.HELD, HearingStatus.ADJOURNED, HearingStatus.CANCELLED}
    ),
    # An adjourned hearing has a new date and may be adjourned again.
    HearingStatus.ADJOURNED: frozenset(
        {HearingStatus.HELD, HearingStatus.ADJOURNED, HearingStatus.CANCELLED}
    ),
    HearingStatus.HELD: frozenset(),
    HearingStatus.CANCELLED: frozenset(),
}


def check_note(note: str) -> str | None:
    text = note.strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidArgument("note", f"must be at most {MAX_NOTE_LENGTH} characters")
    return text or None


def advance_hearing(
    hearing: Hearing,
    *,
    status: HearingStatus,
    scheduled_at: datetime | None,
    note: str | None,
    now: datetime,
) -> Hearing:
    if status not in _HEARING_TRANSITIONS[hearing.status]:
        raise FailedPrecondition("the hearing cannot move to this status from its own")
    if status is HearingStatus.ADJOURNED:
        if scheduled_at is None:
            raise InvalidArgument("scheduled_at", "is required: the new date of the hearing")
        if scheduled_at <= hearing.scheduled_at:
            raise InvalidArgument("scheduled_at", "must be after the adjourned date")
        hearing.scheduled_at = scheduled_at
    elif scheduled_at is not None:
        raise InvalidArgument("scheduled_at", "is only set for a new or adjourned hearing")
    if status is HearingStatus.HELD and hearing.scheduled_at > now + CLOCK_SKEW:
        raise FailedPrecondition("a hearing cannot be held before its date")
    hearing.status = status
    if note is not None:
        hearing.note = note
    hearing.updated_at = now
    return hearing


@dataclass(frozen=True)
class MedicalCertificate:
    """What legal aid may know of a medical certificate a hospital care unit
    issued: its date and ITT (total incapacity for work) in whole days."""

    issued_at: datetime
    itt_days: int

    @property
    def itt_over_20_days(self) -> bool:
        """The heavier qualification (Penal Code art. 401) beyond 20 days."""
        return self.itt_days > ITT_HEAVIER_ABOVE


def check_certificate(issued_at: datetime, itt_days: int, *, now: datetime) -> MedicalCertificate:
    if issued_at > now + timedelta(minutes=5):
        raise InvalidArgument("issued_at", "is in the future")
    if not 0 <= itt_days <= MAX_ITT_DAYS:
        raise InvalidArgument("itt_days", f"must be between 0 and {MAX_ITT_DAYS} whole days")
    return MedicalCertificate(issued_at=issued_at, itt_days=itt_days)


@dataclass
class LegalFile:
    """A referral with what legal aid holds around it."""

    referral: ReferralRecord
    languages: list[str] = field(default_factory=list)
    matters: list[MatterRecord] = field(default_factory=list)
    first_meeting_at: datetime | None = None
    protection_orders: list[ProtectionOrder] = field(default_factory=list)
    hearings: list[Hearing] = field(default_factory=list)
    certificate: MedicalCertificate | None = None
