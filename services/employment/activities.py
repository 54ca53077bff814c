"""Employment's Temporal activities: the journey's referral steps, each a
call to the employment service's own gRPC API (so every step crosses the
service boundary and is traced). Business refusals become non-retryable
ApplicationErrors with the contract's types (masar.referral.activity_error)."""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import EmploymentNeeds, ReferralRequest, Risk, Sector
from masar.referral import ConsentSource, ReferralActivities, risk_to_pb
from masar.v1 import employment_pb2, employment_pb2_grpc


def _kind(code: str) -> employment_pb2.ProgrammeKind.ValueType:
    if code not in contract.PROGRAMME_KINDS:
        raise ApplicationError(
            "request_referral: unknown programme kind",
            type=contract.ERR_INVALID,
            non_retryable=True,
        )
    return employment_pb2.ProgrammeKind.Value(f"PROGRAMME_KIND_{code.upper()}")


class EmploymentActivities(ReferralActivities):
    """employment.request_referral, .remind_provider, .close_referral, .purge_case."""

    sector: ClassVar[Sector] = Sector.EMPLOYMENT

    def __init__(
        self, stub: employment_pb2_grpc.EmploymentServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> Any:
        needs = request.employment or EmploymentNeeds()
        reply = await self.stub.RequestEnrolment(
            employment_pb2.RequestEnrolmentRequest(
                case_id=request.case_id,
                risk=risk_to_pb(Risk(request.risk)),
                region=request.region,
                needs=employment_pb2.EmploymentNeeds(
                    interests=[_kind(c) for c in needs.interests],
                    languages=needs.languages,
                ),
                exclude_provider_ids=request.exclude_provider_ids,
                provider_id=request.provider_id or "",
                idempotency_key=request.idempotency_key,
                consent_proof=consent_proof,
            ),
            timeout=rpc_timeout,
        )
        return reply.referral
