"""masar.v1.PsychosocialService: protobuf <-> domain, and a call to the
service layer (services.psychosocial.service), nothing else.

Who may call what (every method declares it; anything else is refused): a
coordinator registers providers in her own region; psychosocial staff,
coordinators and intake officers list providers; only psychosocial's service
identity (its activities, for the journey) requests support, with intake's
proof of consent, and reminds, closes and purges; a provider's psychosocial
staff (token org = the organisation running it) decide, record sessions,
keep the plan, complete, and read the support files of their
organisation's providers — each read is audited. An RPC on one referral is
authorised (`referrals.authorise`) before the rest of its request is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import grpc
import grpc.aio

from masar.contract import SUPPORT_KINDS, PsychosocialNeeds
from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Role
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
from masar.v1 import common_pb2, psychosocial_pb2, psychosocial_pb2_grpc
from services.psychosocial.domain import (
    Attendance,
    GoalProgress,
    ProviderSpec,
    SupportFile,
    SupportOutcome,
    SupportProvider,
    check_goals,
    check_kinds,
    check_languages,
    check_needs,
    check_spec,
)
from services.psychosocial.service import PsychosocialService

SERVICE_NAME = "masar.v1.PsychosocialService"

KIND = "SUPPORT_KIND_"
ATTENDANCE = "ATTENDANCE_"
GOAL = "SUPPORT_GOAL_"
PROGRESS = "GOAL_PROGRESS_"
OUTCOME = "SUPPORT_OUTCOME_"

STAFF = Role.PSYCHOSOCIAL_STAFF
READERS = (Role.PSYCHOSOCIAL_STAFF, Role.COORDINATOR, Role.INTAKE_OFFICER)


def kinds_from_pb(values: Iterable[int], field: str) -> list[str]:
    codes = [
        code_from_pb(psychosocial_pb2.SupportKind, value, prefix=KIND, field=field)
        for value in values
    ]
    return check_kinds(codes, field)


def kinds_to_pb(codes: Iterable[str]) -> list[psychosocial_pb2.SupportKind.ValueType]:
    """In the contract's order (SUPPORT_KINDS)."""
    ordered = sorted(codes, key=SUPPORT_KINDS.index)
    return [code_to_pb(psychosocial_pb2.SupportKind, c, prefix=KIND) for c in ordered]


def time_from_pb(message: Any, name: str) -> datetime:
    """A required Timestamp field of `message`, named in the error when
    unset or out of range."""
    if not message.HasField(name):
        raise InvalidArgument(name, "is required")
    try:
        return from_timestamp_pb(getattr(message, name))
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "is not a valid time") from None


def provider_to_pb(provider: SupportProvider) -> psychosocial_pb2.SupportProvider:
    return psychosocial_pb2.SupportProvider(
        provider_id=provider.provider_id,
        name=provider.name,
        region=provider.region,
        kinds=kinds_to_pb(provider.kinds),
        languages=sorted(provider.languages),
        created_at=timestamp_pb(provider.created_at),
        organisation_id=provider.organisation_id or "",
    )


def file_to_pb(file: SupportFile) -> psychosocial_pb2.SupportFile:
    message = psychosocial_pb2.SupportFile(
        referral=referral_to_pb(file.referral),
        support=kinds_to_pb(file.support),
        sessions=[
            psychosocial_pb2.Session(
                held_at=timestamp_pb(s.held_at),
                attendance=code_to_pb(
                    psychosocial_pb2.Attendance, s.attendance.value, prefix=ATTENDANCE
                ),
            )
            for s in file.sessions
        ],
        outcome=code_to_pb(
            psychosocial_pb2.SupportOutcome,
            file.outcome.value if file.outcome else None,
            prefix=OUTCOME,
        ),
    )
    for goal in file.plan:
        planned = psychosocial_pb2.PlanGoal(
            goal=code_to_pb(psychosocial_pb2.SupportGoal, goal.goal, prefix=GOAL),
            progress=code_to_pb(
                psychosocial_pb2.GoalProgress, goal.progress.value, prefix=PROGRESS
            ),
        )
        if goal.reviewed_at is not None:
            planned.reviewed_at.CopyFrom(timestamp_pb(goal.reviewed_at))
        message.plan.append(planned)
    for name in ("plan_reviewed_at", "completed_at"):
        value = getattr(file, name)
        if value is not None:
            getattr(message, name).CopyFrom(timestamp_pb(value))
    return message


class PsychosocialServicer(psychosocial_pb2_grpc.PsychosocialServiceServicer):
    def __init__(self, service: PsychosocialService) -> None:
        self.service = service
        self.referrals = service.referrals
        self.shared = ReferralEndpoints(service.referrals)

    # -- providers --

    @requires(Role.COORDINATOR)
    async def CreateSupportProvider(
        self,
        request: psychosocial_pb2.CreateSupportProviderRequest,
        context: grpc.aio.ServicerContext,
    ) -> psychosocial_pb2.CreateSupportProviderResponse:
        region = self.referrals.require_own_region(
            require_region(request.region), "support providers"
        )
        spec = check_spec(
            ProviderSpec(
                name=require_text(request.name, "name"),
                region=region,
                kinds=frozenset(kinds_from_pb(request.kinds, "kinds")),
                languages=check_languages(request.languages, "languages"),
                organisation_id=require_organisation_id(request.organisation_id),
            )
        )
        provider = await self.service.create_provider(
            spec,
            idempotency_key=require_idempotency_key(request.idempotency_key),
            request_print=request_fingerprint(request),
        )
        return psychosocial_pb2.CreateSupportProviderResponse(provider=provider_to_pb(provider))

    @requires(*READERS)
    async def ListSupportProviders(
        self,
        request: psychosocial_pb2.ListSupportProvidersRequest,
        context: grpc.aio.ServicerContext,
    ) -> psychosocial_pb2.ListSupportProvidersResponse:
        region = require_region(request.region) if request.region else None
        kind = kinds_from_pb([request.kind], "kind")[0] if request.kind else None
        providers = await self.service.list_providers(region=region, kind=kind)
        return psychosocial_pb2.ListSupportProvidersResponse(
            providers=[provider_to_pb(p) for p in providers]
        )

    # -- referrals --

    @requires(Role.SERVICE_PSYCHOSOCIAL)
    async def RequestSupport(
        self, request: psychosocial_pb2.RequestSupportRequest, context: grpc.aio.ServicerContext
    ) -> psychosocial_pb2.RequestSupportResponse:
        needs = check_needs(
            PsychosocialNeeds(
                support=kinds_from_pb(request.needs.support, "needs.support"),
                languages=sorted(set(request.needs.languages)),
            )
        )
        draft = draft_from_pb(request, needs)
        record = await self.service.request_support(draft, consent_proof=request.consent_proof)
        return psychosocial_pb2.RequestSupportResponse(referral=referral_to_pb(record))

    @requires(STAFF)
    async def RecordSession(
        self, request: psychosocial_pb2.RecordSessionRequest, context: grpc.aio.ServicerContext
    ) -> psychosocial_pb2.RecordSessionResponse:
        referral = await self.referrals.authorise(request.referral_id)
        held_at = time_from_pb(request, "held_at")
        attendance = Attendance(
            code_from_pb(
                psychosocial_pb2.Attendance,
                request.attendance,
                prefix=ATTENDANCE,
                field="attendance",
            )
        )
        file, delivery = await self.service.record_session(
            referral.referral_id,
            held_at=held_at,
            attendance=attendance,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return psychosocial_pb2.RecordSessionResponse(
            file=file_to_pb(file),
            delivery=common_pb2.DELIVERY_STATE_UNSPECIFIED
            if delivery is None
            else delivery_to_pb(delivery),
        )

    @requires(STAFF)
    async def SetSupportPlan(
        self, request: psychosocial_pb2.SetSupportPlanRequest, context: grpc.aio.ServicerContext
    ) -> psychosocial_pb2.SetSupportPlanResponse:
        referral = await self.referrals.authorise(request.referral_id)
        goals = check_goals(
            code_from_pb(psychosocial_pb2.SupportGoal, value, prefix=GOAL, field="goals")
            for value in request.goals
        )
        file = await self.service.set_support_plan(
            referral.referral_id,
            goals,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return psychosocial_pb2.SetSupportPlanResponse(file=file_to_pb(file))

    @requires(STAFF)
    async def ReviewSupportPlan(
        self,
        request: psychosocial_pb2.ReviewSupportPlanRequest,
        context: grpc.aio.ServicerContext,
    ) -> psychosocial_pb2.ReviewSupportPlanResponse:
        referral = await self.referrals.authorise(request.referral_id)
        reviewed_at = time_from_pb(request, "reviewed_at")
        if not request.reviews:
            raise InvalidArgument("reviews", "at least one is required")
        reviews = [
            (
                code_from_pb(
                    psychosocial_pb2.SupportGoal, review.goal, prefix=GOAL, field="reviews.goal"
                ),
                GoalProgress(
                    code_from_pb(
                        psychosocial_pb2.GoalProgress,
                        review.progress,
                        prefix=PROGRESS,
                        field="reviews.progress",
                    )
                ),
            )
            for review in request.reviews
        ]
        file = await self.service.review_support_plan(
            referral.referral_id,
            reviews,
            reviewed_at=reviewed_at,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return psychosocial_pb2.ReviewSupportPlanResponse(file=file_to_pb(file))

    @requires(STAFF)
    async def CompleteSupport(
        self, request: psychosocial_pb2.CompleteSupportRequest, context: grpc.aio.ServicerContext
    ) -> psychosocial_pb2.CompleteSupportResponse:
        referral = await self.referrals.authorise(request.referral_id)
        outcome = SupportOutcome(
            code_from_pb(
                psychosocial_pb2.SupportOutcome, request.outcome, prefix=OUTCOME, field="outcome"
            )
        )
        file, delivery = await self.service.complete(
            referral.referral_id,
            outcome,
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return psychosocial_pb2.CompleteSupportResponse(
            file=file_to_pb(file), delivery=delivery_to_pb(delivery)
        )

    @requires(STAFF)
    async def GetSupportFile(
        self, request: psychosocial_pb2.GetSupportFileRequest, context: grpc.aio.ServicerContext
    ) -> psychosocial_pb2.GetSupportFileResponse:
        referral = await self.referrals.authorise(request.referral_id)
        file = await self.service.support_file(referral.referral_id)
        return psychosocial_pb2.GetSupportFileResponse(file=file_to_pb(file))

    # -- the handshake every sector shares (common.proto): ReferralEndpoints --

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)

    @requires(STAFF, Role.COORDINATOR, Role.SERVICE_PSYCHOSOCIAL)
    async def GetReferral(
        self, request: common_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GetReferralResponse:
        return await self.shared.get(request)

    @requires(STAFF, Role.COORDINATOR)
    async def ListReferrals(
        self, request: common_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListReferralsResponse:
        return await self.shared.list(request)

    @requires(Role.SERVICE_PSYCHOSOCIAL)
    async def RemindProvider(
        self, request: common_pb2.RemindProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RemindProviderResponse:
        return await self.shared.remind(request)

    @requires(Role.SERVICE_PSYCHOSOCIAL)
    async def CloseReferral(
        self, request: common_pb2.CloseReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.CloseReferralResponse:
        return await self.shared.close(request)

    @requires(Role.SERVICE_PSYCHOSOCIAL)
    async def PurgeCase(
        self, request: common_pb2.PurgeCaseRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeCaseResponse:
        return await self.shared.purge(request)
