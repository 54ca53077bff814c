"""masar.v1.LegalAidService: protobuf <-> domain, validation, nothing else.

The handshake RPCs shared by every sector (DecideReferral, GetReferral,
ListReferrals, RemindProvider, CloseReferral, PurgeCase) come from
masar.referral.ReferralRpcs.

Who may call what (every method declares it; anything else is refused):
a coordinator registers providers in her own region; legal aid staff,
coordinators and intake officers list providers; only legal aid's service
identity (its activities, for the journey) requests legal aid, with intake's
proof of consent; a provider's staff (token org = the provider id) record
meetings, orders, hearings and outcomes, and read the legal file, of the
referrals addressed to them — each read of the file is audited.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from masar.contract import Milestone, ReferralStatus, Sector
from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from masar.platform.identity import Role, current_caller, requires
from masar.referral import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ReferralHandshake,
    ReferralRpcs,
    check_provider_id,
    delivery_to_pb,
    fingerprint,
    parse_draft,
    referral_to_pb,
    request_fingerprint,
    require_idempotency_key,
    require_region,
    require_text,
    run_retrying_conflicts,
    timestamp_pb,
    utcnow,
)
from masar.v1 import common_pb2, legal_pb2, legal_pb2_grpc
from services.legal import domain as d
from services.legal.models import LegalReferralRow
from services.legal.repository import (
    FileRepository,
    ProviderRepository,
    derived_id,
    matters_of,
    set_matters,
)

SERVICE_NAME = "masar.v1.LegalAidService"

ORDER_ID_PREFIX = "po"
HEARING_ID_PREFIX = "hr"
_ORDER_ID = re.compile(rf"^{ORDER_ID_PREFIX}-[0-9a-f]{{16}}$")
_HEARING_ID = re.compile(rf"^{HEARING_ID_PREFIX}-[0-9a-f]{{16}}$")
CLOSE_MATTER_SCOPE = "legal.close_matter"

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


def encode_provider_token(provider_id: str) -> str:
    return base64.urlsafe_b64encode(provider_id.encode()).decode().rstrip("=")


def decode_provider_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return check_provider_id(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error, InvalidArgument):
        raise InvalidArgument("page_token", "is malformed") from None


# --- servicer ------------------------------------------------------------------------


STAFF = Role.LEGAL_AID
READERS = (Role.LEGAL_AID, Role.COORDINATOR, Role.INTAKE_OFFICER)


def require_own_region(region: str) -> str:
    """A coordinator manages the reference data of her own region only."""
    if current_caller().region != region:
        raise PermissionDenied("a coordinator registers providers in her own region only")
    return region


class LegalAidServicer(ReferralRpcs, legal_pb2_grpc.LegalAidServiceServicer, sector=Sector.LEGAL):
    def __init__(
        self,
        *,
        handshake: ReferralHandshake[LegalReferralRow, d.AidNeeds],
        providers: ProviderRepository,
        files: FileRepository,
    ) -> None:
        self.handshake = handshake
        self.providers = providers
        self.files = files
        self.database = handshake.database

    # -- providers --

    @requires(Role.COORDINATOR)
    async def CreateProvider(
        self, request: Any, context: Any
    ) -> legal_pb2.CreateLegalProviderResponse:
        region = require_own_region(require_region(request.region))
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
        )
        key = require_idempotency_key(request.idempotency_key)
        print_ = request_fingerprint(request)
        ledger = self.handshake.ledger

        def work(session: Session) -> d.Provider:
            provider_id, _ = ledger.once(
                session,
                scope="legal.create_provider",
                key=key,
                fingerprint=print_,
                create=lambda: self.providers.insert(session, spec),
            )
            return self.providers.get(session, provider_id)

        provider = await run_retrying_conflicts(self.database, work)
        return legal_pb2.CreateLegalProviderResponse(provider=provider_to_pb(provider))

    @requires(*READERS)
    async def ListProviders(
        self, request: Any, context: Any
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
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        size = request.page_size or DEFAULT_PAGE_SIZE
        after = decode_provider_token(request.page_token) if request.page_token else None

        def work(session: Session) -> list[d.Provider]:
            return self.providers.list(
                session,
                region=region,
                matters=[matter] if matter else [],
                language=language,
                kind=kind,
                after=after,
                limit=size + 1,
            )

        providers = await self.database.run(work)
        token = ""
        if len(providers) > size:
            providers = providers[:size]
            token = encode_provider_token(providers[-1].provider_id)
        return legal_pb2.ListLegalProvidersResponse(
            providers=[provider_to_pb(p) for p in providers], next_page_token=token
        )

    # -- the referral --

    @requires(Role.SERVICE_LEGAL)
    async def RequestLegalAid(
        self, request: Any, context: Any
    ) -> legal_pb2.RequestLegalAidResponse:
        if not request.HasField("needs"):
            raise InvalidArgument("needs", "is required")
        needs = d.AidNeeds(
            matters=tuple(_matters(request.needs.matters, "needs.matters")),
            languages=tuple(d.check_languages(request.needs.languages, "needs.languages")),
        )
        draft = parse_draft(
            case_id=request.case_id,
            region=request.region,
            risk=request.risk,
            idempotency_key=request.idempotency_key,
            needs=needs,
            exclude_provider_ids=request.exclude_provider_ids,
            provider_id=request.provider_id,
        )
        self.handshake.require_consent(request.consent_proof, draft.case_id)
        record = await self.handshake.create(draft)
        file = await self._file(record.referral_id)
        return legal_pb2.RequestLegalAidResponse(
            referral=referral_to_pb(record), matters=[matter_to_pb(m) for m in file.matters]
        )

    @requires(STAFF)
    async def RecordFirstMeeting(
        self, request: Any, context: Any
    ) -> legal_pb2.RecordFirstMeetingResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        met_at = d.check_past(_required_time(request, "met_at"), "met_at")
        key = require_idempotency_key(request.idempotency_key)

        def meet(session: Session, row: LegalReferralRow) -> None:
            row.first_meeting_at = met_at

        result = await self.handshake.record_milestone(
            referral_id,
            milestone=Milestone.STARTED,
            idempotency_key=key,
            apply=meet,
            request_print=fingerprint(met_at),
        )
        return legal_pb2.RecordFirstMeetingResponse(
            referral=referral_to_pb(result.referral), delivery=delivery_to_pb(result.delivery)
        )

    @requires(STAFF)
    async def RecordProtectionOrder(
        self, request: Any, context: Any
    ) -> legal_pb2.RecordProtectionOrderResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
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
        existing = request.order_id or None
        if existing is not None:
            if not _ORDER_ID.match(existing):
                raise InvalidArgument("order_id", "is not a protection order id")
            order_id = existing
        else:
            if measure is None:
                raise InvalidArgument("measure", "is required for a new order")
            order_id = derived_id(ORDER_ID_PREFIX, referral_id, key)

        def apply(session: Session, row: LegalReferralRow) -> None:
            now = utcnow()
            if existing is None:
                assert measure is not None
                order = d.open_protection_order(
                    order_id=order_id,
                    referral_id=referral_id,
                    measure=measure,
                    status=status,
                    at=at,
                    effective_until=effective_until,
                    now=now,
                )
            else:
                found = self.files.find_order(session, referral_id, order_id)
                if found is None:
                    raise NotFound("protection order not found")
                if measure is not None and measure is not found.measure:
                    raise InvalidArgument("measure", "cannot change on an existing order")
                order = d.advance_protection_order(
                    found, status=status, at=at, effective_until=effective_until, now=now
                )
            self.files.save_order(session, order)

        await self.handshake.update_local(
            referral_id,
            step="protection_order",
            idempotency_key=key,
            allowed=d.WORKING if existing is None else d.ORDER_FOLLOW_UP,
            apply=apply,
            request_print=request_fingerprint(request),
            wrong_state="the referral is not accepted or in service",
        )
        order = await self.database.run(lambda s: self.files.find_order(s, referral_id, order_id))
        if order is None:  # erased by a purge since
            raise NotFound("protection order not found")
        return legal_pb2.RecordProtectionOrderResponse(order=order_to_pb(order))

    @requires(STAFF)
    async def RecordHearing(self, request: Any, context: Any) -> legal_pb2.RecordHearingResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
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
        existing = request.hearing_id or None
        if existing is not None:
            if not _HEARING_ID.match(existing):
                raise InvalidArgument("hearing_id", "is not a hearing id")
            if status is None:
                raise InvalidArgument("status", "is required to update a hearing")
            hearing_id = existing
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

        def apply(session: Session, row: LegalReferralRow) -> None:
            now = utcnow()
            assert status is not None
            if existing is None:
                assert matter is not None and court is not None and kind is not None
                assert scheduled_at is not None
                if matter not in {m.matter for m in matters_of(row)}:
                    raise InvalidArgument("matter", "is not one of the referral's matters")
                hearing = d.Hearing(
                    hearing_id=hearing_id,
                    referral_id=referral_id,
                    matter=matter,
                    court=court,
                    kind=kind,
                    status=status,
                    scheduled_at=scheduled_at,
                    updated_at=now,
                    note=note,
                )
            else:
                found = self.files.find_hearing(session, referral_id, hearing_id)
                if found is None:
                    raise NotFound("hearing not found")
                for name, value in (("matter", matter), ("court", court), ("kind", kind)):
                    if value is not None and value is not getattr(found, name):
                        raise InvalidArgument(name, "cannot change on an existing hearing")
                hearing = d.advance_hearing(
                    found, status=status, scheduled_at=scheduled_at, note=note, now=now
                )
            self.files.save_hearing(session, hearing)

        await self.handshake.update_local(
            referral_id,
            step="hearing",
            idempotency_key=key,
            allowed=d.WORKING,
            apply=apply,
            request_print=request_fingerprint(request),
            wrong_state="the referral is not accepted or in service",
        )
        hearing = await self.database.run(
            lambda s: self.files.find_hearing(s, referral_id, hearing_id)
        )
        if hearing is None:  # erased by a purge since
            raise NotFound("hearing not found")
        return legal_pb2.RecordHearingResponse(hearing=hearing_to_pb(hearing))

    @requires(STAFF)
    async def CloseMatter(self, request: Any, context: Any) -> legal_pb2.CloseMatterResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        matter = _matter(request.matter, "matter")
        outcome = require_enum(
            legal_pb2.MatterOutcome, "MATTER_OUTCOME_", d.MatterOutcome, request.outcome, "outcome"
        )
        closed_at = d.check_past(_required_time(request, "closed_at"), "closed_at")
        key = require_idempotency_key(request.idempotency_key)
        print_ = fingerprint(referral_id, request_fingerprint(request))
        handshake = self.handshake
        ledger = handshake.ledger

        def close(row: LegalReferralRow) -> bool:
            matters = matters_of(row)
            _, last = d.close_matter(matters, matter, outcome=outcome, closed_at=closed_at)
            set_matters(row, matters)
            return last

        def local(session: Session) -> bool:
            """Close the matter here unless it is the last open one: then the
            referral completes, which the journey must hear about (True)."""
            row = handshake.repository.load(session, referral_id, for_update=True)
            if ledger.lookup(session, scope=CLOSE_MATTER_SCOPE, key=key, fingerprint=print_):
                return False  # this key closed it here already
            if ReferralStatus(row.status) is not ReferralStatus.IN_SERVICE:
                # Not ours to judge: the milestone step replays or refuses.
                return True
            matters = matters_of(row)
            _, last = d.close_matter(matters, matter, outcome=outcome, closed_at=closed_at)
            if last:
                return True
            set_matters(row, matters)
            row.updated_at = utcnow()
            ledger.record(
                session,
                scope=CLOSE_MATTER_SCOPE,
                key=key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return False

        completes = await run_retrying_conflicts(self.database, local)
        delivery = common_pb2.DELIVERY_STATE_UNSPECIFIED
        if completes:

            def complete(session: Session, row: LegalReferralRow) -> None:
                if not close(row):
                    raise FailedPrecondition("other matters of the referral are still open")

            result = await handshake.record_milestone(
                referral_id,
                milestone=Milestone.COMPLETED,
                idempotency_key=key,
                detail=outcome.value,
                apply=complete,
                request_print=print_,
            )
            delivery = delivery_to_pb(result.delivery)
        file = await self._file(referral_id)
        record = next((m for m in file.matters if m.matter is matter), None)
        response = legal_pb2.CloseMatterResponse(
            referral=referral_to_pb(file.referral), delivery=delivery
        )
        if record is not None:
            response.matter.CopyFrom(matter_to_pb(record))
        return response

    @requires(STAFF)
    async def GetLegalFile(self, request: Any, context: Any) -> legal_pb2.GetLegalFileResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        repo = self.handshake.repository
        file = await self.handshake.read_file(
            referral_id, lambda s, row: self.files.load(s, repo, referral_id)
        )
        response = legal_pb2.GetLegalFileResponse(
            referral=referral_to_pb(file.referral),
            matters=[matter_to_pb(m) for m in file.matters],
            protection_orders=[order_to_pb(o) for o in file.protection_orders],
            hearings=[hearing_to_pb(h) for h in file.hearings],
            languages=file.languages,
        )
        _set_time(response, "first_meeting_at", file.first_meeting_at)
        return response

    async def _file(self, referral_id: str) -> d.LegalFile:
        repo = self.handshake.repository
        return await self.database.run(lambda s: self.files.load(s, repo, referral_id))
