"""Shelter rules: beds, who a shelter can host, how a stay ends.

No protobuf and no SQL here. A referral holds beds according to its status:
once ACCEPTED its household's beds are reserved, once IN_SERVICE (checked in)
they are occupied, and in any other status it holds none. For every shelter,
reserved + occupied never exceeds capacity.

The capacity is the beds a shelter can offer now: its staff (or the region's
coordinator) keep it up to date, leaving out beds out of use for a while, and
never set it below the beds in use (`resize`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from masar.contract import ACCESSIBILITY_FEATURES, ReferralStatus, ShelterNeeds
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from masar.referral import ReferralRecord

MAX_CAPACITY = 500
MAX_HOUSEHOLD = 20


class ExitReason(StrEnum):
    """Why a stay ended; sent to the journey as the COMPLETED milestone's detail."""

    INDEPENDENT_HOUSING = "independent_housing"
    FAMILY_OR_FRIENDS = "family_or_friends"
    TRANSFERRED = "transferred"
    RETURNED_TO_PARTNER = "returned_to_partner"
    LEFT_WITHOUT_NOTICE = "left_without_notice"
    ASKED_TO_LEAVE = "asked_to_leave"
    OTHER = "other"


@dataclass(frozen=True, kw_only=True)
class ShelterSpec:
    """A shelter to register."""

    name: str
    region: str
    capacity: int
    accepts_children: bool
    accessibility: frozenset[str]
    address: str  # confidential: stored encrypted, never returned
    organisation_id: str  # the organisation of the network that runs it


@dataclass(frozen=True, kw_only=True)
class Shelter:
    shelter_id: str
    name: str
    region: str
    capacity: int
    accepts_children: bool
    accessibility: frozenset[str]
    reserved_beds: int
    occupied_beds: int
    created_at: datetime
    # None: registered before shelters named their organisation.
    organisation_id: str | None = None

    @property
    def free_beds(self) -> int:
        return self.capacity - self.reserved_beds - self.occupied_beds

    @property
    def beds_in_use(self) -> int:
        """Reserved or occupied: what the capacity may never go below."""
        return self.reserved_beds + self.occupied_beds

    def can_host(self, needs: ShelterNeeds) -> bool:
        """Enough free beds, children welcome if she has any, every accessibility need met."""
        if self.free_beds < needs.household_size:
            return False
        if needs.children > 0 and not self.accepts_children:
            return False
        return set(needs.accessibility_needs) <= self.accessibility


@dataclass(frozen=True)
class RegionCapacity:
    region: str
    shelters: int
    capacity: int
    reserved_beds: int
    occupied_beds: int

    @property
    def free_beds(self) -> int:
        return self.capacity - self.reserved_beds - self.occupied_beds


@dataclass(frozen=True)
class Placement:
    """A referral with the shelter's own details of the stay."""

    referral: ReferralRecord
    beds: int
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    exit_reason: ExitReason | None


def beds_held(status: ReferralStatus, household_size: int) -> tuple[int, int]:
    """(reserved, occupied) beds a referral in `status` holds."""
    if status is ReferralStatus.ACCEPTED:
        return household_size, 0
    if status is ReferralStatus.IN_SERVICE:
        return 0, household_size
    return 0, 0


def rank_shelters(
    shelters: Iterable[Shelter], needs: ShelterNeeds, *, region: str, exclude: Iterable[str]
) -> list[Shelter]:
    """Shelters that can host the household, same region first, then the
    most free beds (spreads load), then by id (deterministic)."""
    excluded = set(exclude)
    eligible = [s for s in shelters if s.shelter_id not in excluded and s.can_host(needs)]
    return sorted(eligible, key=lambda s: (s.region != region, -s.free_beds, s.shelter_id))


def summarise(shelters: Sequence[Shelter]) -> list[RegionCapacity]:
    totals: dict[str, RegionCapacity] = {}
    for s in shelters:
        seen = totals.get(s.region, RegionCapacity(s.region, 0, 0, 0, 0))
        totals[s.region] = RegionCapacity(
            s.region,
            seen.shelters + 1,
            seen.capacity + s.capacity,
            seen.reserved_beds + s.reserved_beds,
            seen.occupied_beds + s.occupied_beds,
        )
    return [totals[r] for r in sorted(totals)]


def check_accessibility(features: Iterable[str], field: str) -> frozenset[str]:
    result = frozenset(features)
    if not result <= set(ACCESSIBILITY_FEATURES):
        raise InvalidArgument(field, "names an unknown accessibility feature")
    return result


def check_needs(needs: ShelterNeeds, prefix: str = "needs.") -> ShelterNeeds:
    if not 1 <= needs.household_size <= MAX_HOUSEHOLD:
        raise InvalidArgument(f"{prefix}household_size", f"must be between 1 and {MAX_HOUSEHOLD}")
    if not 0 <= needs.children < needs.household_size:
        raise InvalidArgument(
            f"{prefix}children", "must be between 0 and household_size - 1 (she is counted)"
        )
    check_accessibility(needs.accessibility_needs, f"{prefix}accessibility_needs")
    return needs


def check_spec(spec: ShelterSpec) -> ShelterSpec:
    if not 1 <= spec.capacity <= MAX_CAPACITY:
        raise InvalidArgument("capacity", f"must be between 1 and {MAX_CAPACITY}")
    return spec


def check_manager(caller: Caller, shelter: Shelter) -> None:
    """Who may change a shelter's beds: shelter staff of the organisation that
    runs it (token org == its organisation_id; a shelter of no organisation
    has none) and the coordinator of its region. PermissionDenied otherwise,
    naming nothing of the shelter."""
    if caller.role is Role.SHELTER_STAFF:
        if not caller.org or not shelter.organisation_id or caller.org != shelter.organisation_id:
            raise PermissionDenied("the shelter is not run by the caller's organisation")
        return
    if caller.role is Role.COORDINATOR:
        if not caller.region or caller.region != shelter.region:
            raise PermissionDenied("the shelter is outside the caller's region")
        return
    raise PermissionDenied(f"role {caller.role.value} may not change a shelter's beds")


def resize(shelter: Shelter, capacity: int) -> Shelter:
    """The shelter with `capacity` beds: 0..MAX_CAPACITY (0 while it takes
    nobody), and never fewer than the beds reserved or occupied now (a
    household is never left without the bed it was promised)."""
    if not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidArgument("capacity", f"must be between 0 and {MAX_CAPACITY}")
    if capacity < shelter.beds_in_use:
        raise InvalidArgument(
            "capacity",
            f"must be at least {shelter.beds_in_use}, the beds reserved or occupied now",
        )
    return replace(shelter, capacity=capacity)
