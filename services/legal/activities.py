"""Legal aid's Temporal activities (task queue masar-legal): the journey's
referral steps, each a call to legal aid's own gRPC API — RequestLegalAid,
RemindProvider, CloseReferral, PurgeCase — as legal aid's service identity;
and `legal.note_certificate` (NoteCertificate): a medical certificate's date
and ITT days for the legal aid referral."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from temporalio import activity

from masar import contract
from masar.referral import NeedCodes, RequestFields, SectorActivities
from masar.referral.messages import timestamp_pb
from masar.v1 import common_pb2, legal_pb2

_MATTER = "LEGAL_MATTER_"
_MATTERS = NeedCodes(
    legal_pb2.LegalMatter,
    prefix=_MATTER,
    known={name.removeprefix(_MATTER).lower() for name, v in legal_pb2.LegalMatter.items() if v},
    what="legal matter",
)


class LegalActivities(SectorActivities):
    sector: ClassVar[contract.Sector] = contract.Sector.LEGAL

    @activity.defn(name=contract.LEGAL_REQUEST_REFERRAL)
    async def request_referral(self, request: contract.ReferralRequest) -> contract.ReferralCreated:
        return await self.forward_request(request)

    @activity.defn(name=contract.LEGAL_REMIND_PROVIDER)
    async def remind_provider(self, reminder: contract.ProviderReminder) -> None:
        await self.forward_reminder(reminder)

    @activity.defn(name=contract.LEGAL_CLOSE_REFERRAL)
    async def close_referral(self, closure: contract.ReferralClosure) -> None:
        await self.forward_closure(closure)

    @activity.defn(name=contract.LEGAL_PURGE_CASE)
    async def purge_case(self, purge: contract.CasePurge) -> contract.PurgeResult:
        return await self.forward_purge(purge)

    @activity.defn(name=contract.LEGAL_NOTE_CERTIFICATE)
    async def note_certificate(self, notice: contract.CertificateNotice) -> None:
        await self._call(
            "note_certificate",
            self.stub.NoteCertificate(
                legal_pb2.NoteCertificateRequest(
                    referral_id=notice.referral_id,
                    issued_at=timestamp_pb(notice.issued_at),
                    itt_days=notice.itt_days,
                    idempotency_key=notice.idempotency_key,
                ),
                timeout=self.rpc_timeout,
            ),
        )

    def definitions(self) -> list[Callable[..., Awaitable[Any]]]:
        """The four activities every sector has, and the certificate notice."""
        return [*super().definitions(), self.note_certificate]

    async def submit_request(
        self, request: contract.ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        needs = request.legal or contract.LegalNeeds()
        matters = _MATTERS.to_pb(needs.matters)
        message = legal_pb2.RequestLegalAidRequest(
            needs=legal_pb2.LegalNeeds(matters=matters, languages=needs.languages), **fields
        )
        reply = await self.stub.RequestLegalAid(message, timeout=self.rpc_timeout)
        return reply.referral  # type: ignore[no-any-return]
