"""Intake's business rules: each use case is one unit of work, then the journey.

A change is written (case columns, consents, the change record, its outbox
entry and its idempotency-ledger entry) in one unit of work, then delivered
to the journey. If the journey refuses it, the outbox undoes it
(services.intake.journey) and the caller gets FAILED_PRECONDITION. Each change
carries an idempotency key (masar.platform.idempotency): a retry returns the
first answer; the same key with another request is refused.

Access (services.intake.scope): intake officers and supervisors read and
change the cases their organisation holds; a care unit registers cases for
another organisation to hold and keeps a follow-up view of them; a
coordinator reads the cases of her own region, or one elsewhere under an
emergency grant she asked for with a reason and a second person approved
(services.intake.grants: `CaseService.grants`). Every
read of a case's personal data, every change, every consent proof given to a
sector and every grant is an audit entry; a refused read or change is one too.
Transfers between organisations are services.intake.transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from masar.contract import (
    UPDATE_CLOSURE_REQUEST,
    UPDATE_CONSENT,
    UPDATE_FOLLOW_UP,
    UPDATE_MEDICAL_CARE,
    UPDATE_REOPEN,
    UPDATE_RISK,
    ClinicalItem,
    ClosureRequest,
    ConsentChange,
    FollowUpContact,
    MedicalCareConfirmed,
    Need,
    ReopenRequest,
    Risk,
    RiskChange,
    Sector,
    new_case_id,
)
from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.idempotency import IdempotencyLedger, fingerprint, run_retrying_conflicts
from masar.platform.identity import Caller, Role, TokenIssuer, caller_or_none, current_caller
from masar.platform.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_page_token
from masar.platform.validation import require_idempotency_key, require_region
from masar.referral.consent import ConsentProof, issue_consent_proof
from services.intake import domain as d
from services.intake.changes import ChangeWriter, Prepared
from services.intake.grants import EmergencyAccess, EmergencyGrants, GrantCase
from services.intake.inbox import EscalationRepository, new_escalation_id
from services.intake.journey import FollowedReferral, IntakeOutbox, JourneyStarter, encode_input
from services.intake.models import CaseRow
from services.intake.repository import (
    CaseRepository,
    JourneyStartRepository,
    Page,
    record_audit,
)
from services.intake.scope import (
    HELD_ELSEWHERE,
    HOLDER_ROLES,
    case_filter,
    follows,
    holds,
    registration_orgs,
)

# Idempotency-ledger scopes (migration 0003 carried the older keys into them).
R = TypeVar("R")

REGISTER_SCOPE = "intake.register"
ESCALATION_SCOPE = "intake.escalation"

# The sector whose service identity may ask for consent proofs for it.
PROOF_SECTORS = {
    Role.SERVICE_SHELTER: Sector.SHELTER,
    Role.SERVICE_LEGAL: Sector.LEGAL,
    Role.SERVICE_EMPLOYMENT: Sector.EMPLOYMENT,
    Role.SERVICE_HEALTH: Sector.HEALTH,
    Role.SERVICE_PSYCHOSOCIAL: Sector.PSYCHOSOCIAL,
}


@dataclass(frozen=True)
class Registered:
    case: d.CaseView
    journey_started: bool
    needs_without_consent: list[Sector]
    # A care unit registered it: it keeps the follow-up view only.
    follow_up_only: bool = False


@dataclass(frozen=True)
class FollowUpView:
    """A case without personal data: what its source care unit keeps."""

    summary: d.CaseSummary
    needs: list[Need]
    declined: list[Sector]
    consents: list[d.ConsentView]
    referrals: list[FollowedReferral]
    referrals_known: bool


@dataclass(frozen=True)
class ChangeResult:
    summary: d.CaseSummary
    change: d.ChangeView
    consent: d.ConsentView | None = None
    assessment: d.RiskAssessment | None = None


def page_of(page_size: int, page_token: str) -> Page:
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    if page_token:
        decode_page_token(page_token)  # a bad token is refused before any query
    return Page(limit=page_size or DEFAULT_PAGE_SIZE, token=page_token or None)


class CaseService:
    def __init__(
        self,
        database: Database,
        outbox: IntakeOutbox,
        starter: JourneyStarter,
        *,
        ledger: IdempotencyLedger,
        access: EmergencyAccess,
        clock: Callable[[], datetime] = utcnow,
        issuer: TokenIssuer | None = None,
    ) -> None:
        """`issuer` signs consent proofs (none: no sector gets one)."""
        self._db = database
        self._outbox = outbox
        self._starter = starter
        self._ledger = ledger
        self._access = access
        self._clock = clock
        self._issuer = issuer
        self._changes = ChangeWriter(database, outbox, ledger=ledger, clock=clock)
        # Emergency access by four eyes (services.intake.grants).
        self.grants = EmergencyGrants(database, access, case_of=_grant_case, held_by=_held_by)

    @property
    def changes(self) -> ChangeWriter:
        return self._changes

    # --- registration ------------------------------------------------------------

    async def register(
        self, registration: d.Registration, *, holding_organisation_id: str = ""
    ) -> Registered:
        now = self._clock()
        reg = d.validate_registration(registration, now=now)
        caller = caller_or_none()
        source, holder = registration_orgs(caller, holding_organisation_id)
        assessment = d.assess_risk(reg.risk_answers, reg.risk_override, at=now)
        # Who registers is part of the request: the same key from another
        # organisation is another request (refused), never the first's case.
        request = fingerprint(reg, source, holder) if source or holder else fingerprint(reg)

        def write(s: Session) -> str:
            def create() -> str:
                case_id = new_case_id()
                cases = CaseRepository.from_session(s)
                case = cases.insert(
                    case_id=case_id,
                    reg=reg,
                    assessment=assessment,
                    now=now,
                    source_organisation_id=source,
                    holding_organisation_id=holder,
                )
                journey = d.journey_input(cases.facts(case), opened_at=now)
                JourneyStartRepository.from_session(s).insert(
                    case_id=case_id, payload=encode_input(journey), now=now
                )
                record_audit(s, action="case.register", case_id=case_id, now=now)
                return case_id

            case_id, _ = self._ledger.once(
                s,
                scope=REGISTER_SCOPE,
                key=reg.idempotency_key,
                fingerprint=request,
                create=create,
            )
            return case_id

        # A concurrent retry with the same key that won the race: its case.
        case_id = await run_retrying_conflicts(self._db, write)
        started = await self._starter.ensure_started(case_id)

        def read(s: Session) -> tuple[d.CaseView, list[Sector]]:
            cases = CaseRepository.from_session(s)
            facts = cases.facts(cases.get_one(case_id))
            return cases.view(case_id), facts.needs_without_consent()

        view, without_consent = await self._db.run(read)
        return Registered(
            case=view,
            journey_started=started,
            needs_without_consent=without_consent,
            follow_up_only=caller is not None and caller.role is Role.CARE_UNIT_OFFICER,
        )

    # --- reading -------------------------------------------------------------------

    async def get(self, case_id: str) -> d.CaseView:
        d.require_intake_case_id(case_id)
        now = self._clock()
        caller = caller_or_none()

        def read(s: Session) -> d.CaseView:
            cases = CaseRepository.from_session(s)
            self._authorise_read(s, caller, cases.get_one(case_id), "case.read", now)
            # Every read of personal data is audited, in the same unit of work.
            return cases.view(case_id)

        return await self._read_audited(read, case_id, "case.read_refused", now)

    def _authorise_read(
        self,
        s: Session,
        caller: Caller | None,
        case: CaseRow,
        action: str,
        now: datetime,
        *,
        follow_up: bool = False,
    ) -> None:
        """Holders of the case, coordinators of its region (or under a grant),
        and — for the follow-up view — its source care unit; audited."""
        if caller is not None and caller.role is Role.COORDINATOR:
            # Her region, or an emergency grant: audited (with the grant).
            self._access.check_case_access(
                s, caller, case_id=case.case_id, case_region=case.region, audit_action=action
            )
            return
        if caller is None or holds(caller, case) or (follow_up and follows(caller, case)):
            record_audit(s, action=action, case_id=case.case_id, now=now)
            return
        raise PermissionDenied(HELD_ELSEWHERE)

    async def _read_audited(
        self, read: Callable[[Session], R], case_id: str, refused: str, now: datetime
    ) -> R:
        try:
            return await self._db.run(read)
        except PermissionDenied:
            await self._db.run(lambda s: record_audit(s, action=refused, case_id=case_id, now=now))
            raise

    async def follow_up(self, case_id: str) -> FollowUpView:
        """The case without personal data, with its referrals' statuses."""
        d.require_intake_case_id(case_id)
        now = self._clock()
        caller = caller_or_none()

        def read(s: Session) -> FollowUpView:
            cases = CaseRepository.from_session(s)
            case = cases.get_one(case_id)
            self._authorise_read(s, caller, case, "case.follow_up_read", now, follow_up=True)
            return FollowUpView(
                summary=cases.summary(case),
                needs=[Need(n) for n in case.needs],
                declined=[Sector(x) for x in case.declined],
                consents=list(cases.consents(case_id).values()),
                referrals=[],
                referrals_known=False,
            )

        view = await self._read_audited(read, case_id, "case.follow_up_refused", now)
        referrals = await self._starter.referral_statuses(case_id)
        if referrals is None:
            return view
        return FollowUpView(
            summary=view.summary,
            needs=view.needs,
            declined=view.declined,
            consents=view.consents,
            referrals=referrals,
            referrals_known=True,
        )

    async def list_cases(
        self,
        *,
        region: str | None,
        risk: Risk | None,
        status: d.CaseStatus | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[d.CaseSummary], str | None]:
        if region:
            require_region(region)
        scope = case_filter(caller_or_none(), region or None)
        page = page_of(page_size, page_token)
        return await self._db.run(
            lambda s: CaseRepository.from_session(s).list(
                scope=scope, risk=risk, status=status, page=page
            )
        )

    # --- changes (services.intake.changes) -------------------------------------------

    async def _consent_change(
        self,
        case_id: str,
        kind: d.ChangeKind,
        scope: d.ConsentScope,
        idempotency_key: str,
    ) -> ChangeResult:
        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            cases = CaseRepository.from_session(s)
            current = cases.consents(case.case_id)
            state = current[scope].state if scope in current else d.ConsentState.NOT_GIVEN
            sector = scope.sector
            if kind is d.ChangeKind.CONSENT_GRANTED:
                if state is d.ConsentState.GRANTED:
                    raise FailedPrecondition("consent is already granted")
                new_state = d.ConsentState.GRANTED
                # Consenting again to a service she had declined takes it back up.
                if sector is not None and sector.value in case.declined:
                    case.declined = [x for x in case.declined if x != sector.value]
            elif kind is d.ChangeKind.CONSENT_WITHDRAWN:
                if state is not d.ConsentState.GRANTED:
                    raise FailedPrecondition("consent is not granted")
                new_state = d.ConsentState.WITHDRAWN
            else:  # SERVICE_DECLINED
                assert sector is not None
                if sector.value not in case.needs:
                    raise FailedPrecondition("the service is not among the case's needs")
                if sector.value in case.declined:
                    raise FailedPrecondition("the service is already declined")
                new_state = d.ConsentState.DECLINED
                case.declined = [*case.declined, sector.value]
            cases.set_consent(case.case_id, scope, new_state, now)
            event = None
            if sector is not None:
                event = ConsentChange(
                    event_id=change_id,
                    sector=sector,
                    granted=new_state is d.ConsentState.GRANTED,
                    at=now,
                    reason="declined" if kind is d.ChangeKind.SERVICE_DECLINED else "withdrawn",
                )
            return Prepared(detail={"scope": scope.value}, update_name=UPDATE_CONSENT, event=event)

        summary, change = await self._changes.apply(
            case_id, kind, idempotency_key, (scope,), prepare
        )
        consent = await self._db.run(
            lambda s: CaseRepository.from_session(s).consents(case_id)[scope]
        )
        return ChangeResult(summary=summary, change=change, consent=consent)

    async def record_consent(
        self, case_id: str, scope: d.ConsentScope, idempotency_key: str
    ) -> ChangeResult:
        return await self._consent_change(
            case_id, d.ChangeKind.CONSENT_GRANTED, scope, idempotency_key
        )

    async def withdraw_consent(
        self, case_id: str, scope: d.ConsentScope, idempotency_key: str
    ) -> ChangeResult:
        return await self._consent_change(
            case_id, d.ChangeKind.CONSENT_WITHDRAWN, scope, idempotency_key
        )

    async def decline_service(
        self, case_id: str, sector: Sector, idempotency_key: str
    ) -> ChangeResult:
        return await self._consent_change(
            case_id, d.ChangeKind.SERVICE_DECLINED, d.ConsentScope.of(sector), idempotency_key
        )

    async def _current_assessment(self, case_id: str) -> d.RiskAssessment:
        return await self._db.run(
            lambda s: CaseRepository.from_session(s).current_assessment(case_id)
        )

    async def reassess_risk(
        self,
        case_id: str,
        answers: Mapping[d.Indicator, d.Answer],
        override: d.RiskOverride | None,
        idempotency_key: str,
    ) -> ChangeResult:
        assessment = d.assess_risk(answers, override, at=self._clock())

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            CaseRepository.from_session(s).apply_assessment(case, assessment)
            return Prepared(
                detail={"risk": assessment.level.value, "assessment_id": case.risk_assessment_id},
                update_name=UPDATE_RISK,
                event=RiskChange(event_id=change_id, risk=assessment.level, at=now),
            )

        summary, change = await self._changes.apply(
            case_id, d.ChangeKind.RISK_REASSESSED, idempotency_key, (answers, override), prepare
        )
        current = await self._current_assessment(case_id)
        return ChangeResult(summary=summary, change=change, assessment=current)

    async def record_follow_up(
        self,
        case_id: str,
        *,
        contacted_at: datetime,
        channel: d.FollowUpChannel,
        notes: str | None,
        idempotency_key: str,
    ) -> ChangeResult:
        contacted_at = d.validate_past_time(contacted_at, "contacted_at", now=self._clock())
        notes = d.validate_notes(notes, "notes")

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            if contacted_at < case.created_at:
                raise InvalidArgument("contacted_at", "must not be before the case was registered")
            return Prepared(
                detail={"at": contacted_at.isoformat(), "channel": channel.value},
                update_name=UPDATE_FOLLOW_UP,
                event=FollowUpContact(event_id=change_id, at=contacted_at),
                notes=notes,
            )

        request = (contacted_at, channel, notes)
        summary, change = await self._changes.apply(
            case_id, d.ChangeKind.FOLLOW_UP, idempotency_key, request, prepare
        )
        return ChangeResult(summary=summary, change=change)

    async def confirm_medical_care(
        self, case_id: str, *, item: ClinicalItem, given_at: datetime, idempotency_key: str
    ) -> ChangeResult:
        given_at = d.validate_past_time(given_at, "given_at", now=self._clock())

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            if given_at < case.incident_at:
                raise InvalidArgument("given_at", "must not be before the incident")
            return Prepared(
                detail={"at": given_at.isoformat(), "item": item.value},
                update_name=UPDATE_MEDICAL_CARE,
                event=MedicalCareConfirmed(event_id=change_id, item=item, at=given_at),
            )

        summary, change = await self._changes.apply(
            case_id, d.ChangeKind.MEDICAL_CARE, idempotency_key, (item, given_at), prepare
        )
        return ChangeResult(summary=summary, change=change)

    async def request_closure(
        self, case_id: str, reason: d.ClosureReason, idempotency_key: str
    ) -> ChangeResult:
        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            # Whether closure may be asked now is the journey's call (a refused
            # closure leaves intake's status as it was: the change is undone).
            case.status = d.CaseStatus.CLOSURE_REQUESTED.value
            return Prepared(
                detail={"reason": reason.value},
                update_name=UPDATE_CLOSURE_REQUEST,
                event=ClosureRequest(event_id=change_id, at=now, reason=reason.value),
            )

        summary, change = await self._changes.apply(
            case_id, d.ChangeKind.CLOSURE_REQUESTED, idempotency_key, (reason,), prepare
        )
        return ChangeResult(summary=summary, change=change)

    async def reopen(
        self,
        case_id: str,
        *,
        idempotency_key: str,
        answers: Mapping[d.Indicator, d.Answer] | None,
        override: d.RiskOverride | None,
        needs: list[Need],
    ) -> ChangeResult:
        now = self._clock()
        assessment = d.assess_risk(answers, override, at=now) if answers is not None else None
        needs = d.validate_needs(needs, "needs")

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            cases = CaseRepository.from_session(s)
            if needs:
                if Need.LEGAL in needs and not case.legal_matters:
                    raise InvalidArgument(
                        "needs", "legal aid needs legal matters, and none were recorded"
                    )
                case.needs = [n.value for n in needs]
            if assessment is not None:
                cases.apply_assessment(case, assessment)
            case.status = d.CaseStatus.OPEN.value
            case.reopen_count += 1
            facts = cases.facts(case)
            return Prepared(
                detail={"risk": facts.risk.value},
                update_name=UPDATE_REOPEN,
                event=ReopenRequest(
                    event_id=change_id,
                    at=now,
                    risk=facts.risk,
                    needs=list(facts.needs),
                    consents=facts.consented_sectors(),
                ),
            )

        request = (answers, override, needs)
        summary, change = await self._changes.apply(
            case_id, d.ChangeKind.REOPENED, idempotency_key, request, prepare
        )
        current = await self._current_assessment(case_id) if assessment is not None else None
        return ChangeResult(summary=summary, change=change, assessment=current)

    # --- the coordinators' inbox ---------------------------------------------------------

    async def record_escalation(
        self,
        *,
        case_id: str,
        region: str,
        level: int,
        wait: str,
        due_at: datetime,
        referral_id: str | None,
        idempotency_key: str,
    ) -> tuple[d.Escalation, bool]:
        """Store a journey's reminder or escalation; (escalation, duplicate)."""
        d.validate_escalation(
            case_id=case_id, region=region, level=level, wait=wait, referral_id=referral_id
        )
        require_idempotency_key(idempotency_key)
        now = self._clock()
        # Migration 0003 rebuilds this fingerprint for the escalations it carried over.
        print_ = fingerprint(case_id, region, level, wait, due_at, referral_id)

        def write(s: Session) -> tuple[d.Escalation, bool]:
            escalations = EscalationRepository.from_session(s)
            entry = self._ledger.lookup(
                s, scope=ESCALATION_SCOPE, key=idempotency_key, fingerprint=print_
            )
            if entry is not None:
                return escalations.get(entry.subject_id), True
            CaseRepository.from_session(s).get_one(case_id)
            escalation = d.Escalation(
                escalation_id=new_escalation_id(),
                case_id=case_id,
                region=region,
                level=level,
                wait=wait,
                due_at=due_at,
                referral_id=referral_id,
                recorded_at=now,
            )
            escalations.insert(escalation)
            self._ledger.record(
                s,
                scope=ESCALATION_SCOPE,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=escalation.escalation_id,
            )
            return escalation, False

        return await run_retrying_conflicts(self._db, write)

    async def list_escalations(
        self,
        *,
        region: str | None,
        case_id: str | None,
        min_level: int,
        page_size: int,
        page_token: str,
    ) -> tuple[list[d.Escalation], str | None]:
        if region:
            require_region(region)
        caller = caller_or_none()
        organisation_id = None
        if caller is not None and caller.role in HOLDER_ROLES:
            # Her organisation's cases, and the reminders addressed to it.
            organisation_id = caller.org
        else:
            region = case_filter(caller, region or None).region
        if case_id:
            d.require_intake_case_id(case_id)
        if not 0 <= min_level <= max(d.ESCALATION_LEVELS):
            raise InvalidArgument("min_level", "must be between 0 and 3")
        page = page_of(page_size, page_token)
        return await self._db.run(
            lambda s: EscalationRepository.from_session(s).list(
                region=region,
                case_id=case_id,
                min_level=min_level,
                page=page,
                organisation_id=organisation_id,
            )
        )

    # --- consent proofs for the sectors -----------------------------------------------

    async def issue_consent_proof(self, case_id: str, sector: Sector) -> tuple[str, ConsentProof]:
        """Intake's signed word that the survivor consents to `sector`, for
        that sector's referral request; FAILED_PRECONDITION without consent.
        A sector's service identity asks for its own sector only."""
        if PROOF_SECTORS.get(current_caller().role) is not sector:
            raise PermissionDenied("a sector asks for consent proofs for its own sector only")
        d.require_intake_case_id(case_id)
        if self._issuer is None:
            raise FailedPrecondition("this intake cannot sign consent proofs")
        issuer = self._issuer
        now = self._clock()

        def prove(s: Session) -> tuple[str, ConsentProof]:
            cases = CaseRepository.from_session(s)
            cases.get_one(case_id)
            consent = cases.consents(case_id).get(d.ConsentScope.of(sector))
            if consent is None or consent.state is not d.ConsentState.GRANTED:
                raise FailedPrecondition("no consent for this sector")
            # The proof names when this consent was given: a sector told of a
            # later withdrawal refuses it (masar.referral.consent).
            document, proof = issue_consent_proof(
                issuer, case_id=case_id, sector=sector, consented_at=consent.updated_at
            )
            record_audit(
                s,
                action="consent.proof_issued",
                case_id=case_id,
                target=proof.proof_id,
                reason=sector.value,
                now=now,
            )
            return document, proof

        return await self._db.run(prove)


def _grant_case(session: Session, case_id: str) -> GrantCase:
    """The case a grant is for, as it is now (NotFound if none)."""
    d.require_intake_case_id(case_id)
    case = CaseRepository.from_session(session).get_one(case_id)
    return GrantCase(case.case_id, case.region, case.holding_organisation_id)


def _held_by(organisation_id: str) -> Select[tuple[str]]:
    """The ids of the cases an organisation holds (a supervisor's grants)."""
    return select(CaseRow.case_id).where(CaseRow.holding_organisation_id == organisation_id)
