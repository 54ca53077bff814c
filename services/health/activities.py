"""Health's Temporal activities (task queue masar-health): the journey's
referral steps, each a call to health's own gRPC API — RequestMedicalCare,
RemindProvider, CloseReferral, PurgeCase — as health's service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity

from masar import contract
from masar.referral import NeedCodes, RequestFields, SectorActivities
from masar.referral.messages import timestamp_pb
from masar.v1 import common_pb2, health_pb2

_CARE = NeedCodes(
    health_pb2.CareService,
    prefix="CARE_SERVICE_",
    known=contract.CARE_SERVICES,
    what="kind of care",
)


class HealthActivities(SectorActivities):
    sector: ClassVar[contract.Sector] = contract.Sector.HEALTH

    @activity.defn(name=contract.HEALTH_REQUEST_REFERRAL)
    async def request_referral(self, request: contract.ReferralRequest) -> contract.ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.HEALTH_REMIND_PROVIDER)
    async def remind_provider(self, reminder: contract.ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.HEALTH_CLOSE_REFERRAL)
    async def close_referral(self, closure: contract.ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.HEALTH_PURGE_CASE)
    async def purge_case(self, purge: contract.CasePurge) -> contract.PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: contract.ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.health or contract.HealthNeeds()
        message = health_pb2.RequestMedicalCareRequest(
            needs=health_pb2.HealthNeeds(
                care=_CARE.to_pb(needs.care),
                incident_at=timestamp_pb(needs.incident_at) if needs.incident_at else None,
                languages=needs.languages,
            ),
            **fields,
        )
        reply = await self.stub.RequestMedicalCare(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
