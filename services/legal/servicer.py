"""masar.v1.LegalAidService: protobuf <-> domain, and a call to the service
layer (services.legal.service), nothing else.

Who may call what (every method declares it; anything else is refused):
a coordinator registers providers in her own region; legal aid staff,
coordinators and intake officers list providers; only legal aid's service
identity (its activities, for the journey) requests legal aid, with intake's
proof of consent, and reminds, closes and purges; a provider's staff (token
org = the organisation the provider belongs to) decide, record meetings,
orders, hearings and outcomes, and read the legal file, of the referrals
addressed to their organisation — each read of the file is audited. An RPC
on one referral is authorised (`referrals.authorise`) before the rest of its
request is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Role
from masar.platform.paging import decode_page_token, encode_page_token
from masar.platform.validation import (
    require_idempotency_key,
    require_organisation_id,
    require_region,
    require_text,
)
from masar.referral import ReferralEndpoints
from masar.referral.messages import (
    delivery_to_pb,
    draft_from_pb,
    page_size_from_pb,
    referral_to_pb,
    timestamp_pb,
)
from masar.v1 import common_pb2, legal_pb2, legal_pb2_grpc
from services.legal import domain as d
from services.legal.repository import derived_id
from services.legal.service import LegalAidService

SERVICE_NAME = "masar.v1.LegalAidService"

ORDER_ID_PREFIX = "po"
HEARING_ID_PREFIX = "hr"
_ORDER_ID = re.compile(rf"^{ORDER_ID_PREFIX}-[0-9a-f]{{16}}$")
_HEARING_ID = re.compile(rf"^{HEARING_ID_PREFIX}-[0-9a-f]{{16}}$")

E = TypeVar("E", bound=Enum)


# --- conversions ---------------------------------------------------------------------


def enum_from_pb(pb_enum: Any, prefix: str, domain: type[E], value: int, field: str) -> E | None:
    """A protobuf enum number as the domain enum of the same member name; None
    for UNSPECIFIED; INVALID_ARGUMENT for a number this build does not know."""
    if value == 0:
        return None
    try:
        name = pb_enum.Name(value)
    except ValueError:
        raise InvalidArgument(field, "is not a known value") from None
    return domain[name.removeprefix(prefix)]


def require_enum(pb_enum: Any, prefix: str, domain: type[E], value: int, field: str) -> E:
    member = enum_from_pb(pb_enum, prefix, domain, value, field)
    if member is None:
        raise InvalidArgument(field, "is required")
    return member


def enum_to_pb(pb_enum: Any, prefix: str, member: Enum | None) -> Any:
    return 0 if member is None else pb_enum.Value(f"{prefix}{member.name}")


def _matter(value: int, field: str) -> d.LegalMatter:
    return require_enum(legal_pb2.LegalMatter, "LEGAL_MATTER_", d.LegalMatter, value, field)


def _matters(values: Iterable[int], field: str) -> list[d.LegalMatter]:
    return d.check_matters([_matter(v, f"{field}[{i}]") for i, v in enumerate(values)], field)


def _time(message: Any, name: str, *, required: bool = True) -> datetime | None:
    if not message.HasField(name):
        if required:
            raise InvalidArgument(name, "is required")
        return None
    value: Timestamp = getattr(message, name)
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "is not a valid timestamp") from None


def _required_time(message: Any, name: str) -> datetime:
    value = _time(message, name)
    assert value is not None
    return value


def _set_time(message: Any, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, name).CopyFrom(timestamp_pb(value))


def certificate_to_pb(certificate: d.MedicalCertificate) -> legal_pb2.MedicalCertificate:
    return legal_pb2.MedicalCertificate(
        issued_at=timestamp_pb(certificate.issued_at),
        itt_days=certificate.itt_days,
        itt_over_20_days=certificate.itt_over_20_days,
    )


def provider_to_pb(provider: d.Provider) -> legal_pb2.LegalProvider:
    return legal_pb2.LegalProvider(
        provider_id=provider.provider_id,
        kind=enum_to_pb(legal_pb2.LegalProviderKind, "LEGAL_PROVIDER_KIND_", provider.kind),
        name=provider.name,
        region=provider.region,
        languages=provider.languages,
        matters=[enum_to_pb(legal_pb2.LegalMatter, "LEGAL_MATTER_", m) for m in provider.matters],
        created_at=timestamp_pb(provider.created_at),
        open_referrals=provider.open_referrals,
        organisation_id=provider.organisation_id or "",
    )


def matter_to_pb(record: d.MatterRecord) -> legal_pb2.LegalMatterRecord:
    message = legal_pb2.LegalMatterRecord(
        matter=enum_to_pb(legal_pb2.LegalMatter, "LEGAL_MATTER_", record.matter),
        status=enum_to_pb(legal_pb2.MatterStatus, "MATTER_STATUS_", record.status),
        opened_at=timestamp_pb(record.opened_at),
        outcome=enum_to_pb(legal_pb2.MatterOutcome, "MATTER_OUTCOME_", record.outcome),
    )
    _set_time(message, "closed_at", record.closed_at)
    return message


def order_to_pb(order: d.ProtectionOrder) -> legal_pb2.ProtectionOrder:
    message = legal_pb2.ProtectionOrder(
        order_id=order.order_id,
        referral_id=order.referral_id,
        measure=enum_to_pb(legal_pb2.ProtectionMeasure, "PROTECTION_MEASURE_", order.measure),
        status=enum_to_pb(
            legal_pb2.ProtectionOrderStatus, "PROTECTION_ORDER_STATUS_", order.status
        ),
        requested_at=timestamp_pb(order.requested_at),
        breaches=order.breaches,
        updated_at=timestamp_pb(order.updated_at),
    )
    _set_time(message, "decided_at", order.decided_at)
    _set_time(message, "effective_until", order.effective_until)
    _set_time(message, "breached_at", order.breached_at)
    return message


def hearing_to_pb(hearing: d.Hearing) -> legal_pb2.Hearing:
    return legal_pb2.Hearing(
        hearing_id=hearing.hearing_id,
        referral_id=hearing.referral_id,
        matter=enum_to_pb(legal_pb2.LegalMatter, "LEGAL_MATTER_", hearing.matter),
        court=enum_to_pb(legal_pb2.CourtLevel, "COURT_LEVEL_", hearing.court),
        kind=enum_to_pb(legal_pb2.HearingKind, "HEARING_KIND_", hearing.kind),
        status=enum_to_pb(legal_pb2.HearingStatus, "HEARING_STATUS_", hearing.status),
        scheduled_at=timestamp_pb(hearing.scheduled_at),
        note=hearing.note or "",
        updated_at=timestamp_pb(hearing.updated_at),
    )


# --- servicer ------------------------------------------------------------------------


STAFF = Role.LEGAL_AID
READERS = (Role.LEGAL_AID, Role.COORDINATOR, Role.INTAKE_OFFICER)


class LegalAidServicer(legal_pb2_grpc.LegalAidServiceServicer):
    def __init__(self, service: LegalAidService) -> None:
        self.service = service
        self.referrals = service.referrals
        self.shared = ReferralEndpoints(service.referrals)

    # -- providers --

    @requires(Role.COORDINATOR)
    async def CreateProvider(
        self, request: legal_pb2.CreateLegalProviderRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.CreateLegalProviderResponse:
        region = self.referrals.require_own_region(require_region(request.region), "providers")
        spec = d.NewProvider(
            kind=require_enum(
                legal_pb2.LegalProviderKind,
                "LEGAL_PROVIDER_KIND_",
                d.ProviderKind,
                request.kind,
                "kind",
            ),
            name=require_text(request.name, "name", max_length=d.MAX_NAME_LENGTH),
            region=region,
            languages=tuple(d.check_languages(request.languages, "languages", required=True)),
            matters=tuple(_matters(request.matters, "matters")),
            organisation_id=require_organisation_id(request.organisation_id),
        )
        provider = await self.service.create_provider(
            spec,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        return legal_pb2.CreateLegalProviderResponse(provider=provider_to_pb(provider))

    @requires(*READERS)
    async def ListProviders(
        self, request: legal_pb2.ListLegalProvidersRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.ListLegalProvidersResponse:
        region = require_region(request.region) if request.region else None
        matter = enum_from_pb(
            legal_pb2.LegalMatter, "LEGAL_MATTER_", d.LegalMatter, request.matter, "matter"
        )
        language = d.check_language(request.language, "language") if request.language else None
        kind = enum_from_pb(
            legal_pb2.LegalProviderKind,
            "LEGAL_PROVIDER_KIND_",
            d.ProviderKind,
            request.kind,
            "kind",
        )
        size = page_size_from_pb(request.page_size)
        after = decode_page_token(request.page_token) if request.page_token else None
        providers = await self.service.list_providers(
            region=region, matter=matter, language=language, kind=kind, after=after, limit=size + 1
        )
        token = ""
        if len(providers) > size:
            providers = providers[:size]
            token = encode_page_token(providers[-1].created_at, providers[-1].provider_id)
        return legal_pb2.ListLegalProvidersResponse(
            providers=[provider_to_pb(p) for p in providers], next_page_token=token
        )

    # -- the referral --

    @requires(Role.SERVICE_LEGAL)
    async def RequestLegalAid(
        self, request: legal_pb2.RequestLegalAidRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.RequestLegalAidResponse:
        if not request.HasField("needs"):
            raise InvalidArgument("needs", "is required")
        needs = d.AidNeeds(
            matters=tuple(_matters(request.needs.matters, "needs.matters")),
            languages=tuple(d.check_languages(request.needs.languages, "needs.languages")),
        )
        draft = draft_from_pb(request, needs)
        file = await self.service.request_legal_aid(draft, consent_proof=request.consent_proof)
        return legal_pb2.RequestLegalAidResponse(
            referral=referral_to_pb(file.referral), matters=[matter_to_pb(m) for m in file.matters]
        )

    @requires(STAFF)
    async def RecordFirstMeeting(
        self, request: legal_pb2.RecordFirstMeetingRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.RecordFirstMeetingResponse:
        referral = await self.referrals.authorise(request.referral_id)
        met_at = d.check_past(_required_time(request, "met_at"), "met_at")
        record, delivery = await self.service.record_first_meeting(
            referral.referral_id,
            met_at,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return legal_pb2.RecordFirstMeetingResponse(
            referral=referral_to_pb(record), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def RecordProtectionOrder(
        self, request: legal_pb2.RecordProtectionOrderRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.RecordProtectionOrderResponse:
        referral_id = (await self.referrals.authorise(request.referral_id)).referral_id
        measure = enum_from_pb(
            legal_pb2.ProtectionMeasure,
            "PROTECTION_MEASURE_",
            d.ProtectionMeasure,
            request.measure,
            "measure",
        )
        status = require_enum(
            legal_pb2.ProtectionOrderStatus,
            "PROTECTION_ORDER_STATUS_",
            d.ProtectionOrderStatus,
            request.status,
            "status",
        )
        at = _required_time(request, "at")
        effective_until = _time(request, "effective_until", required=False)
        key = require_idempotency_key(request.idempotency_key)
        if request.order_id:
            if not _ORDER_ID.match(request.order_id):
                raise InvalidArgument("order_id", "is not a protection order id")
            order_id = request.order_id
        else:
            if measure is None:
                raise InvalidArgument("measure", "is required for a new order")
            order_id = derived_id(ORDER_ID_PREFIX, referral_id, key)
        order = await self.service.record_protection_order(
            referral_id,
            order_id=order_id,
            new=not request.order_id,
            measure=measure,
            status=status,
            at=at,
            effective_until=effective_until,
            idempotency_key=key,
            request_print=request_fingerprint(request),
        )
        return legal_pb2.RecordProtectionOrderResponse(order=order_to_pb(order))

    @requires(STAFF)
    async def RecordHearing(
        self, request: legal_pb2.RecordHearingRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.RecordHearingResponse:
        referral_id = (await self.referrals.authorise(request.referral_id)).referral_id
        matter = enum_from_pb(
            legal_pb2.LegalMatter, "LEGAL_MATTER_", d.LegalMatter, request.matter, "matter"
        )
        court = enum_from_pb(
            legal_pb2.CourtLevel, "COURT_LEVEL_", d.CourtLevel, request.court, "court"
        )
        kind = enum_from_pb(
            legal_pb2.HearingKind, "HEARING_KIND_", d.HearingKind, request.kind, "kind"
        )
        status = enum_from_pb(
            legal_pb2.HearingStatus, "HEARING_STATUS_", d.HearingStatus, request.status, "status"
        )
        scheduled_at = _time(request, "scheduled_at", required=False)
        note = d.check_note(request.note)
        key = require_idempotency_key(request.idempotency_key)
        if request.hearing_id:
            if not _HEARING_ID.match(request.hearing_id):
                raise InvalidArgument("hearing_id", "is not a hearing id")
            if status is None:
                raise InvalidArgument("status", "is required to update a hearing")
            hearing_id = request.hearing_id
        else:
            if matter is None:
                raise InvalidArgument("matter", "is required for a new hearing")
            if court is None:
                raise InvalidArgument("court", "is required for a new hearing")
            if kind is None:
                raise InvalidArgument("kind", "is required for a new hearing")
            if scheduled_at is None:
                raise InvalidArgument("scheduled_at", "is required for a new hearing")
            status = status or d.HearingStatus.SCHEDULED
            if status not in (d.HearingStatus.SCHEDULED, d.HearingStatus.HELD):
                raise InvalidArgument("status", "a new hearing must be SCHEDULED or HELD")
            if status is d.HearingStatus.HELD:
                d.check_past(scheduled_at, "scheduled_at")
            hearing_id = derived_id(HEARING_ID_PREFIX, referral_id, key)
        hearing = await self.service.record_hearing(
            referral_id,
            hearing_id=hearing_id,
            new=not request.hearing_id,
            matter=matter,
            court=court,
            kind=kind,
            status=status,
            scheduled_at=scheduled_at,
            note=note,
            idempotency_key=key,
            request_print=request_fingerprint(request),
        )
        return legal_pb2.RecordHearingResponse(hearing=hearing_to_pb(hearing))

    @requires(STAFF)
    async def CloseMatter(
        self, request: legal_pb2.CloseMatterRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.CloseMatterResponse:
        referral = await self.referrals.authorise(request.referral_id)
        matter = _matter(request.matter, "matter")
        outcome = require_enum(
            legal_pb2.MatterOutcome, "MATTER_OUTCOME_", d.MatterOutcome, request.outcome, "outcome"
        )
        closed_at = d.check_past(_required_time(request, "closed_at"), "closed_at")
        file, delivery = await self.service.close_matter(
            referral.referral_id,
            matter,
            outcome=outcome,
            closed_at=closed_at,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        response = legal_pb2.CloseMatterResponse(
            referral=referral_to_pb(file.referral),
            delivery=common_pb2.DELIVERY_STATE_UNSPECIFIED
            if delivery is None
            else delivery_to_pb(delivery),
        )
        record = next((m for m in file.matters if m.matter is matter), None)
        if record is not None:
            response.matter.CopyFrom(matter_to_pb(record))
        return response

    @requires(STAFF)
    async def GetLegalFile(
        self, request: legal_pb2.GetLegalFileRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.GetLegalFileResponse:
        referral = await self.referrals.authorise(request.referral_id)
        file = await self.service.legal_file(referral.referral_id)
        response = legal_pb2.GetLegalFileResponse(
            referral=referral_to_pb(file.referral),
            matters=[matter_to_pb(m) for m in file.matters],
            protection_orders=[order_to_pb(o) for o in file.protection_orders],
            hearings=[hearing_to_pb(h) for h in file.hearings],
            languages=file.languages,
        )
        _set_time(response, "first_meeting_at", file.first_meeting_at)
        if file.certificate is not None:
            response.certificate.CopyFrom(certificate_to_pb(file.certificate))
        return response

    @requires(Role.SERVICE_LEGAL)
    async def NoteCertificate(
        self, request: legal_pb2.NoteCertificateRequest, context: grpc.aio.ServicerContext
    ) -> legal_pb2.NoteCertificateResponse:
        referral_id = self.referrals.check_referral_id(request.referral_id)
        if not request.HasField("issued_at"):
            raise InvalidArgument("issued_at", "is required")
        try:
            issued_at = request.issued_at.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise InvalidArgument("issued_at", "is not a valid time") from None
        file = await self.service.note_certificate(
            referral_id,
            issued_at=issued_at,
            itt_days=request.itt_days,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        response = legal_pb2.NoteCertificateResponse(referral=referral_to_pb(file.referral))
        if file.certificate is not None:
            response.certificate.CopyFrom(certificate_to_pb(file.certificate))
        return response

    # -- the handshake every sector shares (common.proto): ReferralEndpoints --

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)

    @requires(STAFF, Role.COORDINATOR, Role.SERVICE_LEGAL)
    async def GetReferral(
        self, request: common_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GetReferralResponse:
        return await self.shared.get(request)

    @requires(STAFF, Role.COORDINATOR)
    async def ListReferrals(
        self, request: common_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListReferralsResponse:
        return await self.shared.list(request)

    @requires(Role.SERVICE_LEGAL)
    async def RemindProvider(
        self, request: common_pb2.RemindProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RemindProviderResponse:
        return await self.shared.remind(request)

    @requires(Role.SERVICE_LEGAL)
    async def CloseReferral(
        self, request: common_pb2.CloseReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.CloseReferralResponse:
        return await self.shared.close(request)

    @requires(Role.SERVICE_LEGAL)
    async def PurgeCase(
        self, request: common_pb2.PurgeCaseRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeCaseResponse:
        return await self.shared.purge(request)
