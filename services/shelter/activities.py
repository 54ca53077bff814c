"""The shelter's Temporal activities (task queue masar-shelter): the journey's
referral steps, each a call to the shelter's own gRPC API — RequestPlacement,
RemindProvider, CloseReferral, PurgeCase — as the shelter's service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity

from masar import contract
from masar.contract import (
    CasePurge,
    ProviderReminder,
    PurgeResult,
    ReferralClosure,
    ReferralCreated,
    ReferralRequest,
    Sector,
    ShelterNeeds,
)
from masar.referral import RequestFields, SectorActivities, need_to_pb
from masar.v1 import common_pb2, shelter_pb2


class ShelterActivities(SectorActivities):
    sector: ClassVar[Sector] = Sector.SHELTER

    @activity.defn(name=contract.SHELTER_REQUEST_REFERRAL)
    async def request_referral(self, request: ReferralRequest) -> ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.SHELTER_REMIND_PROVIDER)
    async def remind_provider(self, reminder: ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.SHELTER_CLOSE_REFERRAL)
    async def close_referral(self, closure: ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.SHELTER_PURGE_CASE)
    async def purge_case(self, purge: CasePurge) -> PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.shelter or ShelterNeeds()
        features = [
            need_to_pb(
                shelter_pb2.AccessibilityFeature,
                code,
                prefix="ACCESSIBILITY_FEATURE_",
                known=contract.ACCESSIBILITY_FEATURES,
                what="accessibility need",
            )
            for code in needs.accessibility_needs
        ]
        message = shelter_pb2.RequestPlacementRequest(
            needs=shelter_pb2.ShelterNeeds(
                household_size=needs.household_size,
                children=needs.children,
                accessibility_needs=features,
            ),
            **fields,
        )
        reply = await self.stub.RequestPlacement(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
