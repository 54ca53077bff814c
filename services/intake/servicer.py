"""The gRPC edge of intake: protobuf in, domain out, and back. Validation of
the message shape (required fields, enum values) happens here; the rules live
in the service (services.intake.service) and the domain; errors name the field
and never echo a value.

Who may call what (every method declares the roles; the service then
checks the scope of each record, services.intake.scope): intake officers and
supervisors register cases and record every change on the cases their
organisation holds, read them and their escalations, and ask, answer and
read transfers (services.intake.servicer_transfers); a care unit's officer
registers cases for another organisation to hold and keeps a follow-up view
of them; coordinators read their region's cases (one elsewhere under an
emergency grant a second person approved), the escalation inbox, and
redirect transfers; emergency grants are services.intake.servicer_grants;
intake's service identity records the journeys' escalations and transfer
rungs; a sector's service identity asks for consent proofs for its own
sector only. Operators call nothing here (health and reflection are open to all).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.identity import Role
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc
from services.intake import domain as d
from services.intake.convert import (
    ANSWER,
    ANSWER_IN,
    CASE_STATUS_IN,
    CHANGE_KIND,
    CHANNEL,
    CHANNEL_IN,
    CLINICAL,
    CLINICAL_IN,
    CLOSURE,
    CLOSURE_IN,
    CONSENT_STATE,
    CONTEXT,
    CONTEXT_IN,
    DELIVERY,
    INDICATOR,
    MATTER,
    MATTER_IN,
    MIGRANT,
    MIGRANT_IN,
    NEED,
    NEED_IN,
    REFERRAL_STATUS,
    RISK,
    RISK_IN,
    SCOPE,
    SCOPE_IN,
    SECTOR,
    SECTOR_IN,
    VIOLENCE,
    VIOLENCE_IN,
    enum_in,
    enums_in,
    escalation_pb,
    num,
    optional_enum_in,
    summary_pb,
    time_in,
    ts,
)
from services.intake.service import PROOF_SECTORS, CaseService, ChangeResult, FollowUpView
from services.intake.servicer_grants import GrantRpcs
from services.intake.servicer_transfers import TransferRpcs
from services.intake.transfers import TransferService

SERVICE_NAME = "masar.v1.IntakeService"


def _checklist(risk: intake_pb2.RiskAssessmentInput, field: str) -> dict[d.Indicator, d.Answer]:
    if not risk.HasField("checklist"):
        raise InvalidArgument(f"{field}.checklist", "is required")
    return {
        indicator: enum_in(
            getattr(risk.checklist, indicator.value),
            ANSWER_IN,
            f"{field}.checklist.{indicator.value}",
            missing="must be answered",
        )
        for indicator in d.Indicator
    }


def _override(risk: intake_pb2.RiskAssessmentInput, field: str) -> d.RiskOverride | None:
    if not risk.HasField("override"):
        return None
    override = risk.override
    if override.level == 0 and not override.reason.strip():
        return None  # an empty override message: none given
    level = enum_in(override.level, RISK_IN, f"{field}.override.level")
    return d.RiskOverride(level=level, reason=override.reason)


def _registration(request: intake_pb2.RegisterCaseRequest) -> d.Registration:
    s = request.survivor
    c = s.contact
    if not request.HasField("incident"):
        raise InvalidArgument("incident", "is required")
    incident = request.incident
    # Kept to the hour by the domain's validation (floored, never refused).
    occurred_at = time_in(incident, "occurred_at", "incident.occurred_at")
    if not request.HasField("risk"):
        raise InvalidArgument("risk", "is required")
    return d.Registration(
        idempotency_key=request.idempotency_key,
        survivor=d.SurvivorProfile(
            region=s.region,
            alias=s.alias or None,
            birth_year=s.birth_year or None,
            nationality=s.nationality or None,
            migrant_status=optional_enum_in(
                s.migrant_status, MIGRANT_IN, "survivor.migrant_status"
            ),
            languages=list(s.languages),
            contact=d.ContactDetails(
                phone=c.phone or None,
                email=c.email or None,
                address=c.address or None,
                safe_contact_instructions=c.safe_contact_instructions or None,
            ),
            accompanying_children=s.accompanying_children,
            interpreter_needed=(s.interpreter_needed if s.HasField("interpreter_needed") else None),
        ),
        incident=d.Incident(
            occurred_at=occurred_at,
            violence_type=enum_in(incident.violence_type, VIOLENCE_IN, "incident.violence_type"),
            contexts=enums_in(incident.contexts, CONTEXT_IN, "incident.contexts"),
            narrative=incident.narrative or None,
        ),
        risk_answers=_checklist(request.risk, "risk"),
        risk_override=_override(request.risk, "risk"),
        needs=enums_in(request.needs, NEED_IN, "needs"),
        accessibility_needs=list(request.household.accessibility_needs),
        legal_matters=enums_in(request.legal_matters, MATTER_IN, "legal_matters"),
        employment_interests=list(request.employment_interests),
        consents=enums_in(request.consents, SCOPE_IN, "consents"),
    )


# --- domain -> protobuf ---------------------------------------------------------------


def assessment_pb(a: d.RiskAssessment) -> intake_pb2.RiskAssessment:
    return intake_pb2.RiskAssessment(
        checklist=intake_pb2.RiskChecklist(**{i.value: ANSWER[v] for i, v in a.answers.items()}),
        score=a.score,
        computed=RISK[a.computed],
        critical_indicators=[INDICATOR[i] for i in a.critical],
        override=(
            intake_pb2.RiskOverride(level=RISK[a.override.level], reason=a.override.reason)
            if a.override
            else None
        ),
        level=RISK[a.level],
        assessed_at=ts(a.assessed_at),
    )


def consent_pb(c: d.ConsentView) -> intake_pb2.Consent:
    return intake_pb2.Consent(
        scope=SCOPE[c.scope], state=CONSENT_STATE[c.state], updated_at=ts(c.updated_at)
    )


def change_pb(c: d.ChangeView) -> intake_pb2.CaseChange:
    return intake_pb2.CaseChange(
        change_id=c.change_id,
        kind=CHANGE_KIND[c.kind],
        recorded_at=ts(c.recorded_at),
        delivery=DELIVERY.get(c.delivery, common_pb2.DELIVERY_STATE_UNSPECIFIED),
        rejected=c.rejected,
        scope=num(SCOPE, c.scope),
        at=ts(c.at),
        clinical_item=num(CLINICAL, c.clinical_item),
        closure_reason=num(CLOSURE, c.closure_reason),
        follow_up_channel=num(CHANNEL, c.channel),
        notes=c.notes or "",
        risk=num(RISK, c.risk),
        transfer_id=c.transfer_id or "",
    )


def case_pb(v: d.CaseView) -> intake_pb2.Case:
    s = v.survivor
    return intake_pb2.Case(
        summary=summary_pb(v.summary),
        survivor=intake_pb2.SurvivorProfile(
            alias=s.alias or "",
            birth_year=s.birth_year or 0,
            nationality=s.nationality or "",
            migrant_status=num(MIGRANT, s.migrant_status),
            languages=s.languages,
            region=s.region,
            contact=intake_pb2.ContactDetails(
                phone=s.contact.phone or "",
                email=s.contact.email or "",
                address=s.contact.address or "",
                safe_contact_instructions=s.contact.safe_contact_instructions or "",
            ),
            accompanying_children=s.accompanying_children,
            interpreter_needed=s.interpreter_needed,
        ),
        incident=intake_pb2.Incident(
            occurred_at=ts(v.incident.occurred_at),
            violence_type=VIOLENCE[v.incident.violence_type],
            contexts=[CONTEXT[c] for c in v.incident.contexts],
            narrative=v.incident.narrative or "",
        ),
        risk_assessment=assessment_pb(v.assessment),
        needs=[NEED[n] for n in v.needs],
        declined=[SECTOR[x] for x in v.declined],
        household=intake_pb2.HouseholdNeeds(accessibility_needs=v.accessibility_needs),
        legal_matters=[MATTER[m] for m in v.legal_matters],
        employment_interests=v.employment_interests,
        consents=[consent_pb(c) for c in v.consents],
        changes=[change_pb(c) for c in v.changes],
    )


def follow_up_case_pb(v: d.CaseView) -> intake_pb2.Case:
    """What a care unit gets back when it registers a case: no personal data."""
    return intake_pb2.Case(
        summary=summary_pb(v.summary),
        risk_assessment=assessment_pb(v.assessment),
        needs=[NEED[n] for n in v.needs],
        declined=[SECTOR[x] for x in v.declined],
        consents=[consent_pb(c) for c in v.consents],
    )


def follow_up_pb(v: FollowUpView) -> intake_pb2.CaseFollowUp:
    return intake_pb2.CaseFollowUp(
        summary=summary_pb(v.summary),
        needs=[NEED[n] for n in v.needs],
        declined=[SECTOR[x] for x in v.declined],
        consents=[consent_pb(c) for c in v.consents],
        referrals=[
            intake_pb2.FollowedReferral(
                sector=SECTOR[r.sector], referral_id=r.referral_id, status=REFERRAL_STATUS[r.status]
            )
            for r in v.referrals
        ],
        referrals_known=v.referrals_known,
    )


def _delivery(result: ChangeResult) -> Any:
    return DELIVERY.get(result.change.delivery, common_pb2.DELIVERY_STATE_UNSPECIFIED)


# --- the servicer ------------------------------------------------------------------------

OFFICER = Role.INTAKE_OFFICER
SUPERVISOR = Role.SUPERVISOR
CARE_UNIT = Role.CARE_UNIT_OFFICER
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class IntakeServicer(TransferRpcs, GrantRpcs, intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, cases: CaseService, transfers: TransferService) -> None:
        super().__init__(transfers)
        self._cases = cases

    @requires(OFFICER, SUPERVISOR, CARE_UNIT)
    async def RegisterCase(
        self, request: intake_pb2.RegisterCaseRequest, context: Context
    ) -> intake_pb2.RegisterCaseResponse:
        registered = await self._cases.register(
            _registration(request), holding_organisation_id=request.holding_organisation_id
        )
        view = follow_up_case_pb if registered.follow_up_only else case_pb
        case = view(registered.case)
        return intake_pb2.RegisterCaseResponse(
            case=case,
            risk_assessment=case.risk_assessment,
            journey_start=(
                common_pb2.DELIVERY_STATE_DELIVERED
                if registered.journey_started
                else common_pb2.DELIVERY_STATE_QUEUED
            ),
            needs_without_consent=[SECTOR[x] for x in registered.needs_without_consent],
        )

    @requires(OFFICER, SUPERVISOR, Role.COORDINATOR)
    async def GetCase(
        self, request: intake_pb2.GetCaseRequest, context: Context
    ) -> intake_pb2.GetCaseResponse:
        return intake_pb2.GetCaseResponse(case=case_pb(await self._cases.get(request.case_id)))

    @requires(OFFICER, SUPERVISOR, CARE_UNIT, Role.COORDINATOR)
    async def GetCaseFollowUp(
        self, request: intake_pb2.GetCaseFollowUpRequest, context: Context
    ) -> intake_pb2.GetCaseFollowUpResponse:
        view = await self._cases.follow_up(request.case_id)
        return intake_pb2.GetCaseFollowUpResponse(follow_up=follow_up_pb(view))

    @requires(OFFICER, SUPERVISOR, CARE_UNIT, Role.COORDINATOR)
    async def ListCases(
        self, request: intake_pb2.ListCasesRequest, context: Context
    ) -> intake_pb2.ListCasesResponse:
        cases, token = await self._cases.list_cases(
            region=request.region or None,
            risk=optional_enum_in(request.risk, RISK_IN, "risk"),
            status=optional_enum_in(request.status, CASE_STATUS_IN, "status"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return intake_pb2.ListCasesResponse(
            cases=[summary_pb(c) for c in cases], next_page_token=token or ""
        )

    @requires(OFFICER, SUPERVISOR)
    async def RecordConsent(
        self, request: intake_pb2.RecordConsentRequest, context: Context
    ) -> intake_pb2.RecordConsentResponse:
        scope = enum_in(request.scope, SCOPE_IN, "scope")
        result = await self._cases.record_consent(request.case_id, scope, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.RecordConsentResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def WithdrawConsent(
        self, request: intake_pb2.WithdrawConsentRequest, context: Context
    ) -> intake_pb2.WithdrawConsentResponse:
        scope = enum_in(request.scope, SCOPE_IN, "scope")
        result = await self._cases.withdraw_consent(request.case_id, scope, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.WithdrawConsentResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def DeclineService(
        self, request: intake_pb2.DeclineServiceRequest, context: Context
    ) -> intake_pb2.DeclineServiceResponse:
        sector = enum_in(request.sector, SECTOR_IN, "sector")
        result = await self._cases.decline_service(request.case_id, sector, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.DeclineServiceResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def ReassessRisk(
        self, request: intake_pb2.ReassessRiskRequest, context: Context
    ) -> intake_pb2.ReassessRiskResponse:
        if not request.HasField("risk"):
            raise InvalidArgument("risk", "is required")
        result = await self._cases.reassess_risk(
            request.case_id,
            _checklist(request.risk, "risk"),
            _override(request.risk, "risk"),
            request.idempotency_key,
        )
        assert result.assessment is not None
        return intake_pb2.ReassessRiskResponse(
            case=summary_pb(result.summary),
            risk_assessment=assessment_pb(result.assessment),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def RecordFollowUp(
        self, request: intake_pb2.RecordFollowUpRequest, context: Context
    ) -> intake_pb2.RecordFollowUpResponse:
        result = await self._cases.record_follow_up(
            request.case_id,
            contacted_at=time_in(request, "contacted_at", "contacted_at"),
            channel=enum_in(request.channel, CHANNEL_IN, "channel"),
            notes=request.notes or None,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RecordFollowUpResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def ConfirmMedicalCare(
        self, request: intake_pb2.ConfirmMedicalCareRequest, context: Context
    ) -> intake_pb2.ConfirmMedicalCareResponse:
        result = await self._cases.confirm_medical_care(
            request.case_id,
            item=enum_in(request.item, CLINICAL_IN, "item"),
            given_at=time_in(request, "given_at", "given_at"),
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.ConfirmMedicalCareResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def RequestClosure(
        self, request: intake_pb2.RequestClosureRequest, context: Context
    ) -> intake_pb2.RequestClosureResponse:
        result = await self._cases.request_closure(
            request.case_id, enum_in(request.reason, CLOSURE_IN, "reason"), request.idempotency_key
        )
        return intake_pb2.RequestClosureResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER, SUPERVISOR)
    async def ReopenCase(
        self, request: intake_pb2.ReopenCaseRequest, context: Context
    ) -> intake_pb2.ReopenCaseResponse:
        with_risk = request.HasField("risk")
        result = await self._cases.reopen(
            request.case_id,
            idempotency_key=request.idempotency_key,
            answers=_checklist(request.risk, "risk") if with_risk else None,
            override=_override(request.risk, "risk") if with_risk else None,
            needs=enums_in(request.needs, NEED_IN, "needs"),
        )
        return intake_pb2.ReopenCaseResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
            risk_assessment=assessment_pb(result.assessment) if result.assessment else None,
            new_journey_run=result.change.new_journey_run,
        )

    @requires(Role.COORDINATOR, OFFICER, SUPERVISOR)
    async def ListEscalations(
        self, request: intake_pb2.ListEscalationsRequest, context: Context
    ) -> intake_pb2.ListEscalationsResponse:
        items, token = await self._cases.list_escalations(
            region=request.region or None,
            case_id=request.case_id or None,
            min_level=request.min_level,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return intake_pb2.ListEscalationsResponse(
            escalations=[escalation_pb(e) for e in items], next_page_token=token or ""
        )

    @requires(Role.SERVICE_INTAKE)
    async def RecordEscalation(
        self, request: intake_pb2.RecordEscalationRequest, context: Context
    ) -> intake_pb2.RecordEscalationResponse:
        escalation, duplicate = await self._cases.record_escalation(
            case_id=request.case_id,
            region=request.region,
            level=request.level,
            wait=request.wait,
            due_at=time_in(request, "due_at", "due_at"),
            referral_id=request.referral_id or None,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RecordEscalationResponse(
            escalation=escalation_pb(escalation), duplicate=duplicate
        )

    @requires(*PROOF_SECTORS)
    async def IssueConsentProof(
        self, request: intake_pb2.IssueConsentProofRequest, context: Context
    ) -> intake_pb2.IssueConsentProofResponse:
        sector = enum_in(request.sector, SECTOR_IN, "sector")
        document, proof = await self._cases.issue_consent_proof(request.case_id, sector)
        return intake_pb2.IssueConsentProofResponse(proof=document, expires_at=ts(proof.expires_at))
