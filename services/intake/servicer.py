"""The gRPC edge of intake: protobuf in, domain out, and back. Validation of
the message shape (required fields, enum values) happens here; the rules live
in the service (services.intake.service) and the domain; errors name the field
and never echo a value.

Who may call what (every method declares it; anything else is refused):
intake officers register cases and record every change; they and
coordinators read cases (a coordinator her own region's, or one elsewhere
under an emergency grant she opened) and the escalation inbox (a coordinator
her region's); intake's service identity records the journeys' escalations;
a sector's service identity asks for consent proofs for its own sector only.
Operators call nothing here (health and reflection are open to all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from masar.contract import ClinicalItem, Need, Risk, Sector, ViolenceType, journey_workflow_id
from masar.platform.errors import InvalidArgument
from masar.platform.identity import Role, requires
from masar.platform.outbox import DeliveryOutcome
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc, legal_pb2
from services.intake import domain as d
from services.intake.grants import MAX_GRANT_TTL, EmergencyGrant, GrantReason
from services.intake.service import PROOF_SECTORS, CaseService, ChangeResult

SERVICE_NAME = "masar.v1.IntakeService"

E = TypeVar("E", bound=Enum)


def _table(members: Iterable[E], wrapper: Any, prefix: str) -> dict[E, Any]:
    """Domain enum member -> protobuf enum number, by name (RAPE ->
    VIOLENCE_TYPE_RAPE); fails at import if the two drift apart."""
    return {m: wrapper.Value(f"{prefix}{m.name}") for m in members}


RISK = _table(Risk, common_pb2.RiskLevel, "RISK_LEVEL_")
NEED = _table(Need, common_pb2.Sector, "SECTOR_")
SECTOR = _table(Sector, common_pb2.Sector, "SECTOR_")
VIOLENCE = _table(ViolenceType, intake_pb2.ViolenceType, "VIOLENCE_TYPE_")
CONTEXT = _table(d.IncidentContext, intake_pb2.IncidentContext, "INCIDENT_CONTEXT_")
MIGRANT = _table(d.MigrantStatus, intake_pb2.MigrantStatus, "MIGRANT_STATUS_")
ANSWER = _table(d.Answer, intake_pb2.RiskAnswer, "RISK_ANSWER_")
INDICATOR = _table(d.Indicator, intake_pb2.RiskIndicator, "RISK_INDICATOR_")
SCOPE = _table(d.ConsentScope, intake_pb2.ConsentScope, "CONSENT_SCOPE_")
CONSENT_STATE = _table(d.ConsentState, intake_pb2.ConsentState, "CONSENT_STATE_")
CASE_STATUS = _table(d.CaseStatus, intake_pb2.CaseStatus, "CASE_STATUS_")
JOURNEY = _table(d.JourneyState, intake_pb2.JourneyState, "JOURNEY_STATE_")
CLINICAL = _table(ClinicalItem, intake_pb2.ClinicalItem, "CLINICAL_ITEM_")
CLOSURE = _table(d.ClosureReason, intake_pb2.ClosureReason, "CLOSURE_REASON_")
CHANNEL = _table(d.FollowUpChannel, intake_pb2.FollowUpChannel, "FOLLOW_UP_CHANNEL_")
CHANGE_KIND = _table(d.ChangeKind, intake_pb2.CaseChangeKind, "CASE_CHANGE_KIND_")
MATTER = _table(d.LegalMatter, legal_pb2.LegalMatter, "LEGAL_MATTER_")
GRANT_REASON = _table(GrantReason, intake_pb2.EmergencyReason, "EMERGENCY_REASON_")
DELIVERY: Mapping[DeliveryOutcome | None, Any] = {
    DeliveryOutcome.DELIVERED: common_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryOutcome.QUEUED: common_pb2.DELIVERY_STATE_QUEUED,
}


def _inverse(table: Mapping[E, Any]) -> dict[int, E]:
    return {int(v): k for k, v in table.items()}


RISK_IN = _inverse(RISK)
NEED_IN = _inverse(NEED)
SECTOR_IN = _inverse(SECTOR)
VIOLENCE_IN = _inverse(VIOLENCE)
CONTEXT_IN = _inverse(CONTEXT)
MIGRANT_IN = _inverse(MIGRANT)
ANSWER_IN = _inverse(ANSWER)
SCOPE_IN = _inverse(SCOPE)
CASE_STATUS_IN = _inverse(CASE_STATUS)
CLINICAL_IN = _inverse(CLINICAL)
CLOSURE_IN = _inverse(CLOSURE)
CHANNEL_IN = _inverse(CHANNEL)
MATTER_IN = _inverse(MATTER)
GRANT_REASON_IN = _inverse(GRANT_REASON)


# --- protobuf -> domain ---------------------------------------------------------------


def _enum(value: int, table: Mapping[int, E], field: str, *, missing: str = "is required") -> E:
    if value == 0:
        raise InvalidArgument(field, missing)
    member = table.get(value)
    if member is None:
        raise InvalidArgument(field, "is not an accepted value here")
    return member


def _optional_enum(value: int, table: Mapping[int, E], field: str) -> E | None:
    return None if value == 0 else _enum(value, table, field)


def _enums(values: Sequence[int], table: Mapping[int, E], field: str) -> list[E]:
    return [_enum(v, table, f"{field}[{i}]") for i, v in enumerate(values)]


def _time(message: Message, name: str, field: str) -> datetime:
    if not message.HasField(name):
        raise InvalidArgument(field, "is required")
    ts: Timestamp = getattr(message, name)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is out of range") from None


def _checklist(risk: intake_pb2.RiskAssessmentInput, field: str) -> dict[d.Indicator, d.Answer]:
    if not risk.HasField("checklist"):
        raise InvalidArgument(f"{field}.checklist", "is required")
    return {
        indicator: _enum(
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
    level = _enum(override.level, RISK_IN, f"{field}.override.level")
    return d.RiskOverride(level=level, reason=override.reason)


def _registration(request: intake_pb2.RegisterCaseRequest) -> d.Registration:
    s = request.survivor
    c = s.contact
    if not request.HasField("incident"):
        raise InvalidArgument("incident", "is required")
    incident = request.incident
    occurred_at = _time(incident, "occurred_at", "incident.occurred_at")
    if incident.occurred_at.nanos:
        raise InvalidArgument(
            "incident.occurred_at", "must be on the hour (minutes and seconds zero)"
        )
    if not request.HasField("risk"):
        raise InvalidArgument("risk", "is required")
    return d.Registration(
        idempotency_key=request.idempotency_key,
        survivor=d.SurvivorProfile(
            region=s.region,
            alias=s.alias or None,
            birth_year=s.birth_year or None,
            nationality=s.nationality or None,
            migrant_status=_optional_enum(s.migrant_status, MIGRANT_IN, "survivor.migrant_status"),
            languages=list(s.languages),
            contact=d.ContactDetails(
                phone=c.phone or None,
                email=c.email or None,
                address=c.address or None,
                safe_contact_instructions=c.safe_contact_instructions or None,
            ),
            accompanying_children=s.accompanying_children,
        ),
        incident=d.Incident(
            occurred_at=occurred_at,
            violence_type=_enum(incident.violence_type, VIOLENCE_IN, "incident.violence_type"),
            contexts=_enums(incident.contexts, CONTEXT_IN, "incident.contexts"),
            narrative=incident.narrative or None,
        ),
        risk_answers=_checklist(request.risk, "risk"),
        risk_override=_override(request.risk, "risk"),
        needs=_enums(request.needs, NEED_IN, "needs"),
        accessibility_needs=list(request.household.accessibility_needs),
        legal_matters=_enums(request.legal_matters, MATTER_IN, "legal_matters"),
        employment_interests=list(request.employment_interests),
        consents=_enums(request.consents, SCOPE_IN, "consents"),
    )


# --- domain -> protobuf ---------------------------------------------------------------


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _num(table: Mapping[E, Any], member: E | None) -> Any:
    """The protobuf number of an optional member (0, UNSPECIFIED, for none)."""
    return 0 if member is None else table[member]


def summary_pb(s: d.CaseSummary) -> intake_pb2.CaseSummary:
    return intake_pb2.CaseSummary(
        case_id=s.case_id,
        region=s.region,
        risk=RISK[s.risk],
        status=CASE_STATUS[s.status],
        journey=JOURNEY[s.journey],
        created_at=_ts(s.created_at),
        updated_at=_ts(s.updated_at),
        reopen_count=s.reopen_count,
        workflow_id=journey_workflow_id(s.case_id),
    )


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
        assessed_at=_ts(a.assessed_at),
    )


def consent_pb(c: d.ConsentView) -> intake_pb2.Consent:
    return intake_pb2.Consent(
        scope=SCOPE[c.scope], state=CONSENT_STATE[c.state], updated_at=_ts(c.updated_at)
    )


def change_pb(c: d.ChangeView) -> intake_pb2.CaseChange:
    return intake_pb2.CaseChange(
        change_id=c.change_id,
        kind=CHANGE_KIND[c.kind],
        recorded_at=_ts(c.recorded_at),
        delivery=DELIVERY.get(c.delivery, common_pb2.DELIVERY_STATE_UNSPECIFIED),
        rejected=c.rejected,
        scope=_num(SCOPE, c.scope),
        at=_ts(c.at),
        clinical_item=_num(CLINICAL, c.clinical_item),
        closure_reason=_num(CLOSURE, c.closure_reason),
        follow_up_channel=_num(CHANNEL, c.channel),
        notes=c.notes or "",
        risk=_num(RISK, c.risk),
    )


def case_pb(v: d.CaseView) -> intake_pb2.Case:
    s = v.survivor
    return intake_pb2.Case(
        summary=summary_pb(v.summary),
        survivor=intake_pb2.SurvivorProfile(
            alias=s.alias or "",
            birth_year=s.birth_year or 0,
            nationality=s.nationality or "",
            migrant_status=_num(MIGRANT, s.migrant_status),
            languages=s.languages,
            region=s.region,
            contact=intake_pb2.ContactDetails(
                phone=s.contact.phone or "",
                email=s.contact.email or "",
                address=s.contact.address or "",
                safe_contact_instructions=s.contact.safe_contact_instructions or "",
            ),
            accompanying_children=s.accompanying_children,
        ),
        incident=intake_pb2.Incident(
            occurred_at=_ts(v.incident.occurred_at),
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


def escalation_pb(e: d.Escalation) -> intake_pb2.Escalation:
    return intake_pb2.Escalation(
        escalation_id=e.escalation_id,
        case_id=e.case_id,
        region=e.region,
        level=e.level,
        wait=e.wait,
        due_at=_ts(e.due_at),
        referral_id=e.referral_id or "",
        recorded_at=_ts(e.recorded_at),
    )


def grant_pb(g: EmergencyGrant) -> intake_pb2.EmergencyGrant:
    return intake_pb2.EmergencyGrant(
        grant_id=g.grant_id,
        case_id=g.case_id,
        reason=GRANT_REASON[g.reason],
        granted_at=_ts(g.granted_at),
        expires_at=_ts(g.expires_at),
        revoked_at=_ts(g.revoked_at),
    )


def _delivery(result: ChangeResult) -> Any:
    return DELIVERY.get(result.change.delivery, common_pb2.DELIVERY_STATE_UNSPECIFIED)


# --- the servicer ------------------------------------------------------------------------

OFFICER = Role.INTAKE_OFFICER
MAX_GRANT_SECONDS = int(MAX_GRANT_TTL.total_seconds())
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class IntakeServicer(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, cases: CaseService) -> None:
        self._cases = cases

    @requires(OFFICER)
    async def RegisterCase(
        self, request: intake_pb2.RegisterCaseRequest, context: Context
    ) -> intake_pb2.RegisterCaseResponse:
        registered = await self._cases.register(_registration(request))
        case = case_pb(registered.case)
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

    @requires(OFFICER, Role.COORDINATOR)
    async def GetCase(
        self, request: intake_pb2.GetCaseRequest, context: Context
    ) -> intake_pb2.GetCaseResponse:
        return intake_pb2.GetCaseResponse(case=case_pb(await self._cases.get(request.case_id)))

    @requires(OFFICER, Role.COORDINATOR)
    async def ListCases(
        self, request: intake_pb2.ListCasesRequest, context: Context
    ) -> intake_pb2.ListCasesResponse:
        cases, token = await self._cases.list_cases(
            region=request.region or None,
            risk=_optional_enum(request.risk, RISK_IN, "risk"),
            status=_optional_enum(request.status, CASE_STATUS_IN, "status"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return intake_pb2.ListCasesResponse(
            cases=[summary_pb(c) for c in cases], next_page_token=token or ""
        )

    @requires(OFFICER)
    async def RecordConsent(
        self, request: intake_pb2.RecordConsentRequest, context: Context
    ) -> intake_pb2.RecordConsentResponse:
        scope = _enum(request.scope, SCOPE_IN, "scope")
        result = await self._cases.record_consent(request.case_id, scope, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.RecordConsentResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
    async def WithdrawConsent(
        self, request: intake_pb2.WithdrawConsentRequest, context: Context
    ) -> intake_pb2.WithdrawConsentResponse:
        scope = _enum(request.scope, SCOPE_IN, "scope")
        result = await self._cases.withdraw_consent(request.case_id, scope, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.WithdrawConsentResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
    async def DeclineService(
        self, request: intake_pb2.DeclineServiceRequest, context: Context
    ) -> intake_pb2.DeclineServiceResponse:
        sector = _enum(request.sector, SECTOR_IN, "sector")
        result = await self._cases.decline_service(request.case_id, sector, request.idempotency_key)
        assert result.consent is not None
        return intake_pb2.DeclineServiceResponse(
            case=summary_pb(result.summary),
            consent=consent_pb(result.consent),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
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

    @requires(OFFICER)
    async def RecordFollowUp(
        self, request: intake_pb2.RecordFollowUpRequest, context: Context
    ) -> intake_pb2.RecordFollowUpResponse:
        result = await self._cases.record_follow_up(
            request.case_id,
            contacted_at=_time(request, "contacted_at", "contacted_at"),
            channel=_enum(request.channel, CHANNEL_IN, "channel"),
            notes=request.notes or None,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RecordFollowUpResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
    async def ConfirmMedicalCare(
        self, request: intake_pb2.ConfirmMedicalCareRequest, context: Context
    ) -> intake_pb2.ConfirmMedicalCareResponse:
        result = await self._cases.confirm_medical_care(
            request.case_id,
            item=_enum(request.item, CLINICAL_IN, "item"),
            given_at=_time(request, "given_at", "given_at"),
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.ConfirmMedicalCareResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
    async def RequestClosure(
        self, request: intake_pb2.RequestClosureRequest, context: Context
    ) -> intake_pb2.RequestClosureResponse:
        result = await self._cases.request_closure(
            request.case_id, _enum(request.reason, CLOSURE_IN, "reason"), request.idempotency_key
        )
        return intake_pb2.RequestClosureResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
        )

    @requires(OFFICER)
    async def ReopenCase(
        self, request: intake_pb2.ReopenCaseRequest, context: Context
    ) -> intake_pb2.ReopenCaseResponse:
        with_risk = request.HasField("risk")
        result = await self._cases.reopen(
            request.case_id,
            idempotency_key=request.idempotency_key,
            answers=_checklist(request.risk, "risk") if with_risk else None,
            override=_override(request.risk, "risk") if with_risk else None,
            needs=_enums(request.needs, NEED_IN, "needs"),
        )
        return intake_pb2.ReopenCaseResponse(
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result),
            risk_assessment=assessment_pb(result.assessment) if result.assessment else None,
            new_journey_run=result.change.new_journey_run,
        )

    @requires(Role.COORDINATOR, OFFICER)
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
            due_at=_time(request, "due_at", "due_at"),
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
        sector = _enum(request.sector, SECTOR_IN, "sector")
        document, proof = await self._cases.issue_consent_proof(request.case_id, sector)
        return intake_pb2.IssueConsentProofResponse(
            proof=document, expires_at=_ts(proof.expires_at)
        )

    @requires(Role.COORDINATOR)
    async def OpenEmergencyGrant(
        self, request: intake_pb2.OpenEmergencyGrantRequest, context: Context
    ) -> intake_pb2.OpenEmergencyGrantResponse:
        reason = _enum(request.reason, GRANT_REASON_IN, "reason")
        if not 0 <= request.ttl_seconds <= MAX_GRANT_SECONDS:
            raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_GRANT_SECONDS}")
        grant = await self._cases.open_emergency_grant(
            request.case_id,
            reason=reason,
            note=request.note or None,
            ttl=timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None,
        )
        return intake_pb2.OpenEmergencyGrantResponse(grant=grant_pb(grant))

    @requires(Role.COORDINATOR)
    async def RevokeEmergencyGrant(
        self, request: intake_pb2.RevokeEmergencyGrantRequest, context: Context
    ) -> intake_pb2.RevokeEmergencyGrantResponse:
        grant = await self._cases.revoke_emergency_grant(request.grant_id)
        return intake_pb2.RevokeEmergencyGrantResponse(grant=grant_pb(grant))
