"""Legal aid's Temporal activities (task queue masar-legal): the journey's
referral steps, each a call to legal aid's own gRPC API — RequestLegalAid,
RemindProvider, CloseReferral, PurgeCase — as legal aid's service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    CasePurge,
    LegalNeeds,
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
from masar.v1 import common_pb2, legal_pb2, legal_pb2_grpc

_MATTERS = {m.lower(): v for m, v in legal_pb2.LegalMatter.items() if v}


def _matter(code: str) -> legal_pb2.LegalMatter.ValueType:
    value = _MATTERS.get(f"legal_matter_{code}")
    if value is None:
        raise ApplicationError(
            "request_referral: unknown legal matter",
            type=contract.ERR_INVALID,
            non_retryable=True,
        )
    return value


class LegalActivities(SectorActivities):
    sector: ClassVar[Sector] = Sector.LEGAL

    def __init__(
        self, stub: legal_pb2_grpc.LegalAidServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

    @activity.defn(name=contract.LEGAL_REQUEST_REFERRAL)
    async def request_referral(self, request: ReferralRequest) -> ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.LEGAL_REMIND_PROVIDER)
    async def remind_provider(self, reminder: ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.LEGAL_CLOSE_REFERRAL)
    async def close_referral(self, closure: ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.LEGAL_PURGE_CASE)
    async def purge_case(self, purge: CasePurge) -> PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> common_pb2.Referral:
        needs = request.legal or LegalNeeds()
        reply = await self.stub.RequestLegalAid(
            legal_pb2.RequestLegalAidRequest(
                case_id=request.case_id,
                region=request.region,
                risk=risk_to_pb(Risk(request.risk)),
                needs=legal_pb2.LegalNeeds(
                    matters=[_matter(m) for m in needs.matters],
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
