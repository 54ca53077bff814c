"""Employment rules: programmes, seats, who fits where, how an enrolment ends.

No protobuf and no SQL here. A referral holds one seat of its programme while
it is ACCEPTED or IN_SERVICE (enrolled), none otherwise; for every programme,
seats_taken never exceeds seats.

The seats are what a programme offers now: its employment officers (or the
region's coordinator) keep the number up to date, never below the seats
taken (`resize`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from masar.contract import PROGRAMME_KINDS, EmploymentNeeds, ReferralStatus
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from masar.referral import ReferralRecord

MAX_SEATS = 1000
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")

# Milestone details sent to the journey (structured codes).
DETAIL_DROPPED_OUT = "training_dropped_out"
DETAIL_JOB_PLACED = "job_placed"


class TrainingOutcome(StrEnum):
    CERTIFIED = "certified"
    DROPPED_OUT = "dropped_out"


class EmployerType(StrEnum):
    PRIVATE_COMPANY = "private_company"
    COOPERATIVE = "cooperative"
    PUBLIC_SECTOR = "public_sector"
    ASSOCIATION = "association"
    SELF_EMPLOYED = "self_employed"


class ContractType(StrEnum):
    PERMANENT = "permanent"
    FIXED_TERM = "fixed_term"
    APPRENTICESHIP = "apprenticeship"
    SEASONAL = "seasonal"
    SELF_EMPLOYMENT = "self_employment"
    INFORMAL = "informal"


@dataclass(frozen=True, kw_only=True)
class ProgrammeSpec:
    name: str
    kind: str
    region: str
    seats: int
    start_date: datetime
    languages: frozenset[str]
    organisation_id: str  # the organisation of the network that runs it


@dataclass(frozen=True, kw_only=True)
class Programme:
    programme_id: str
    name: str
    kind: str
    region: str
    seats: int
    seats_taken: int
    start_date: datetime
    languages: frozenset[str]
    created_at: datetime
    # None: registered before programmes named their organisation.
    organisation_id: str | None = None

    @property
    def seats_free(self) -> int:
        return self.seats - self.seats_taken

    def fits(self, needs: EmploymentNeeds) -> bool:
        """A free seat, one of her interests (any when she named none), and a
        language she speaks (any when either side named none)."""
        if self.seats_free < 1:
            return False
        if needs.interests and self.kind not in needs.interests:
            return False
        return not (needs.languages and self.languages) or bool(
            self.languages & set(needs.languages)
        )


@dataclass(frozen=True)
class Enrolment:
    """A referral with the programme's own details of the enrolment."""

    referral: ReferralRecord
    started_at: datetime | None
    training_outcome: TrainingOutcome | None
    training_completed_at: datetime | None
    employer_type: EmployerType | None
    contract_type: ContractType | None
    placed_at: datetime | None


def seats_held(status: ReferralStatus) -> int:
    return 1 if status in (ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE) else 0


def rank_programmes(
    programmes: Iterable[Programme], needs: EmploymentNeeds, *, region: str, exclude: Iterable[str]
) -> list[Programme]:
    """Programmes that fit, same region first, then her most wanted kind,
    then the earliest start, then by id (deterministic)."""
    excluded = set(exclude)
    wanted = {kind: rank for rank, kind in enumerate(needs.interests)}
    fitting = [p for p in programmes if p.programme_id not in excluded and p.fits(needs)]
    return sorted(
        fitting,
        key=lambda p: (p.region != region, wanted.get(p.kind, 0), p.start_date, p.programme_id),
    )


def check_languages(tags: Iterable[str], field: str) -> frozenset[str]:
    result = frozenset(tags)
    for tag in result:
        if not _LANGUAGE.match(tag):
            raise InvalidArgument(field, "must be lowercase language tags such as ary, ar, fr")
    return result


def check_kind(kind: str, field: str) -> str:
    if kind not in PROGRAMME_KINDS:
        raise InvalidArgument(field, "is not a known programme kind")
    return kind


def check_needs(needs: EmploymentNeeds, prefix: str = "needs.") -> EmploymentNeeds:
    for kind in needs.interests:
        check_kind(kind, f"{prefix}interests")
    check_languages(needs.languages, f"{prefix}languages")
    return needs


def check_spec(spec: ProgrammeSpec) -> ProgrammeSpec:
    if not 1 <= spec.seats <= MAX_SEATS:
        raise InvalidArgument("seats", f"must be between 1 and {MAX_SEATS}")
    check_kind(spec.kind, "kind")
    return spec


def check_manager(caller: Caller, programme: Programme) -> None:
    """Who may change a programme's seats: employment officers of the
    organisation that runs it (token org == its organisation_id; a programme
    of no organisation has none) and the coordinator of its region.
    PermissionDenied otherwise, naming nothing of the programme."""
    if caller.role is Role.EMPLOYMENT_OFFICER:
        if (
            not caller.org
            or not programme.organisation_id
            or caller.org != programme.organisation_id
        ):
            raise PermissionDenied("the programme is not run by the caller's organisation")
        return
    if caller.role is Role.COORDINATOR:
        if not caller.region or caller.region != programme.region:
            raise PermissionDenied("the programme is outside the caller's region")
        return
    raise PermissionDenied(f"role {caller.role.value} may not change a programme's seats")


def resize(programme: Programme, seats: int) -> Programme:
    """The programme with `seats` seats: 0..MAX_SEATS (0 while it takes
    nobody new), and never fewer than the seats taken now."""
    if not 0 <= seats <= MAX_SEATS:
        raise InvalidArgument("seats", f"must be between 0 and {MAX_SEATS}")
    if seats < programme.seats_taken:
        raise InvalidArgument(
            "seats", f"must be at least {programme.seats_taken}, the seats taken now"
        )
    return replace(programme, seats=seats)
