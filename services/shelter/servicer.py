"""masar.v1.ShelterService: protobuf <-> domain, validation, nothing else.

The handshake RPCs shared by every sector (DecideReferral, GetReferral,
ListReferrals, RemindProvider, CloseReferral, PurgeCase) come from
masar.referral.ReferralRpcs.

Who may call what (every method declares it; anything else is refused):
a coordinator registers shelters in her own region; staff, coordinators and
intake officers list shelters and beds (no personal data, addresses never
leave); only the shelter's service identity (its activities, for the
journey) requests placements, with intake's proof of consent; a shelter's
staff (token org = the shelter id) check in and out, and read the
placements, addressed to their own shelter — each read is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from masar.contract import Milestone, Sector, ShelterNeeds
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Role, current_caller, requires
from masar.referral import (
    ReferralHandshake,
    ReferralRpcs,
    delivery_to_pb,
    parse_draft,
    referral_to_pb,
    request_fingerprint,
    require_idempotency_key,
    require_region,
    require_text,
    run_retrying_conflicts,
    timestamp_pb,
    utcnow,
)
from masar.v1 import shelter_pb2, shelter_pb2_grpc
from services.shelter.domain import (
    ExitReason,
    Placement,
    RegionCapacity,
    Shelter,
    ShelterSpec,
    check_accessibility,
    check_needs,
    check_spec,
    summarise,
)
from services.shelter.models import PlacementRow
from services.shelter.repository import ShelterRepository, to_placement

SERVICE_NAME = "masar.v1.ShelterService"


# --- conversions ---------------------------------------------------------------------


def feature_from_pb(value: int, field: str) -> str:
    if value == 0:
        raise InvalidArgument(field, "must not be UNSPECIFIED")
    try:
        name = shelter_pb2.AccessibilityFeature.Name(
            shelter_pb2.AccessibilityFeature.ValueType(value)
        )
    except ValueError:
        raise InvalidArgument(field, "is not a known accessibility feature") from None
    return name.removeprefix("ACCESSIBILITY_FEATURE_").lower()


def feature_to_pb(code: str) -> shelter_pb2.AccessibilityFeature.ValueType:
    return shelter_pb2.AccessibilityFeature.Value(f"ACCESSIBILITY_FEATURE_{code.upper()}")


def exit_reason_from_pb(value: int, field: str = "exit_reason") -> ExitReason:
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name = shelter_pb2.ExitReason.Name(shelter_pb2.ExitReason.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known exit reason") from None
    return ExitReason(name.removeprefix("EXIT_REASON_").lower())


def exit_reason_to_pb(reason: ExitReason | None) -> shelter_pb2.ExitReason.ValueType:
    if reason is None:
        return shelter_pb2.EXIT_REASON_UNSPECIFIED
    return shelter_pb2.ExitReason.Value(f"EXIT_REASON_{reason.name}")


def shelter_to_pb(shelter: Shelter) -> shelter_pb2.Shelter:
    return shelter_pb2.Shelter(
        shelter_id=shelter.shelter_id,
        name=shelter.name,
        region=shelter.region,
        capacity=shelter.capacity,
        accepts_children=shelter.accepts_children,
        accessibility=sorted(feature_to_pb(c) for c in shelter.accessibility),
        reserved_beds=shelter.reserved_beds,
        occupied_beds=shelter.occupied_beds,
        free_beds=shelter.free_beds,
        created_at=timestamp_pb(shelter.created_at),
    )


def capacity_to_pb(capacity: RegionCapacity) -> shelter_pb2.RegionCapacity:
    return shelter_pb2.RegionCapacity(
        region=capacity.region,
        shelters=capacity.shelters,
        capacity=capacity.capacity,
        reserved_beds=capacity.reserved_beds,
        occupied_beds=capacity.occupied_beds,
        free_beds=capacity.free_beds,
    )


def placement_to_pb(placement: Placement) -> shelter_pb2.Placement:
    message = shelter_pb2.Placement(
        referral=referral_to_pb(placement.referral),
        beds=placement.beds,
        exit_reason=exit_reason_to_pb(placement.exit_reason),
    )
    if placement.checked_in_at is not None:
        message.checked_in_at.CopyFrom(timestamp_pb(placement.checked_in_at))
    if placement.checked_out_at is not None:
        message.checked_out_at.CopyFrom(timestamp_pb(placement.checked_out_at))
    return message


# --- servicer ------------------------------------------------------------------------


def require_own_region(region: str) -> str:
    """A coordinator manages the reference data of her own region only."""
    if current_caller().region != region:
        raise PermissionDenied("a coordinator registers shelters in her own region only")
    return region


STAFF = Role.SHELTER_STAFF
READERS = (Role.SHELTER_STAFF, Role.COORDINATOR, Role.INTAKE_OFFICER)


class ShelterServicer(ReferralRpcs, shelter_pb2_grpc.ShelterServiceServicer, sector=Sector.SHELTER):
    def __init__(
        self,
        *,
        handshake: ReferralHandshake[PlacementRow, ShelterNeeds],
        shelters: ShelterRepository,
    ) -> None:
        self.handshake = handshake
        self.shelters = shelters
        self.database = handshake.database

    # -- shelters --

    @requires(Role.COORDINATOR)
    async def CreateShelter(self, request: Any, context: Any) -> shelter_pb2.CreateShelterResponse:
        region = require_own_region(require_region(request.region))
        spec = check_spec(
            ShelterSpec(
                name=require_text(request.name, "name"),
                region=region,
                capacity=request.capacity,
                accepts_children=request.accepts_children,
                accessibility=check_accessibility(
                    (feature_from_pb(v, "accessibility") for v in request.accessibility),
                    "accessibility",
                ),
                address=require_text(request.address, "address", max_length=500),
            )
        )
        key = require_idempotency_key(request.idempotency_key)
        print_ = request_fingerprint(request)
        ledger = self.handshake.ledger

        def work(session: Session) -> Shelter:
            shelter_id, _ = ledger.once(
                session,
                scope="shelter.create_shelter",
                key=key,
                fingerprint=print_,
                create=lambda: self.shelters.insert(session, spec),
            )
            return self.shelters.get(session, shelter_id)

        shelter = await run_retrying_conflicts(self.database, work)
        return shelter_pb2.CreateShelterResponse(shelter=shelter_to_pb(shelter))

    @requires(*READERS)
    async def ListShelters(self, request: Any, context: Any) -> shelter_pb2.ListSheltersResponse:
        region = require_region(request.region) if request.region else None
        shelters = await self.database.run(lambda s: self.shelters.list(s, region=region))
        return shelter_pb2.ListSheltersResponse(shelters=[shelter_to_pb(s) for s in shelters])

    @requires(*READERS)
    async def GetCapacity(self, request: Any, context: Any) -> shelter_pb2.GetCapacityResponse:
        region = require_region(request.region) if request.region else None
        shelters = await self.database.run(lambda s: self.shelters.list(s, region=region))
        return shelter_pb2.GetCapacityResponse(
            regions=[capacity_to_pb(c) for c in summarise(shelters)]
        )

    # -- placements --

    @requires(Role.SERVICE_SHELTER)
    async def RequestPlacement(
        self, request: Any, context: Any
    ) -> shelter_pb2.RequestPlacementResponse:
        if not request.HasField("needs"):
            raise InvalidArgument("needs", "is required")
        needs = check_needs(
            ShelterNeeds(
                household_size=request.needs.household_size,
                children=request.needs.children,
                accessibility_needs=sorted(
                    {
                        feature_from_pb(v, "needs.accessibility_needs")
                        for v in request.needs.accessibility_needs
                    }
                ),
            )
        )
        draft = parse_draft(
            case_id=request.case_id,
            region=request.region,
            risk=request.risk,
            idempotency_key=request.idempotency_key,
            needs=needs,
            exclude_provider_ids=request.exclude_provider_ids,
            provider_id=request.provider_id,
        )
        self.handshake.require_consent(request.consent_proof, draft.case_id)
        record = await self.handshake.create(draft)
        return shelter_pb2.RequestPlacementResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def CheckIn(self, request: Any, context: Any) -> shelter_pb2.CheckInResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        key = require_idempotency_key(request.idempotency_key)

        def arrive(session: Session, row: PlacementRow) -> None:
            row.checked_in_at = utcnow()

        result = await self.handshake.record_milestone(
            referral_id, milestone=Milestone.STARTED, idempotency_key=key, apply=arrive
        )
        placement = await self._placement(referral_id)
        return shelter_pb2.CheckInResponse(
            placement=placement_to_pb(placement), delivery=delivery_to_pb(result.delivery)
        )

    @requires(STAFF)
    async def CheckOut(self, request: Any, context: Any) -> shelter_pb2.CheckOutResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        reason = exit_reason_from_pb(request.exit_reason)
        key = require_idempotency_key(request.idempotency_key)

        def leave(session: Session, row: PlacementRow) -> None:
            row.checked_out_at = utcnow()
            row.exit_reason = reason.value

        result = await self.handshake.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=key,
            detail=reason.value,
            apply=leave,
        )
        placement = await self._placement(referral_id)
        return shelter_pb2.CheckOutResponse(
            placement=placement_to_pb(placement), delivery=delivery_to_pb(result.delivery)
        )

    @requires(STAFF)
    async def GetPlacement(self, request: Any, context: Any) -> shelter_pb2.GetPlacementResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        repo = self.handshake.repository
        placement = await self.handshake.read_file(
            referral_id, lambda s, row: to_placement(repo, row)
        )
        return shelter_pb2.GetPlacementResponse(placement=placement_to_pb(placement))

    async def _placement(self, referral_id: str) -> Placement:
        repo = self.handshake.repository
        return await self.database.run(lambda s: to_placement(repo, repo.load(s, referral_id)))
