"""Health rules: hospital care units, which unit fits a medical referral, and
what health staff may record of the care she received or declined.

No protobuf and no SQL here. A care unit has no capacity to reserve (a
hospital takes every referral it accepts); it fits when it offers every kind
of care the referral asks for and speaks one of her languages.

Clinical care is recorded with the time it happened (never in the future,
never before the incident): HIV PEP started or declined, emergency
contraception given or declined, the forensic examination done or declined,
the certificate with its ITT days, the follow-up visits. Codes and times
only: no clinical note is kept or sent. Care given is never later recorded
as declined; a declined item may later be given (she changed her mind).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from masar.contract import (
    CARE_SERVICES,
    MAX_ITT_DAYS,
    CareEvent,
    FollowUpVisit,
    HealthNeeds,
)
from masar.platform.errors import FailedPrecondition, InvalidArgument
from masar.referral import ReferralRecord

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
# A clock a little ahead of ours is not "the future".
CLOCK_SKEW = timedelta(minutes=5)


class ClinicalStep(StrEnum):
    """The care items recorded with an outcome (the contract's ClinicalItem values)."""

    PEP = "pep"
    EMERGENCY_CONTRACEPTION = "emergency_contraception"
    FORENSIC_EXAM = "forensic_exam"


class StepOutcome(StrEnum):
    """How a clinical step went (each step has its own words in the API)."""

    STARTED = "started"  # PEP
    GIVEN = "given"  # emergency contraception
    DONE = "done"  # forensic examination
    DECLINED = "declined"


# The outcomes each step takes, and the contract's event for each.
STEP_EVENTS: dict[ClinicalStep, dict[StepOutcome, CareEvent]] = {
    ClinicalStep.PEP: {
        StepOutcome.STARTED: CareEvent.PEP_STARTED,
        StepOutcome.DECLINED: CareEvent.PEP_DECLINED,
    },
    ClinicalStep.EMERGENCY_CONTRACEPTION: {
        StepOutcome.GIVEN: CareEvent.EMERGENCY_CONTRACEPTION_GIVEN,
        StepOutcome.DECLINED: CareEvent.EMERGENCY_CONTRACEPTION_DECLINED,
    },
    ClinicalStep.FORENSIC_EXAM: {
        StepOutcome.DONE: CareEvent.FORENSIC_EXAM_DONE,
        StepOutcome.DECLINED: CareEvent.FORENSIC_EXAM_DECLINED,
    },
}


class CareOutcome(StrEnum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    TRANSFERRED = "transferred"


# Milestone details sent to the journey when care ends (structured codes).
CARE_DETAILS: dict[CareOutcome, str] = {
    CareOutcome.COMPLETED: "care_completed",
    CareOutcome.STOPPED: "care_stopped",
    CareOutcome.TRANSFERRED: "care_transferred",
}


@dataclass(frozen=True, kw_only=True)
class CareUnitSpec:
    name: str
    region: str
    services: frozenset[str]
    languages: frozenset[str]
    organisation_id: str  # the organisation of the network (a hospital) it belongs to


@dataclass(frozen=True, kw_only=True)
class CareUnit:
    care_unit_id: str
    name: str
    region: str
    services: frozenset[str]
    languages: frozenset[str]
    created_at: datetime
    # None: registered without an organisation (its referrals reach no staff).
    organisation_id: str | None = None

    def fits(self, needs: HealthNeeds) -> bool:
        """Every kind of care she needs, and a language she speaks (any
        when either side named none)."""
        if not set(needs.care) <= self.services:
            return False
        return not (needs.languages and self.languages) or bool(
            self.languages & set(needs.languages)
        )


@dataclass(frozen=True)
class CareRecord:
    """A medical referral with the unit's own record of the care."""

    referral: ReferralRecord
    care: list[str]
    incident_at: datetime | None
    started_at: datetime | None
    steps: dict[ClinicalStep, tuple[StepOutcome, datetime]]
    certificate: tuple[datetime, int] | None  # (issued_at, itt_days)
    follow_up_visits: list[tuple[FollowUpVisit, datetime]]
    outcome: CareOutcome | None
    completed_at: datetime | None


def rank_units(
    units: Iterable[CareUnit], needs: HealthNeeds, *, region: str, exclude: Iterable[str]
) -> list[CareUnit]:
    """Units that fit, same region first, then by id (deterministic)."""
    excluded = set(exclude)
    fitting = [u for u in units if u.care_unit_id not in excluded and u.fits(needs)]
    return sorted(fitting, key=lambda u: (u.region != region, u.care_unit_id))


def check_languages(tags: Iterable[str], field: str) -> frozenset[str]:
    result = frozenset(tags)
    for tag in result:
        if not _LANGUAGE.match(tag):
            raise InvalidArgument(field, "must be lowercase language tags such as ary, ar, fr")
    return result


def check_care(codes: Iterable[str], field: str) -> list[str]:
    result: list[str] = []
    for code in codes:
        if code not in CARE_SERVICES:
            raise InvalidArgument(field, "is not a known kind of care")
        if code in result:
            raise InvalidArgument(field, "names a kind of care twice")
        result.append(code)
    return result


def check_needs(needs: HealthNeeds, prefix: str = "needs.") -> HealthNeeds:
    check_care(needs.care, f"{prefix}care")
    check_languages(needs.languages, f"{prefix}languages")
    return needs


def check_spec(spec: CareUnitSpec) -> CareUnitSpec:
    if not spec.services:
        raise InvalidArgument("services", "at least one is required")
    return spec


def check_time(
    at: datetime, field: str, *, now: datetime, incident_at: datetime | None
) -> datetime:
    """When care happened: not in the future, not before the incident."""
    if at > now + CLOCK_SKEW:
        raise InvalidArgument(field, "is in the future")
    if incident_at is not None and at < incident_at:
        raise InvalidArgument(field, "is before the incident")
    return at


def check_itt_days(days: int, field: str = "itt_days") -> int:
    if not 0 <= days <= MAX_ITT_DAYS:
        raise InvalidArgument(field, f"must be between 0 and {MAX_ITT_DAYS} whole days")
    return days


def check_step_change(step: ClinicalStep, before: StepOutcome | None, after: StepOutcome) -> None:
    """Care given is never recorded as declined afterwards."""
    if after not in STEP_EVENTS[step]:
        raise InvalidArgument("outcome", f"is not an outcome of {step.value}")
    if before is not None and before is not StepOutcome.DECLINED and after is StepOutcome.DECLINED:
        raise FailedPrecondition(f"{step.value} is already recorded as {before.value}")
