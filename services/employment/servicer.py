"""masar.v1.EmploymentService: protobuf <-> domain, and a call to the service
layer (services.employment.service), nothing else.

Who may call what (every method declares it; anything else is refused):
a coordinator registers programmes in her own region; a programme's officers
(token org = the organisation that runs it) and its region's coordinator set
its seats (the programme is authorised, `authorise_programme`, before the
rest of the request is read); employment officers,
coordinators and intake officers list programmes; only employment's service
identity (its activities, for the journey) requests enrolments, with intake's
proof of consent, and reminds, closes and purges; a programme's officers
(token org = the organisation that runs the programme) decide, start,
complete and place, and read the enrolments addressed to their
organisation's programmes — each read is audited. An RPC
on one referral is authorised (`referrals.authorise`) before the rest of its
request is read.
"""

from __future__ import annotations

import grpc
import grpc.aio

from masar.contract import EmploymentNeeds
from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Role
from masar.platform.validation import (
    check_provider_id,
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
from masar.v1 import common_pb2, employment_pb2, employment_pb2_grpc
from services.employment.domain import (
    ContractType,
    EmployerType,
    Enrolment,
    Programme,
    ProgrammeSpec,
    TrainingOutcome,
    check_languages,
    check_needs,
    check_spec,
)
from services.employment.service import EmploymentService

SERVICE_NAME = "masar.v1.EmploymentService"

KIND = "PROGRAMME_KIND_"
OUTCOME = "TRAINING_OUTCOME_"
EMPLOYER = "EMPLOYER_TYPE_"
CONTRACT = "CONTRACT_TYPE_"


def kind_from_pb(value: int, field: str) -> str:
    return code_from_pb(employment_pb2.ProgrammeKind, value, prefix=KIND, field=field)


def require_programme_id(value: str, field: str = "programme_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    return check_provider_id(value, field)


def optional_key(value: str) -> str | None:
    """An optional idempotency key: None when absent, checked when given."""
    return require_idempotency_key(value) if value else None


def programme_to_pb(programme: Programme) -> employment_pb2.Programme:
    return employment_pb2.Programme(
        programme_id=programme.programme_id,
        name=programme.name,
        kind=code_to_pb(employment_pb2.ProgrammeKind, programme.kind, prefix=KIND),
        region=programme.region,
        seats=programme.seats,
        seats_taken=programme.seats_taken,
        seats_free=programme.seats_free,
        start_date=timestamp_pb(programme.start_date),
        languages=sorted(programme.languages),
        created_at=timestamp_pb(programme.created_at),
        organisation_id=programme.organisation_id or "",
    )


def enrolment_to_pb(enrolment: Enrolment) -> employment_pb2.Enrolment:
    message = employment_pb2.Enrolment(
        referral=referral_to_pb(enrolment.referral),
        training_outcome=code_to_pb(
            employment_pb2.TrainingOutcome, enrolment.training_outcome, prefix=OUTCOME
        ),
        employer_type=code_to_pb(
            employment_pb2.EmployerType, enrolment.employer_type, prefix=EMPLOYER
        ),
        contract_type=code_to_pb(
            employment_pb2.ContractType, enrolment.contract_type, prefix=CONTRACT
        ),
    )
    for name in ("started_at", "training_completed_at", "placed_at"):
        value = getattr(enrolment, name)
        if value is not None:
            getattr(message, name).CopyFrom(timestamp_pb(value))
    return message


STAFF = Role.EMPLOYMENT_OFFICER
READERS = (Role.EMPLOYMENT_OFFICER, Role.COORDINATOR, Role.INTAKE_OFFICER)


class EmploymentServicer(employment_pb2_grpc.EmploymentServiceServicer):
    def __init__(self, service: EmploymentService) -> None:
        self.service = service
        self.referrals = service.referrals
        self.shared = ReferralEndpoints(service.referrals)

    # -- programmes --

    @requires(Role.COORDINATOR)
    async def CreateProgramme(
        self, request: employment_pb2.CreateProgrammeRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.CreateProgrammeResponse:
        region = self.referrals.require_own_region(require_region(request.region), "programmes")
        if not request.HasField("start_date"):
            raise InvalidArgument("start_date", "is required")
        spec = check_spec(
            ProgrammeSpec(
                name=require_text(request.name, "name"),
                kind=kind_from_pb(request.kind, "kind"),
                region=region,
                seats=request.seats,
                start_date=from_timestamp_pb(request.start_date),
                languages=check_languages(request.languages, "languages"),
                organisation_id=require_organisation_id(request.organisation_id),
            )
        )
        programme = await self.service.create_programme(
            spec,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        return employment_pb2.CreateProgrammeResponse(programme=programme_to_pb(programme))

    @requires(*READERS)
    async def ListProgrammes(
        self, request: employment_pb2.ListProgrammesRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.ListProgrammesResponse:
        region = require_region(request.region) if request.region else None
        kind = kind_from_pb(request.kind, "kind") if request.kind else None
        programmes = await self.service.list_programmes(region=region, kind=kind)
        return employment_pb2.ListProgrammesResponse(
            programmes=[programme_to_pb(p) for p in programmes]
        )

    @requires(STAFF, Role.COORDINATOR)
    async def SetProgrammeSeats(
        self, request: employment_pb2.SetProgrammeSeatsRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.SetProgrammeSeatsResponse:
        programme = await self.service.authorise_programme(
            require_programme_id(request.programme_id)
        )
        updated = await self.service.set_seats(
            programme.programme_id,
            request.seats,
            idempotency_key=optional_key(request.idempotency_key),
        )
        return employment_pb2.SetProgrammeSeatsResponse(programme=programme_to_pb(updated))

    # -- enrolments --

    @requires(Role.SERVICE_EMPLOYMENT)
    async def RequestEnrolment(
        self, request: employment_pb2.RequestEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.RequestEnrolmentResponse:
        interests: list[str] = []
        for value in request.needs.interests:
            kind = kind_from_pb(value, "needs.interests")
            if kind not in interests:
                interests.append(kind)
        needs = check_needs(
            EmploymentNeeds(interests=interests, languages=sorted(set(request.needs.languages)))
        )
        draft = draft_from_pb(request, needs)
        record = await self.service.request_enrolment(draft, consent_proof=request.consent_proof)
        return employment_pb2.RequestEnrolmentResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def StartEnrolment(
        self, request: employment_pb2.StartEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.StartEnrolmentResponse:
        referral = await self.referrals.authorise(request.referral_id)
        enrolment, delivery = await self.service.start(
            referral.referral_id,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return employment_pb2.StartEnrolmentResponse(
            enrolment=enrolment_to_pb(enrolment), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def CompleteTraining(
        self, request: employment_pb2.CompleteTrainingRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.CompleteTrainingResponse:
        referral = await self.referrals.authorise(request.referral_id)
        outcome = TrainingOutcome(
            code_from_pb(
                employment_pb2.TrainingOutcome, request.outcome, prefix=OUTCOME, field="outcome"
            )
        )
        enrolment, delivery = await self.service.complete_training(
            referral.referral_id,
            outcome,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return employment_pb2.CompleteTrainingResponse(
            enrolment=enrolment_to_pb(enrolment),
            delivery=common_pb2.DELIVERY_STATE_UNSPECIFIED
            if delivery is None
            else delivery_to_pb(delivery),
        )

    @requires(STAFF)
    async def RecordJobPlacement(
        self, request: employment_pb2.RecordJobPlacementRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.RecordJobPlacementResponse:
        referral = await self.referrals.authorise(request.referral_id)
        employer = EmployerType(
            code_from_pb(
                employment_pb2.EmployerType,
                request.employer_type,
                prefix=EMPLOYER,
                field="employer_type",
            )
        )
        contract_type = ContractType(
            code_from_pb(
                employment_pb2.ContractType,
                request.contract_type,
                prefix=CONTRACT,
                field="contract_type",
            )
        )
        enrolment, delivery = await self.service.record_job_placement(
            referral.referral_id,
            employer=employer,
            contract_type=contract_type,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return employment_pb2.RecordJobPlacementResponse(
            enrolment=enrolment_to_pb(enrolment), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def GetEnrolment(
        self, request: employment_pb2.GetEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> employment_pb2.GetEnrolmentResponse:
        referral = await self.referrals.authorise(request.referral_id)
        enrolment = await self.service.enrolment(referral.referral_id)
        return employment_pb2.GetEnrolmentResponse(enrolment=enrolment_to_pb(enrolment))

    # -- the handshake every sector shares (common.proto): ReferralEndpoints --

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)

    @requires(STAFF, Role.COORDINATOR, Role.SERVICE_EMPLOYMENT)
    async def GetReferral(
        self, request: common_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GetReferralResponse:
        return await self.shared.get(request)

    @requires(STAFF, Role.COORDINATOR)
    async def ListReferrals(
        self, request: common_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListReferralsResponse:
        return await self.shared.list(request)

    @requires(Role.SERVICE_EMPLOYMENT)
    async def RemindProvider(
        self, request: common_pb2.RemindProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RemindProviderResponse:
        return await self.shared.remind(request)

    @requires(Role.SERVICE_EMPLOYMENT)
    async def CloseReferral(
        self, request: common_pb2.CloseReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.CloseReferralResponse:
        return await self.shared.close(request)

    @requires(Role.SERVICE_EMPLOYMENT)
    async def PurgeCase(
        self, request: common_pb2.PurgeCaseRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeCaseResponse:
        return await self.shared.purge(request)
