"""The shelter's business rules, between the servicer (protobuf) and the
repository (SQL): registering shelters, requesting placements, check-in and
check-out. The referral handshake itself is the kit's `SectorHandshake`
(`self.referrals`), which this service delegates to.

Who may see what: a coordinator registers shelters in her own region only;
a shelter's staff (its organisation's) and its region's coordinator keep its
beds up to date (audited); every read of a placement (personal data) is
audited.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from masar.contract import Milestone, ShelterNeeds
from masar.platform.clock import utcnow
from masar.platform.idempotency import fingerprint, run_retrying_conflicts
from masar.platform.identity import current_caller
from masar.platform.outbox import DeliveryOutcome
from masar.referral import ReferralDraft, ReferralRecord, SectorHandshake
from services.shelter.domain import (
    ExitReason,
    Placement,
    RegionCapacity,
    Shelter,
    ShelterSpec,
    check_manager,
    resize,
    summarise,
)
from services.shelter.models import PlacementRow
from services.shelter.repository import ShelterRepository, to_placement

SET_CAPACITY = "shelter.set_capacity"


class ShelterService:
    def __init__(
        self,
        *,
        referrals: SectorHandshake[PlacementRow, ShelterNeeds],
        shelters: ShelterRepository,
    ) -> None:
        self.referrals = referrals
        self.shelters = shelters
        self.database = referrals.database

    # -- shelters --

    async def create_shelter(
        self, spec: ShelterSpec, *, idempotency_key: str, request_print: str
    ) -> Shelter:
        """Register a shelter, once per key."""
        return await self.referrals.register(
            "shelter.create_shelter",
            self.shelters,
            spec,
            idempotency_key=idempotency_key,
            request_print=request_print,
        )

    async def list_shelters(self, region: str | None) -> list[Shelter]:
        return await self.database.run(lambda s: self.shelters.list(s, region=region))

    async def capacity(self, region: str | None) -> list[RegionCapacity]:
        return summarise(await self.list_shelters(region))

    async def authorise_shelter(self, shelter_id: str) -> Shelter:
        """The shelter, if the current caller may change its beds
        (`check_manager`); NotFound or PermissionDenied otherwise. Called
        before the rest of the request is read."""
        shelter = await self.database.run(lambda s: self.shelters.get(s, shelter_id))
        check_manager(current_caller(), shelter)
        return shelter

    async def set_capacity(
        self, shelter_id: str, capacity: int, *, idempotency_key: str | None
    ) -> Shelter:
        """The shelter's beds set to `capacity` (`resize`: never below the
        beds in use), its row locked; audited, in one unit of work. A retry
        with the same key changes nothing again."""
        referrals = self.referrals
        print_ = fingerprint(shelter_id, capacity)

        def work(session: Session) -> Shelter:
            if idempotency_key and referrals.ledger.lookup(
                session, scope=SET_CAPACITY, key=idempotency_key, fingerprint=print_
            ):
                return self.shelters.get(session, shelter_id)
            shelter = resize(self.shelters.locked(session, shelter_id), capacity)
            stored = self.shelters.store_capacity(session, shelter)
            if idempotency_key:
                referrals.ledger.record(
                    session,
                    scope=SET_CAPACITY,
                    key=idempotency_key,
                    fingerprint=print_,
                    subject_id=shelter_id,
                )
            referrals.record_audit(
                session,
                "shelter.capacity_set",
                case_id="",
                target=shelter_id,
                reason=f"capacity:{capacity}",
            )
            return stored

        return await run_retrying_conflicts(self.database, work)

    # -- placements --

    async def request_placement(
        self, draft: ReferralDraft[ShelterNeeds], *, consent_proof: str
    ) -> ReferralRecord:
        """A PENDING placement at a shelter that can host the household (or
        the one a coordinator named)."""
        return await self.referrals.create(draft, consent_proof=consent_proof)

    async def check_in(
        self, referral_id: str, *, idempotency_key: str
    ) -> tuple[Placement, DeliveryOutcome]:
        """She arrived: the reserved beds become occupied (STARTED)."""

        def arrive(session: Session, row: PlacementRow) -> None:
            row.checked_in_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id, milestone=Milestone.STARTED, idempotency_key=idempotency_key, apply=arrive
        )
        return await self._placement(referral_id), result.delivery

    async def check_out(
        self, referral_id: str, reason: ExitReason, *, idempotency_key: str
    ) -> tuple[Placement, DeliveryOutcome]:
        """She left: the beds are free again (COMPLETED, the exit reason as detail)."""

        def leave(session: Session, row: PlacementRow) -> None:
            row.checked_out_at = utcnow()
            row.exit_reason = reason.value

        result = await self.referrals.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=idempotency_key,
            detail=reason.value,
            apply=leave,
        )
        return await self._placement(referral_id), result.delivery

    async def placement(self, referral_id: str) -> Placement:
        """The placement (personal data): an audited read."""
        return await self.referrals.read_file(referral_id, to_placement)

    async def _placement(self, referral_id: str) -> Placement:
        return await self.referrals.read(referral_id, to_placement)
