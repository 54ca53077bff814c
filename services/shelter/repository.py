"""Every shelter query, inside a caller's unit of work; never commits.

`ShelterHooks` plugs the shelter's rules into the shared referral handshake
(masar.referral): choosing a shelter, and moving beds between free, reserved
and occupied as a referral changes status. Beds change only with the shelter
row locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite units of work are
BEGIN IMMEDIATE), so concurrent accepts never over-allocate.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from masar.contract import ReferralStatus, ShelterNeeds
from masar.platform.clock import as_utc, utcnow
from masar.platform.errors import ResourceExhausted
from masar.referral import (
    NoEligibleProvider,
    ProviderRows,
    ReferralDraft,
    ReferralRecord,
    SectorHooks,
    erase,
)
from services.shelter.domain import (
    ExitReason,
    Placement,
    Shelter,
    ShelterSpec,
    beds_held,
    rank_shelters,
)
from services.shelter.models import PlacementRow, ShelterRow


def new_shelter_id() -> str:
    return f"shl-{secrets.token_hex(6)}"


def _codes(value: str | None) -> frozenset[str]:
    return frozenset(c for c in (value or "").split(",") if c)


def _join(codes: frozenset[str] | list[str]) -> str:
    return ",".join(sorted(codes))


def to_shelter(row: ShelterRow) -> Shelter:
    return Shelter(
        shelter_id=row.shelter_id,
        name=row.name,
        region=row.region,
        capacity=row.capacity,
        accepts_children=row.accepts_children,
        accessibility=_codes(row.accessibility),
        reserved_beds=row.reserved_beds,
        occupied_beds=row.occupied_beds,
        created_at=as_utc(row.created_at),
        organisation_id=row.organisation_id or None,
    )


class ShelterRepository(ProviderRows[ShelterRow]):
    def __init__(self) -> None:
        super().__init__(ShelterRow, noun="shelter")

    def insert(self, session: Session, spec: ShelterSpec) -> str:
        row = ShelterRow(
            shelter_id=new_shelter_id(),
            name=spec.name,
            region=spec.region,
            capacity=spec.capacity,
            accepts_children=spec.accepts_children,
            accessibility=_join(spec.accessibility),
            address=spec.address,
            reserved_beds=0,
            occupied_beds=0,
            created_at=utcnow(),
            organisation_id=spec.organisation_id,
        )
        return self.add(session, row).shelter_id

    def get(self, session: Session, shelter_id: str) -> Shelter:
        return to_shelter(self.row(session, shelter_id))

    def locked(self, session: Session, shelter_id: str) -> Shelter:
        """The shelter, its row locked until the unit of work ends (its beds
        cannot move meanwhile)."""
        return to_shelter(self.lock(session, shelter_id))

    def store_capacity(self, session: Session, shelter: Shelter) -> Shelter:
        """Write `shelter.capacity` (its row locked by `locked` first); the
        database's check refuses over-allocation too."""
        row = self.lock(session, shelter.shelter_id)
        row.capacity = shelter.capacity
        session.flush()
        return to_shelter(row)

    def list(self, session: Session, *, region: str | None = None) -> list[Shelter]:
        query = select(ShelterRow).order_by(ShelterRow.region, ShelterRow.shelter_id)
        if region:
            query = query.where(ShelterRow.region == region)
        return [to_shelter(r) for r in session.execute(query).scalars()]


class ShelterHooks(SectorHooks[PlacementRow, ShelterNeeds]):
    def __init__(self, shelters: ShelterRepository) -> None:
        self.shelters = shelters

    def choose_provider(self, session: Session, draft: ReferralDraft[ShelterNeeds]) -> str:
        ranked = rank_shelters(
            self.shelters.list(session),
            draft.needs,
            region=draft.region,
            exclude=draft.exclude_provider_ids,
        )
        if not ranked:
            raise NoEligibleProvider("no shelter with free beds can host this household")
        return ranked[0].shelter_id

    def provider_organisation(self, session: Session, provider_id: str) -> str | None:
        return self.shelters.organisation_of(session, provider_id)

    def check_provider(
        self, session: Session, draft: ReferralDraft[ShelterNeeds], provider_id: str
    ) -> None:
        # A coordinator's choice may override region, capacity and earlier
        # attempts (she knows the network); the shelter must exist.
        self.shelters.check_known(session, provider_id)

    def store_needs(
        self, session: Session, referral: PlacementRow, draft: ReferralDraft[ShelterNeeds]
    ) -> None:
        referral.household_size = draft.needs.household_size
        referral.children = draft.needs.children
        referral.accessibility_needs = _join(list(draft.needs.accessibility_needs))

    def on_transition(
        self,
        session: Session,
        referral: PlacementRow,
        old: ReferralStatus,
        new: ReferralStatus,
    ) -> None:
        household = referral.household_size or 0
        old_reserved, old_occupied = beds_held(old, household)
        new_reserved, new_occupied = beds_held(new, household)
        if (old_reserved, old_occupied) == (new_reserved, new_occupied):
            return
        shelter = self.shelters.lock(session, referral.provider_id)
        reserved = shelter.reserved_beds - old_reserved + new_reserved
        occupied = shelter.occupied_beds - old_occupied + new_occupied
        if reserved + occupied > shelter.capacity:
            raise ResourceExhausted("not enough free beds at this shelter")
        shelter.reserved_beds = max(reserved, 0)
        shelter.occupied_beds = max(occupied, 0)

    def purge_needs(self, session: Session, referral: PlacementRow) -> int:
        return erase(referral, "household_size", "children", "accessibility_needs")


def to_placement(session: Session, record: ReferralRecord, row: PlacementRow) -> Placement:
    """The referral's placement file (a `SectorHandshake.read_file` reader)."""
    return Placement(
        referral=record,
        beds=row.household_size or 0,
        checked_in_at=as_utc(row.checked_in_at) if row.checked_in_at else None,
        checked_out_at=as_utc(row.checked_out_at) if row.checked_out_at else None,
        exit_reason=ExitReason(row.exit_reason) if row.exit_reason else None,
    )
