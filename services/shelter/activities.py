"""The shelter's Temporal activities (task queue masar-shelter): the journey's
referral steps, each a call to the shelter's own gRPC API — RequestPlacement,
RemindProvider, CloseReferral, PurgeCase — as the shelter's service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity

from masar import contract
from masar.referral import NeedCodes, RequestFields, SectorActivities
from masar.v1 import common_pb2, shelter_pb2

_FEATURES = NeedCodes(
    shelter_pb2.AccessibilityFeature,
    prefix="ACCESSIBILITY_FEATURE_",
    known=contract.ACCESSIBILITY_FEATURES,
    what="accessibility need",
)


class ShelterActivities(SectorActivities):
    sector: ClassVar[contract.Sector] = contract.Sector.SHELTER

    @activity.defn(name=contract.SHELTER_REQUEST_REFERRAL)
    async def request_referral(self, request: contract.ReferralRequest) -> contract.ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.SHELTER_REMIND_PROVIDER)
    async def remind_provider(self, reminder: contract.ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.SHELTER_CLOSE_REFERRAL)
    async def close_referral(self, closure: contract.ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.SHELTER_PURGE_CASE)
    async def purge_case(self, purge: contract.CasePurge) -> contract.PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: contract.ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.shelter or contract.ShelterNeeds()
        message = shelter_pb2.RequestPlacementRequest(
            needs=shelter_pb2.ShelterNeeds(
                household_size=needs.household_size,
                children=needs.children,
                accessibility_needs=_FEATURES.to_pb(needs.accessibility_needs),
            ),
            **fields,
        )
        reply = await self.stub.RequestPlacement(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
