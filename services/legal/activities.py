"""Legal aid's Temporal activities: the journey's referral steps, each a call
to legal aid's own gRPC API (so every step crosses the service boundary and is
traced). Business refusals become non-retryable ApplicationErrors with the
contract's types (masar.referral.activity_error)."""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import LegalNeeds, ReferralRequest, Risk, Sector
from masar.referral import ConsentSource, ReferralActivities, risk_to_pb
from masar.v1 import legal_pb2, legal_pb2_grpc

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


class LegalActivities(ReferralActivities):
    """legal.request_referral, .remind_provider, .close_referral, .purge_case."""

    sector: ClassVar[Sector] = Sector.LEGAL

    def __init__(
        self, stub: legal_pb2_grpc.LegalAidServiceStub, consent: ConsentSource | None = None
    ) -> None:
        super().__init__(stub, consent)

    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> Any:
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
        return reply.referral
