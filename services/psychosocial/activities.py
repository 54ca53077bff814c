"""Psychosocial's Temporal activities (task queue masar-psychosocial): the
journey's referral steps, each a call to psychosocial's own gRPC API —
RequestSupport, RemindProvider, CloseReferral, PurgeCase — as psychosocial's
service identity."""

from __future__ import annotations

from typing import ClassVar

from temporalio import activity

from masar import contract
from masar.referral import NeedCodes, RequestFields, SectorActivities
from masar.v1 import common_pb2, psychosocial_pb2

_KINDS = NeedCodes(
    psychosocial_pb2.SupportKind,
    prefix="SUPPORT_KIND_",
    known=contract.SUPPORT_KINDS,
    what="kind of support",
)


class PsychosocialActivities(SectorActivities):
    sector: ClassVar[contract.Sector] = contract.Sector.PSYCHOSOCIAL

    @activity.defn(name=contract.PSYCHOSOCIAL_REQUEST_REFERRAL)
    async def request_referral(self, request: contract.ReferralRequest) -> contract.ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.PSYCHOSOCIAL_REMIND_PROVIDER)
    async def remind_provider(self, reminder: contract.ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.PSYCHOSOCIAL_CLOSE_REFERRAL)
    async def close_referral(self, closure: contract.ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.PSYCHOSOCIAL_PURGE_CASE)
    async def purge_case(self, purge: contract.CasePurge) -> contract.PurgeResult:
        return await self.forward_purge(purge)

    async def submit_request(
        self, request: contract.ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.psychosocial or contract.PsychosocialNeeds()
        message = psychosocial_pb2.RequestSupportRequest(
            needs=psychosocial_pb2.PsychosocialNeeds(
                support=_KINDS.to_pb(needs.support), languages=needs.languages
            ),
            **fields,
        )
        reply = await self.stub.RequestSupport(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
