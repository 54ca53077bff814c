"""The shelter's Temporal activities: the journey's referral steps, each a
call to the shelter's own gRPC API (so every step crosses the service
boundary and is traced). Business refusals become non-retryable
ApplicationErrors with the contract's types (masar.referral.activity_error)."""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import ReferralRequest, Risk, Sector, ShelterNeeds
from masar.referral import ConsentSource, ReferralActivities, risk_to_pb
from masar.v1 import shelter_pb2, shelter_pb2_grpc


def _feature(code: str) -> shelter_pb2.AccessibilityFeature.ValueType:
    if code not in contract.ACCESSIBILITY_FEATURES:
        raise ApplicationError(
            "request_referral: unknown accessibility need",
            type=contract.ERR_INVALID,
            non_retryable=True,
        )
    return shelter_pb2.AccessibilityFeature.Value(f"ACCESSIBILITY_FEATURE_{code.upper()}")


class ShelterActivities(ReferralActivities):
    """shelter.request_referral, .remind_provider, .close_referral, .purge_case."""

    sector: ClassVar[Sector] = Sector.SHELTER

    def __init__(
        self, stub: shelter_pb2_grpc.ShelterServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> Any:
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
        return reply.referral
