"""The gRPC edge of the journey API (masar.v1.JourneyService), served by the
intake process beside IntakeService. Protobuf in, services.intake.journey_api
out, and back; errors name the field, never a value.

Who may call what (the service then checks each case's scope, exactly as the
case APIs do): coordinators and the holders' officers and supervisors read,
list and watch journeys; coordinators steer them (reassign, extend, closure
decision); the holders record their changes on the case, through
IntakeService's own handlers (one path per change: the change-with-undo).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC
from typing import Any, TypeAlias, TypeVar

import grpc

from masar import contract as c
from masar.platform.access import requires
from masar.platform.errors import FailedPrecondition, InvalidArgument, MasarError
from masar.platform.identity import Role
from masar.platform.rpc import FIELD_METADATA_KEY, grpc_status
from masar.v1 import common_pb2, intake_pb2, journey_pb2, journey_pb2_grpc
from services.intake.convert import (
    CLINICAL,
    REFERRAL_STATUS,
    RISK,
    RISK_IN,
    SECTOR,
    TRANSFER_REASON,
    TRANSFER_STATUS,
    num,
    optional_enum_in,
    ts,
)
from services.intake.journey_api import Answer, JourneyApi, JourneyRefused
from services.intake.journey_scope import BoardChange, BoardEvent, JourneyFilter, JourneyRow
from services.intake.servicer import IntakeServicer

SERVICE_NAME = "masar.v1.JourneyService"
log = logging.getLogger(__name__)

OFFICER = Role.INTAKE_OFFICER
SUPERVISOR = Role.SUPERVISOR
COORDINATOR = Role.COORDINATOR
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
T = TypeVar("T")

STAGE = {s: journey_pb2.JourneyStage.Value(f"JOURNEY_STAGE_{s.name}") for s in c.Stage}
STAGE_IN: dict[int, c.Stage] = {int(number): stage for stage, number in STAGE.items()}
WINDOW = {
    "OPEN": journey_pb2.CLINICAL_WINDOW_STATUS_OPEN,
    "MET": journey_pb2.CLINICAL_WINDOW_STATUS_MET,
    "MISSED": journey_pb2.CLINICAL_WINDOW_STATUS_MISSED,
    "DECLINED": journey_pb2.CLINICAL_WINDOW_STATUS_DECLINED,
    "CANCELLED": journey_pb2.CLINICAL_WINDOW_STATUS_CANCELLED,
}
BOARD = {
    BoardEvent.ADDED: journey_pb2.JOURNEY_EVENT_KIND_ADDED,
    BoardEvent.CHANGED: journey_pb2.JOURNEY_EVENT_KIND_CHANGED,
    BoardEvent.REMOVED: journey_pb2.JOURNEY_EVENT_KIND_REMOVED,
    BoardEvent.SYNCED: journey_pb2.JOURNEY_EVENT_KIND_SYNCED,
}
VERDICTS = {journey_pb2.CLOSURE_VERDICT_APPROVE: True, journey_pb2.CLOSURE_VERDICT_REFUSE: False}
# The consent scopes that name a sector (a service she may decline).
SCOPE_SECTOR = {
    intake_pb2.CONSENT_SCOPE_SHELTER: common_pb2.SECTOR_SHELTER,
    intake_pb2.CONSENT_SCOPE_LEGAL: common_pb2.SECTOR_LEGAL,
    intake_pb2.CONSENT_SCOPE_EMPLOYMENT: common_pb2.SECTOR_EMPLOYMENT,
}
# How the change-with-undo reports a journey's refusal (services.intake.changes).
_REFUSED_CHANGE = re.compile(r"the case's journey refused this change \((\w+)\)$")


# --- protobuf -> domain ------------------------------------------------------------------


def filter_in(f: journey_pb2.JourneyFilter) -> JourneyFilter:
    before = None
    if f.HasField("next_deadline_before"):
        try:
            before = f.next_deadline_before.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise InvalidArgument("filter.next_deadline_before", "is out of range") from None
    if not 0 <= f.min_escalation_level <= c.LEVEL_REGIONAL:
        raise InvalidArgument("filter.min_escalation_level", "must be between 0 and 3")
    level = max(f.min_escalation_level, c.LEVEL_REMINDER if f.escalated_only else 0)
    return JourneyFilter(
        stage=optional_enum_in(f.stage, STAGE_IN, "filter.stage"),
        region=f.region or None,
        risk=optional_enum_in(f.risk, RISK_IN, "filter.risk"),
        min_escalation_level=level,
        next_deadline_before=before,
    )


# --- domain -> protobuf ------------------------------------------------------------------


def _decline(reason: str | None) -> Any:
    if not reason:
        return common_pb2.DECLINE_REASON_UNSPECIFIED
    try:
        return common_pb2.DeclineReason.Value(f"DECLINE_REASON_{reason}")
    except ValueError:
        return common_pb2.DECLINE_REASON_OTHER


def status_pb(s: c.JourneyStatus) -> journey_pb2.JourneyStatus:
    return journey_pb2.JourneyStatus(
        case_id=s.case_id,
        stage=STAGE[s.stage],
        risk=RISK[s.risk],
        region=s.region,
        referrals=[
            journey_pb2.JourneyReferral(
                sector=SECTOR[r.sector],
                referral_id=r.referral_id,
                provider_id=r.provider_id,
                status=REFERRAL_STATUS[r.status],
                deadline=ts(r.deadline),
                escalation_level=r.escalation_level,
                requested_at=ts(r.requested_at),
                decline_reason=_decline(r.decline_reason),
            )
            for r in s.referrals
        ],
        escalations=[
            journey_pb2.JourneyEscalation(
                wait=e.wait,
                level=e.level,
                at=ts(e.at),
                referral_id=e.referral_id or "",
                sector=num(SECTOR, e.sector),
            )
            for e in s.escalations
        ],
        timeline=[
            journey_pb2.TimelineEvent(
                at=ts(e.at),
                event=e.event,
                sector=num(SECTOR, e.sector),
                referral_id=e.referral_id or "",
                level=e.level or 0,
                detail=e.detail or "",
                actor=e.actor or "",
            )
            for e in s.timeline
        ],
        clinical_windows=[
            journey_pb2.ClinicalWindow(
                item=CLINICAL[w.item],
                deadline=ts(w.deadline),
                status=WINDOW.get(w.status, journey_pb2.CLINICAL_WINDOW_STATUS_UNSPECIFIED),
                escalation_level=w.escalation_level,
            )
            for w in s.clinical_windows
        ],
        escalation_level=s.escalation_level,
        next_deadline=ts(s.next_deadline),
        consents=[SECTOR[x] for x in s.consents],
        closure_requested=s.closure_requested,
        next_follow_up=ts(s.next_follow_up),
        transfers=[
            journey_pb2.JourneyTransfer(
                transfer_id=t.transfer_id,
                from_organisation_id=t.from_organisation_id,
                to_organisation_id=t.to_organisation_id,
                status=TRANSFER_STATUS[t.status],
                deadline=ts(t.deadline),
                escalation_level=t.escalation_level,
                reason=TRANSFER_REASON[t.reason],
                requested_at=ts(t.requested_at),
                decided_at=ts(t.decided_at),
            )
            for t in s.transfers
        ],
        workflow_id=c.journey_workflow_id(s.case_id),
    )


def summary_pb(r: JourneyRow) -> journey_pb2.JourneySummary:
    return journey_pb2.JourneySummary(
        case_id=r.case_id,
        stage=num(STAGE, r.stage),
        risk=num(RISK, r.risk),
        region=r.region,
        escalation_level=r.escalation_level,
        pending_sectors=[SECTOR[x] for x in r.pending_sectors],
        next_deadline=ts(r.next_deadline),
        workflow_id=c.journey_workflow_id(r.case_id),
    )


def event_pb(change: BoardChange) -> journey_pb2.JourneyEvent:
    return journey_pb2.JourneyEvent(
        kind=BOARD[change.kind],
        journey=summary_pb(change.journey) if change.journey is not None else None,
        observed_at=ts(change.at),
    )


def answer_pb(a: Answer) -> journey_pb2.JourneyAnswer:
    return journey_pb2.JourneyAnswer(
        case_id=a.case_id, event_id=a.event_id, stage=num(STAGE, a.stage), duplicate=a.duplicate
    )


async def _change(call: Awaitable[T]) -> T:
    """A holder's change through intake's change-with-undo, its refusal
    worded as the journey API words the journey's refusals."""
    try:
        return await call
    except FailedPrecondition as exc:
        refused = _REFUSED_CHANGE.match(exc.message)
        if refused is None:
            raise
        raise JourneyRefused(refused.group(1)) from None


# --- the servicer ------------------------------------------------------------------------


class JourneyServicer(journey_pb2_grpc.JourneyServiceServicer):
    def __init__(self, api: JourneyApi, intake: IntakeServicer) -> None:
        self._api = api
        self._intake = intake

    @requires(OFFICER, SUPERVISOR, COORDINATOR)
    async def GetJourney(
        self, request: journey_pb2.GetJourneyRequest, context: Context
    ) -> journey_pb2.GetJourneyResponse:
        status = await self._api.get(request.case_id)
        return journey_pb2.GetJourneyResponse(journey=status_pb(status))

    @requires(OFFICER, SUPERVISOR, COORDINATOR)
    async def ListJourneys(
        self, request: journey_pb2.ListJourneysRequest, context: Context
    ) -> journey_pb2.ListJourneysResponse:
        rows, token = await self._api.list_journeys(
            filter_in(request.filter), page_size=request.page_size, page_token=request.page_token
        )
        return journey_pb2.ListJourneysResponse(
            journeys=[summary_pb(r) for r in rows], next_page_token=token or ""
        )

    @requires(OFFICER, SUPERVISOR, COORDINATOR)
    async def WatchJourneys(
        self, request: journey_pb2.WatchJourneysRequest, context: Context
    ) -> AsyncIterator[journey_pb2.JourneyEvent]:
        # The error-mapping interceptor maps unary calls only: streams map here.
        try:
            async for change in self._api.watch(filter_in(request.filter)):
                yield event_pb(change)
        except MasarError as exc:
            if isinstance(exc, InvalidArgument):
                context.set_trailing_metadata(((FIELD_METADATA_KEY, exc.field),))
            await context.abort(grpc_status(exc), exc.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            # The traceback goes to the log; the caller learns nothing of our data.
            log.exception("unhandled error", extra={"rpc": f"/{SERVICE_NAME}/WatchJourneys"})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    # --- coordinators --------------------------------------------------------------------

    @requires(COORDINATOR)
    async def ReassignReferral(
        self, request: journey_pb2.ReassignReferralRequest, context: Context
    ) -> journey_pb2.ReassignReferralResponse:
        answer = await self._api.reassign(
            request.case_id,
            referral_id=request.referral_id,
            provider_id=request.provider_id,
            reason=request.reason,
            key=request.idempotency_key,
        )
        return journey_pb2.ReassignReferralResponse(answer=answer_pb(answer))

    @requires(COORDINATOR)
    async def ExtendDeadline(
        self, request: journey_pb2.ExtendDeadlineRequest, context: Context
    ) -> journey_pb2.ExtendDeadlineResponse:
        answer = await self._api.extend(
            request.case_id,
            target=request.target,
            seconds=request.extend_by_seconds,
            reason=request.reason,
            key=request.idempotency_key,
        )
        return journey_pb2.ExtendDeadlineResponse(answer=answer_pb(answer))

    @requires(COORDINATOR)
    async def DecideClosure(
        self, request: journey_pb2.DecideClosureRequest, context: Context
    ) -> journey_pb2.DecideClosureResponse:
        # Checked once the caller is known to be in the case's scope.
        approve = VERDICTS.get(request.verdict)
        answer = await self._api.decide_closure(
            request.case_id, approve=approve, reason=request.reason, key=request.idempotency_key
        )
        return journey_pb2.DecideClosureResponse(answer=answer_pb(answer))

    # --- the holders' changes: IntakeService's handlers ----------------------------------

    @requires(OFFICER, SUPERVISOR)
    async def ReopenCase(
        self, request: intake_pb2.ReopenCaseRequest, context: Context
    ) -> intake_pb2.ReopenCaseResponse:
        return await _change(self._intake.ReopenCase(request, context))

    @requires(OFFICER, SUPERVISOR)
    async def RecordFollowUp(
        self, request: intake_pb2.RecordFollowUpRequest, context: Context
    ) -> intake_pb2.RecordFollowUpResponse:
        return await _change(self._intake.RecordFollowUp(request, context))

    @requires(OFFICER, SUPERVISOR)
    async def ConfirmMedicalCare(
        self, request: intake_pb2.ConfirmMedicalCareRequest, context: Context
    ) -> intake_pb2.ConfirmMedicalCareResponse:
        return await _change(self._intake.ConfirmMedicalCare(request, context))

    @requires(OFFICER, SUPERVISOR)
    async def ReassessRisk(
        self, request: intake_pb2.ReassessRiskRequest, context: Context
    ) -> intake_pb2.ReassessRiskResponse:
        return await _change(self._intake.ReassessRisk(request, context))

    @requires(OFFICER, SUPERVISOR)
    async def RequestClosure(
        self, request: intake_pb2.RequestClosureRequest, context: Context
    ) -> intake_pb2.RequestClosureResponse:
        return await _change(self._intake.RequestClosure(request, context))

    @requires(OFFICER, SUPERVISOR)
    async def ChangeConsent(
        self, request: journey_pb2.ChangeConsentRequest, context: Context
    ) -> journey_pb2.ChangeConsentResponse:
        if request.scope == intake_pb2.CONSENT_SCOPE_UNSPECIFIED:
            raise InvalidArgument("scope", "is required")
        reply: Any
        change = request.change
        if change == journey_pb2.CONSENT_CHANGE_KIND_GRANT:
            reply = await _change(
                self._intake.RecordConsent(
                    intake_pb2.RecordConsentRequest(
                        case_id=request.case_id,
                        scope=request.scope,
                        idempotency_key=request.idempotency_key,
                    ),
                    context,
                )
            )
        elif change == journey_pb2.CONSENT_CHANGE_KIND_WITHDRAW:
            reply = await _change(
                self._intake.WithdrawConsent(
                    intake_pb2.WithdrawConsentRequest(
                        case_id=request.case_id,
                        scope=request.scope,
                        idempotency_key=request.idempotency_key,
                    ),
                    context,
                )
            )
        elif change == journey_pb2.CONSENT_CHANGE_KIND_DECLINE_SERVICE:
            sector = SCOPE_SECTOR.get(request.scope)
            if sector is None:
                raise InvalidArgument("scope", "must name a service (shelter, legal, employment)")
            reply = await _change(
                self._intake.DeclineService(
                    intake_pb2.DeclineServiceRequest(
                        case_id=request.case_id,
                        sector=sector,
                        idempotency_key=request.idempotency_key,
                    ),
                    context,
                )
            )
        elif change == journey_pb2.CONSENT_CHANGE_KIND_UNSPECIFIED:
            raise InvalidArgument("change", "is required")
        else:
            raise InvalidArgument("change", "is not an accepted value here")
        return journey_pb2.ChangeConsentResponse(
            case=reply.case,
            consent=reply.consent,
            change_id=reply.change_id,
            delivery=reply.delivery,
        )
