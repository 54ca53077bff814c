"""masar.v1.EmploymentService: protobuf <-> domain, validation, nothing else.

The handshake RPCs shared by every sector (DecideReferral, GetReferral,
ListReferrals, RemindProvider, CloseReferral, PurgeCase) come from
masar.referral.ReferralRpcs.

Who may call what (every method declares it; anything else is refused):
a coordinator registers programmes in her own region; employment officers,
coordinators and intake officers list programmes; only employment's service
identity (its activities, for the journey) requests enrolments, with intake's
proof of consent; a programme's officers (token org = the programme id)
start, complete and place, and read the enrolments addressed to their
programme — each read is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from masar.contract import EmploymentNeeds, Milestone, ReferralStatus, Sector
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.identity import Role, current_caller, requires
from masar.referral import (
    ReferralHandshake,
    ReferralRpcs,
    code_from_pb,
    code_to_pb,
    delivery_to_pb,
    fingerprint,
    from_timestamp_pb,
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
from masar.v1 import common_pb2, employment_pb2, employment_pb2_grpc
from services.employment.domain import (
    DETAIL_DROPPED_OUT,
    DETAIL_JOB_PLACED,
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
from services.employment.models import EnrolmentRow
from services.employment.repository import ProgrammeRepository, to_enrolment

SERVICE_NAME = "masar.v1.EmploymentService"

KIND = "PROGRAMME_KIND_"
OUTCOME = "TRAINING_OUTCOME_"
EMPLOYER = "EMPLOYER_TYPE_"
CONTRACT = "CONTRACT_TYPE_"


def kind_from_pb(value: int, field: str) -> str:
    return code_from_pb(employment_pb2.ProgrammeKind, value, prefix=KIND, field=field)


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


def require_own_region(region: str) -> str:
    """A coordinator manages the reference data of her own region only."""
    if current_caller().region != region:
        raise PermissionDenied("a coordinator registers programmes in her own region only")
    return region


class EmploymentServicer(
    ReferralRpcs, employment_pb2_grpc.EmploymentServiceServicer, sector=Sector.EMPLOYMENT
):
    def __init__(
        self,
        *,
        handshake: ReferralHandshake[EnrolmentRow, EmploymentNeeds],
        programmes: ProgrammeRepository,
    ) -> None:
        self.handshake = handshake
        self.programmes = programmes
        self.database = handshake.database

    # -- programmes --

    @requires(Role.COORDINATOR)
    async def CreateProgramme(
        self, request: Any, context: Any
    ) -> employment_pb2.CreateProgrammeResponse:
        region = require_own_region(require_region(request.region))
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
            )
        )
        key = require_idempotency_key(request.idempotency_key)
        print_ = request_fingerprint(request)
        ledger = self.handshake.ledger

        def work(session: Session) -> Programme:
            programme_id, _ = ledger.once(
                session,
                scope="employment.create_programme",
                key=key,
                fingerprint=print_,
                create=lambda: self.programmes.insert(session, spec),
            )
            return self.programmes.get(session, programme_id)

        programme = await run_retrying_conflicts(self.database, work)
        return employment_pb2.CreateProgrammeResponse(programme=programme_to_pb(programme))

    @requires(*READERS)
    async def ListProgrammes(
        self, request: Any, context: Any
    ) -> employment_pb2.ListProgrammesResponse:
        region = require_region(request.region) if request.region else None
        kind = kind_from_pb(request.kind, "kind") if request.kind else None
        programmes = await self.database.run(
            lambda s: self.programmes.list(s, region=region, kind=kind)
        )
        return employment_pb2.ListProgrammesResponse(
            programmes=[programme_to_pb(p) for p in programmes]
        )

    # -- enrolments --

    @requires(Role.SERVICE_EMPLOYMENT)
    async def RequestEnrolment(
        self, request: Any, context: Any
    ) -> employment_pb2.RequestEnrolmentResponse:
        interests: list[str] = []
        for value in request.needs.interests:
            kind = kind_from_pb(value, "needs.interests")
            if kind not in interests:
                interests.append(kind)
        needs = check_needs(
            EmploymentNeeds(interests=interests, languages=sorted(set(request.needs.languages)))
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
        return employment_pb2.RequestEnrolmentResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def StartEnrolment(
        self, request: Any, context: Any
    ) -> employment_pb2.StartEnrolmentResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        key = require_idempotency_key(request.idempotency_key)

        def start(session: Session, row: EnrolmentRow) -> None:
            row.started_at = utcnow()

        result = await self.handshake.record_milestone(
            referral_id, milestone=Milestone.STARTED, idempotency_key=key, apply=start
        )
        return employment_pb2.StartEnrolmentResponse(
            enrolment=enrolment_to_pb(await self._enrolment(referral_id)),
            delivery=delivery_to_pb(result.delivery),
        )

    @requires(STAFF)
    async def CompleteTraining(
        self, request: Any, context: Any
    ) -> employment_pb2.CompleteTrainingResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        outcome = TrainingOutcome(
            code_from_pb(
                employment_pb2.TrainingOutcome, request.outcome, prefix=OUTCOME, field="outcome"
            )
        )
        key = require_idempotency_key(request.idempotency_key)

        def finish(session: Session, row: EnrolmentRow) -> None:
            if row.training_outcome is not None:
                raise FailedPrecondition("the training outcome is already recorded")
            row.training_outcome = outcome.value
            row.training_completed_at = utcnow()

        delivery = common_pb2.DELIVERY_STATE_UNSPECIFIED
        if outcome is TrainingOutcome.CERTIFIED:
            # The referral stays open for the job search: nothing for the journey yet.
            await self.handshake.update_local(
                referral_id,
                step="training_completed",
                idempotency_key=key,
                allowed={ReferralStatus.IN_SERVICE},
                apply=finish,
                request_print=outcome.value,
                wrong_state="the enrolment has not started",
            )
        else:
            result = await self.handshake.record_milestone(
                referral_id,
                milestone=Milestone.COMPLETED,
                idempotency_key=key,
                detail=DETAIL_DROPPED_OUT,
                apply=finish,
            )
            delivery = delivery_to_pb(result.delivery)
        return employment_pb2.CompleteTrainingResponse(
            enrolment=enrolment_to_pb(await self._enrolment(referral_id)), delivery=delivery
        )

    @requires(STAFF)
    async def RecordJobPlacement(
        self, request: Any, context: Any
    ) -> employment_pb2.RecordJobPlacementResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
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
        key = require_idempotency_key(request.idempotency_key)

        def place(session: Session, row: EnrolmentRow) -> None:
            row.employer_type = employer.value
            row.contract_type = contract_type.value
            row.placed_at = utcnow()

        result = await self.handshake.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=key,
            detail=DETAIL_JOB_PLACED,
            apply=place,
            request_print=fingerprint(employer, contract_type),
        )
        return employment_pb2.RecordJobPlacementResponse(
            enrolment=enrolment_to_pb(await self._enrolment(referral_id)),
            delivery=delivery_to_pb(result.delivery),
        )

    @requires(STAFF)
    async def GetEnrolment(self, request: Any, context: Any) -> employment_pb2.GetEnrolmentResponse:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        await self.handshake.authorise(referral_id)
        repo = self.handshake.repository
        enrolment = await self.handshake.read_file(
            referral_id, lambda s, row: to_enrolment(repo, row)
        )
        return employment_pb2.GetEnrolmentResponse(enrolment=enrolment_to_pb(enrolment))

    async def _enrolment(self, referral_id: str) -> Enrolment:
        repo = self.handshake.repository
        return await self.database.run(lambda s: to_enrolment(repo, repo.load(s, referral_id)))
