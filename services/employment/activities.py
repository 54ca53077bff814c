"""Employment's Temporal activities (task queue masar-employment): the
journey's referral steps, each a call to employment's own gRPC API —
RequestEnrolment, RemindProvider, CloseReferral, PurgeCase — as employment's
service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    CasePurge,
    EmploymentNeeds,
    ProviderReminder,
    PurgeResult,
    ReferralClosure,
    ReferralCreated,
    ReferralRequest,
    Risk,
    Sector,
)
from masar.referral import ConsentSource, SectorActivities
from masar.referral.messages import risk_to_pb
from masar.v1 import common_pb2, employment_pb2, employment_pb2_grpc


def _kind(code: str) -> employment_pb2.ProgrammeKind.ValueType:
    if code not in contract.PROGRAMME_KINDS:
        raise ApplicationError(
            "request_referral: unknown programme kind",
            type=contract.ERR_INVALID,
            non_retryable=True,
        )
    return employment_pb2.ProgrammeKind.Value(f"PROGRAMME_KIND_{code.upper()}")


class EmploymentActivities(SectorActivities):
    sector: ClassVar[Sector] = Sector.EMPLOYMENT

    def __init__(
        self, stub: employment_pb2_grpc.EmploymentServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

    @activity.defn(name=contract.EMPLOYMENT_REQUEST_REFERRAL)
    async def request_referral(self, request: ReferralRequest) -> ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.EMPLOYMENT_REMIND_PROVIDER)
    async def remind_provider(self, reminder: ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.EMPLOYMENT_CLOSE_REFERRAL)
    async def close_referral(self, closure: ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.EMPLOYMENT_PURGE_CASE)
    async def purge_case(self, purge: CasePurge) -> PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> common_pb2.Referral:
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
        return reply.referral  # type: ignore[no-any-return]
