"""Employment's Temporal activities (task queue masar-employment): the
journey's referral steps, each a call to employment's own gRPC API —
RequestEnrolment, RemindProvider, CloseReferral, PurgeCase — as employment's
service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity

from masar import contract
from masar.referral import NeedCodes, RequestFields, SectorActivities
from masar.v1 import common_pb2, employment_pb2

_KINDS = NeedCodes(
    employment_pb2.ProgrammeKind,
    prefix="PROGRAMME_KIND_",
    known=contract.PROGRAMME_KINDS,
    what="programme kind",
)


class EmploymentActivities(SectorActivities):
    sector: ClassVar[contract.Sector] = contract.Sector.EMPLOYMENT

    @activity.defn(name=contract.EMPLOYMENT_REQUEST_REFERRAL)
    async def request_referral(self, request: contract.ReferralRequest) -> contract.ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.EMPLOYMENT_REMIND_PROVIDER)
    async def remind_provider(self, reminder: contract.ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.EMPLOYMENT_CLOSE_REFERRAL)
    async def close_referral(self, closure: contract.ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.EMPLOYMENT_PURGE_CASE)
    async def purge_case(self, purge: contract.CasePurge) -> contract.PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: contract.ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.employment or contract.EmploymentNeeds()
        interests = _KINDS.to_pb(needs.interests)
        message = employment_pb2.RequestEnrolmentRequest(
            needs=employment_pb2.EmploymentNeeds(interests=interests, languages=needs.languages),
            **fields,
        )
        reply = await self.stub.RequestEnrolment(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
