"""masar.v1.ShelterService: protobuf <-> domain, and a call to the service
layer (services.shelter.service), nothing else.

Who may call what (every method declares it; anything else is refused):
a coordinator registers shelters in her own region; a shelter's staff (token
org = the organisation that runs it) and its region's coordinator set its
beds (the shelter is authorised, `authorise_shelter`, before the rest of the
request is read); staff, coordinators and
intake officers list shelters and beds (no personal data, addresses never
leave); only the shelter's service identity (its activities, for the
journey) requests placements, with intake's proof of consent, and reminds,
closes and purges; a shelter's staff (token org = the organisation that runs
the shelter) decide, check in and out, and read the placements addressed to
their own organisation's shelters — each read is audited. An RPC on one referral is authorised
(`referrals.authorise`) before the rest of its request is read.
"""

from __future__ import annotations

import grpc
import grpc.aio

from masar.contract import ShelterNeeds
from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Role
from masar.platform.validation import (
    check_provider_id,
    require_idempotency_key,
    require_organisation_id,
    require_region,
    require_text,
)
from masar.referral import ReferralEndpoints
from masar.referral.messages import (
    delivery_to_pb,
    draft_from_pb,
    referral_to_pb,
    timestamp_pb,
)
from masar.v1 import common_pb2, shelter_pb2, shelter_pb2_grpc
from services.shelter.domain import (
    ExitReason,
    Placement,
    RegionCapacity,
    Shelter,
    ShelterSpec,
    check_accessibility,
    check_needs,
    check_spec,
)
from services.shelter.service import ShelterService

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
        organisation_id=shelter.organisation_id or "",
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


def require_shelter_id(value: str, field: str = "shelter_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    return check_provider_id(value, field)


def optional_key(value: str) -> str | None:
    """An optional idempotency key: None when absent, checked when given."""
    return require_idempotency_key(value) if value else None


# --- servicer ------------------------------------------------------------------------

STAFF = Role.SHELTER_STAFF
READERS = (Role.SHELTER_STAFF, Role.COORDINATOR, Role.INTAKE_OFFICER)


class ShelterServicer(shelter_pb2_grpc.ShelterServiceServicer):
    def __init__(self, service: ShelterService) -> None:
        self.service = service
        self.referrals = service.referrals
        self.shared = ReferralEndpoints(service.referrals)

    # -- shelters --

    @requires(Role.COORDINATOR)
    async def CreateShelter(
        self, request: shelter_pb2.CreateShelterRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.CreateShelterResponse:
        region = self.referrals.require_own_region(require_region(request.region), "shelters")
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
                organisation_id=require_organisation_id(request.organisation_id),
            )
        )
        shelter = await self.service.create_shelter(
            spec,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        return shelter_pb2.CreateShelterResponse(shelter=shelter_to_pb(shelter))

    @requires(*READERS)
    async def ListShelters(
        self, request: shelter_pb2.ListSheltersRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.ListSheltersResponse:
        region = require_region(request.region) if request.region else None
        shelters = await self.service.list_shelters(region)
        return shelter_pb2.ListSheltersResponse(shelters=[shelter_to_pb(s) for s in shelters])

    @requires(*READERS)
    async def GetCapacity(
        self, request: shelter_pb2.GetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.GetCapacityResponse:
        region = require_region(request.region) if request.region else None
        regions = await self.service.capacity(region)
        return shelter_pb2.GetCapacityResponse(regions=[capacity_to_pb(c) for c in regions])

    @requires(STAFF, Role.COORDINATOR)
    async def SetShelterCapacity(
        self, request: shelter_pb2.SetShelterCapacityRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.SetShelterCapacityResponse:
        shelter = await self.service.authorise_shelter(require_shelter_id(request.shelter_id))
        updated = await self.service.set_capacity(
            shelter.shelter_id,
            request.capacity,
            idempotency_key=optional_key(request.idempotency_key),
        )
        return shelter_pb2.SetShelterCapacityResponse(shelter=shelter_to_pb(updated))

    # -- placements --

    @requires(Role.SERVICE_SHELTER)
    async def RequestPlacement(
        self, request: shelter_pb2.RequestPlacementRequest, context: grpc.aio.ServicerContext
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
        draft = draft_from_pb(request, needs)
        record = await self.service.request_placement(draft, consent_proof=request.consent_proof)
        return shelter_pb2.RequestPlacementResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def CheckIn(
        self, request: shelter_pb2.CheckInRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.CheckInResponse:
        referral = await self.referrals.authorise(request.referral_id)
        placement, delivery = await self.service.check_in(
            referral.referral_id,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return shelter_pb2.CheckInResponse(
            placement=placement_to_pb(placement), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def CheckOut(
        self, request: shelter_pb2.CheckOutRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.CheckOutResponse:
        referral = await self.referrals.authorise(request.referral_id)
        reason = exit_reason_from_pb(request.exit_reason)
        placement, delivery = await self.service.check_out(
            referral.referral_id,
            reason,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return shelter_pb2.CheckOutResponse(
            placement=placement_to_pb(placement), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def GetPlacement(
        self, request: shelter_pb2.GetPlacementRequest, context: grpc.aio.ServicerContext
    ) -> shelter_pb2.GetPlacementResponse:
        referral = await self.referrals.authorise(request.referral_id)
        placement = await self.service.placement(referral.referral_id)
        return shelter_pb2.GetPlacementResponse(placement=placement_to_pb(placement))

    # -- the handshake every sector shares (common.proto): ReferralEndpoints --

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)

    @requires(STAFF, Role.COORDINATOR, Role.SERVICE_SHELTER)
    async def GetReferral(
        self, request: common_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GetReferralResponse:
        return await self.shared.get(request)

    @requires(STAFF, Role.COORDINATOR)
    async def ListReferrals(
        self, request: common_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListReferralsResponse:
        return await self.shared.list(request)

    @requires(Role.SERVICE_SHELTER)
    async def RemindProvider(
        self, request: common_pb2.RemindProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RemindProviderResponse:
        return await self.shared.remind(request)

    @requires(Role.SERVICE_SHELTER)
    async def CloseReferral(
        self, request: common_pb2.CloseReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.CloseReferralResponse:
        return await self.shared.close(request)

    @requires(Role.SERVICE_SHELTER)
    async def PurgeCase(
        self, request: common_pb2.PurgeCaseRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeCaseResponse:
        return await self.shared.purge(request)
