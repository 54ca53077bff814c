"""masar.v1.HealthService: protobuf <-> domain, and a call to the service
layer (services.health.service), nothing else.

Who may call what (every method declares it; anything else is refused): a
coordinator registers care units in her own region; health staff,
coordinators and intake officers list care units; only health's service
identity (its activities, for the journey) requests medical care, with
intake's proof of consent, and reminds, closes and purges; a unit's health
staff (token org = the organisation the unit belongs to) decide, start,
record the care and complete, and read the care records of their
organisation's units — each read is audited. An RPC on one referral is
authorised (`referrals.authorise`) before the rest of its request is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from masar.contract import CARE_SERVICES, FollowUpVisit, HealthNeeds
from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Role
from masar.platform.outbox import DeliveryOutcome
from masar.platform.validation import (
    require_idempotency_key,
    require_organisation_id,
    require_region,
    require_text,
)
from masar.referral import ReferralEndpoints
from masar.referral.messages import (
    code_from_pb,
    code_to_pb,
    delivery_to_pb,
    draft_from_pb,
    from_timestamp_pb,
    referral_to_pb,
    timestamp_pb,
)
from masar.v1 import common_pb2, health_pb2, health_pb2_grpc
from services.health.domain import (
    CareOutcome,
    CareRecord,
    CareUnit,
    CareUnitSpec,
    ClinicalStep,
    StepOutcome,
    check_care,
    check_languages,
    check_needs,
    check_spec,
)
from services.health.service import HealthService

SERVICE_NAME = "masar.v1.HealthService"

CARE = "CARE_SERVICE_"
PEP = "PEP_OUTCOME_"
CONTRACEPTION = "CONTRACEPTION_OUTCOME_"
FORENSIC = "FORENSIC_OUTCOME_"
VISIT = "FOLLOW_UP_VISIT_"
OUTCOME = "CARE_OUTCOME_"

STAFF = Role.HEALTH_STAFF
READERS = (Role.HEALTH_STAFF, Role.COORDINATOR, Role.INTAKE_OFFICER)


def care_from_pb(values: Iterable[int], field: str) -> list[str]:
    codes = [
        code_from_pb(health_pb2.CareService, value, prefix=CARE, field=field) for value in values
    ]
    return check_care(codes, field)


def care_to_pb(codes: Iterable[str]) -> list[health_pb2.CareService.ValueType]:
    """In the contract's order (CARE_SERVICES)."""
    ordered = sorted(codes, key=CARE_SERVICES.index)
    return [code_to_pb(health_pb2.CareService, code, prefix=CARE) for code in ordered]


def time_from_pb(message: Any, name: str) -> datetime:
    """A required Timestamp field of `message`, named in the error when
    unset or out of range."""
    if not message.HasField(name):
        raise InvalidArgument(name, "is required")
    value: Timestamp = getattr(message, name)
    try:
        return from_timestamp_pb(value)
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "is not a valid time") from None


def care_unit_to_pb(unit: CareUnit) -> health_pb2.CareUnit:
    return health_pb2.CareUnit(
        care_unit_id=unit.care_unit_id,
        name=unit.name,
        region=unit.region,
        services=care_to_pb(unit.services),
        languages=sorted(unit.languages),
        created_at=timestamp_pb(unit.created_at),
        organisation_id=unit.organisation_id or "",
    )


_STEP_FIELDS: dict[ClinicalStep, tuple[str, Any, str]] = {
    ClinicalStep.PEP: ("pep", health_pb2.PepOutcome, PEP),
    ClinicalStep.EMERGENCY_CONTRACEPTION: (
        "emergency_contraception",
        health_pb2.ContraceptionOutcome,
        CONTRACEPTION,
    ),
    ClinicalStep.FORENSIC_EXAM: ("forensic_exam", health_pb2.ForensicOutcome, FORENSIC),
}


def record_to_pb(record: CareRecord) -> health_pb2.CareRecord:
    message = health_pb2.CareRecord(
        referral=referral_to_pb(record.referral),
        care=care_to_pb(record.care),
        outcome=code_to_pb(
            health_pb2.CareOutcome, record.outcome.value if record.outcome else None, prefix=OUTCOME
        ),
    )
    for step, (outcome, at) in record.steps.items():
        name, enum_type, prefix = _STEP_FIELDS[step]
        setattr(message, name, code_to_pb(enum_type, outcome.value, prefix=prefix))
        getattr(message, f"{name}_at").CopyFrom(timestamp_pb(at))
    if record.certificate is not None:
        issued_at, itt_days = record.certificate
        message.certificate_issued_at.CopyFrom(timestamp_pb(issued_at))
        message.certificate_itt_days = itt_days
    for visit, at in record.follow_up_visits:
        message.follow_up_visits.append(
            health_pb2.FollowUpVisitDone(
                visit=code_to_pb(health_pb2.FollowUpVisit, visit.value, prefix=VISIT),
                at=timestamp_pb(at),
            )
        )
    for name in ("incident_at", "started_at", "completed_at"):
        value = getattr(record, name)
        if value is not None:
            getattr(message, name).CopyFrom(timestamp_pb(value))
    return message


def _recorded(record: CareRecord, delivery: DeliveryOutcome) -> health_pb2.RecordCareResponse:
    return health_pb2.RecordCareResponse(
        record=record_to_pb(record), delivery=delivery_to_pb(delivery)
    )


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, service: HealthService) -> None:
        self.service = service
        self.referrals = service.referrals
        self.shared = ReferralEndpoints(service.referrals)

    # -- care units --

    @requires(Role.COORDINATOR)
    async def CreateCareUnit(
        self, request: health_pb2.CreateCareUnitRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.CreateCareUnitResponse:
        region = self.referrals.require_own_region(require_region(request.region), "care units")
        spec = check_spec(
            CareUnitSpec(
                name=require_text(request.name, "name"),
                region=region,
                services=frozenset(care_from_pb(request.services, "services")),
                languages=check_languages(request.languages, "languages"),
                organisation_id=require_organisation_id(request.organisation_id),
            )
        )
        unit = await self.service.create_care_unit(
            spec,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        return health_pb2.CreateCareUnitResponse(care_unit=care_unit_to_pb(unit))

    @requires(*READERS)
    async def ListCareUnits(
        self, request: health_pb2.ListCareUnitsRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.ListCareUnitsResponse:
        region = require_region(request.region) if request.region else None
        service = care_from_pb([request.service], "service")[0] if request.service else None
        units = await self.service.list_care_units(region=region, service=service)
        return health_pb2.ListCareUnitsResponse(care_units=[care_unit_to_pb(u) for u in units])

    # -- medical referrals --

    @requires(Role.SERVICE_HEALTH)
    async def RequestMedicalCare(
        self, request: health_pb2.RequestMedicalCareRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.RequestMedicalCareResponse:
        incident_at = None
        if request.needs.HasField("incident_at"):
            try:
                incident_at = from_timestamp_pb(request.needs.incident_at)
            except (ValueError, OverflowError):
                raise InvalidArgument("needs.incident_at", "is not a valid time") from None
        needs = check_needs(
            HealthNeeds(
                care=care_from_pb(request.needs.care, "needs.care"),
                incident_at=incident_at,
                languages=sorted(set(request.needs.languages)),
            )
        )
        draft = draft_from_pb(request, needs)
        record = await self.service.request_care(draft, consent_proof=request.consent_proof)
        return health_pb2.RequestMedicalCareResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def StartCare(
        self, request: health_pb2.StartCareRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.StartCareResponse:
        referral = await self.referrals.authorise(request.referral_id)
        record, delivery = await self.service.start(
            referral.referral_id,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return health_pb2.StartCareResponse(
            record=record_to_pb(record), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def RecordPep(
        self, request: health_pb2.RecordPepRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.RecordCareResponse:
        return await self._step(request, ClinicalStep.PEP)

    @requires(STAFF)
    async def RecordEmergencyContraception(
        self,
        request: health_pb2.RecordEmergencyContraceptionRequest,
        context: grpc.aio.ServicerContext,
    ) -> health_pb2.RecordCareResponse:
        return await self._step(request, ClinicalStep.EMERGENCY_CONTRACEPTION)

    @requires(STAFF)
    async def RecordForensicExam(
        self, request: health_pb2.RecordForensicExamRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.RecordCareResponse:
        return await self._step(request, ClinicalStep.FORENSIC_EXAM)

    async def _step(
        self,
        request: health_pb2.RecordPepRequest
        | health_pb2.RecordEmergencyContraceptionRequest
        | health_pb2.RecordForensicExamRequest,
        step: ClinicalStep,
    ) -> health_pb2.RecordCareResponse:
        referral = await self.referrals.authorise(request.referral_id)
        _, enum_type, prefix = _STEP_FIELDS[step]
        outcome = StepOutcome(
            code_from_pb(enum_type, request.outcome, prefix=prefix, field="outcome")
        )
        at = time_from_pb(request, "at")
        record, delivery = await self.service.record_step(
            referral.referral_id,
            step,
            outcome,
            at=at,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return _recorded(record, delivery)

    @requires(STAFF)
    async def IssueCertificate(
        self, request: health_pb2.IssueCertificateRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.RecordCareResponse:
        referral = await self.referrals.authorise(request.referral_id)
        issued_at = time_from_pb(request, "issued_at")
        record, delivery = await self.service.issue_certificate(
            referral.referral_id,
            issued_at=issued_at,
            itt_days=request.itt_days,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return _recorded(record, delivery)

    @requires(STAFF)
    async def RecordFollowUpVisit(
        self, request: health_pb2.RecordFollowUpVisitRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.RecordCareResponse:
        referral = await self.referrals.authorise(request.referral_id)
        visit = FollowUpVisit(
            code_from_pb(health_pb2.FollowUpVisit, request.visit, prefix=VISIT, field="visit")
        )
        at = time_from_pb(request, "at")
        record, delivery = await self.service.record_follow_up_visit(
            referral.referral_id,
            visit,
            at=at,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return _recorded(record, delivery)

    @requires(STAFF)
    async def CompleteCare(
        self, request: health_pb2.CompleteCareRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.CompleteCareResponse:
        referral = await self.referrals.authorise(request.referral_id)
        outcome = CareOutcome(
            code_from_pb(health_pb2.CareOutcome, request.outcome, prefix=OUTCOME, field="outcome")
        )
        record, delivery = await self.service.complete(
            referral.referral_id,
            outcome,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return health_pb2.CompleteCareResponse(
            record=record_to_pb(record), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def GetCareRecord(
        self, request: health_pb2.GetCareRecordRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.GetCareRecordResponse:
        referral = await self.referrals.authorise(request.referral_id)
        record = await self.service.care_record(referral.referral_id)
        return health_pb2.GetCareRecordResponse(record=record_to_pb(record))

    # -- the handshake every sector shares (common.proto): ReferralEndpoints --

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)

    @requires(STAFF, Role.COORDINATOR, Role.SERVICE_HEALTH)
    async def GetReferral(
        self, request: common_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GetReferralResponse:
        return await self.shared.get(request)

    @requires(STAFF, Role.COORDINATOR)
    async def ListReferrals(
        self, request: common_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListReferralsResponse:
        return await self.shared.list(request)

    @requires(Role.SERVICE_HEALTH)
    async def RemindProvider(
        self, request: common_pb2.RemindProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RemindProviderResponse:
        return await self.shared.remind(request)

    @requires(Role.SERVICE_HEALTH)
    async def CloseReferral(
        self, request: common_pb2.CloseReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.CloseReferralResponse:
        return await self.shared.close(request)

    @requires(Role.SERVICE_HEALTH)
    async def PurgeCase(
        self, request: common_pb2.PurgeCaseRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeCaseResponse:
        return await self.shared.purge(request)
