"""The shelter's Temporal activities (task queue masar-shelter): the journey's
referral steps, each a call to the shelter's own gRPC API — RequestPlacement,
RemindProvider, CloseReferral, PurgeCase — as the shelter's service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    CasePurge,
    ProviderReminder,
    PurgeResult,
    ReferralClosure,
    ReferralCreated,
    ReferralRequest,
    Risk,
    Sector,
    ShelterNeeds,
)
from masar.referral import ConsentSource, SectorActivities
from masar.referral.messages import risk_to_pb
from masar.v1 import common_pb2, shelter_pb2, shelter_pb2_grpc


def _feature(code: str) -> shelter_pb2.AccessibilityFeature.ValueType:
    if code not in contract.ACCESSIBILITY_FEATURES:
        raise ApplicationError(
            "request_referral: unknown accessibility need",
            type=contract.ERR_INVALID,
            non_retryable=True,
        )
    return shelter_pb2.AccessibilityFeature.Value(f"ACCESSIBILITY_FEATURE_{code.upper()}")


class ShelterActivities(SectorActivities):
    sector: ClassVar[Sector] = Sector.SHELTER

    def __init__(
        self, stub: shelter_pb2_grpc.ShelterServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

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
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> common_pb2.Referral:
        needs = request.shelter or ShelterNeeds()
        reply = await self.stub.RequestPlacement(
            shelter_pb2.RequestPlacementRequest(
                case_id=request.case_id,
                risk=risk_to_pb(Risk(request.risk)),
                region=request.region,
                needs=shelter_pb2.ShelterNeeds(
                    household_size=needs.household_size,
                    children=needs.children,
                    accessibility_needs=[_feature(c) for c in needs.accessibility_needs],
                ),
                exclude_provider_ids=request.exclude_provider_ids,
                provider_id=request.provider_id or "",
                idempotency_key=request.idempotency_key,
                consent_proof=consent_proof,
            ),
            timeout=rpc_timeout,
        )
        return reply.referral  # type: ignore[no-any-return]
