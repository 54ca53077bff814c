"""The intake desk: each use case is one unit of work, then the journey.

A change is written (case columns, consents, the change record, its outbox
entry) in one unit of work, then delivered to the journey. If the journey
refuses it, the outbox undoes it and the caller gets FAILED_PRECONDITION.
Each change carries an idempotency key: a retry returns the first answer.

Access: an intake officer reads any case; a coordinator reads the cases of
her own region, or one elsewhere under an emergency grant she opened with a
reason (services.intake.grants). Every read of a case's personal data, every change,
every consent proof given to a sector and every grant is an audit entry; a
refused read is one too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
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
    ViolenceType,
    new_case_id,
)
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from masar.platform.identity import Caller, Role, TokenIssuer, caller_or_none, current_caller
from masar.referral.consent import ConsentProof, issue_consent_proof
from services.intake import domain as d
from services.intake import repository as repo
from services.intake.grants import EmergencyAccess, EmergencyGrant, GrantReason
from services.intake.journey import IntakeOutbox, JourneyStarter, encode_input
from services.intake.models import EMERGENCY_GRANTS, CaseRow

MAX_PAGE = 500
MAX_GRANT_NOTE = 2000
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Registered:
    case: d.CaseView
    journey_started: bool
    needs_without_consent: list[Sector]


@dataclass(frozen=True)
class ChangeResult:
    summary: d.CaseSummary
    change: d.ChangeView
    consent: d.ConsentView | None = None
    assessment: d.RiskAssessment | None = None


@dataclass
class _Prepared:
    """What one change does, built inside its unit of work."""

    detail: dict[str, Any]
    update_name: str | None = None
    event: Any = None  # a contract dataclass with event_id, or None (stays with intake)
    notes: str | None = None
    undo: dict[str, Any] = field(default_factory=dict)


def _regional_scope(region: str | None) -> str | None:
    """A coordinator lists her own region only: the filter is hers."""
    caller = caller_or_none()
    if caller is None or caller.role is not Role.COORDINATOR:
        return region
    if region is not None and region != caller.region:
        raise PermissionDenied("a coordinator lists her own region only")
    return caller.region


def _page(page_size: int, page_token: str) -> repo.Page:
    if page_size < 0 or page_size > MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
    after = repo.decode_page_token(page_token) if page_token else None
    return repo.Page(limit=page_size or DEFAULT_PAGE, after=after)


class CaseDesk:
    def __init__(
        self,
        database: Database,
        outbox: IntakeOutbox,
        starter: JourneyStarter,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        issuer: TokenIssuer | None = None,
    ) -> None:
        """`issuer` signs consent proofs (none: no sector gets one)."""
        self._db = database
        self._outbox = outbox
        self._starter = starter
        self._clock = clock
        self._issuer = issuer
        self._access = EmergencyAccess(EMERGENCY_GRANTS, clock=clock)

    # --- registration ------------------------------------------------------------

    async def register(self, registration: d.Registration) -> Registered:
        now = self._clock()
        reg = d.validate_registration(registration, now=now)
        assessment = d.assess_risk(reg.risk_answers, reg.risk_override, at=now)

        def write(s: Session) -> str:
            existing = repo.case_id_by_key(s, reg.idempotency_key)
            if existing is not None:
                return existing
            case_id = new_case_id()
            repo.insert_case(s, case_id=case_id, reg=reg, assessment=assessment, now=now)
            case = repo.get_case(s, case_id)
            assert case is not None
            journey = d.journey_input(repo.case_facts(s, case), opened_at=now)
            repo.insert_journey_start(s, case_id=case_id, payload=encode_input(journey), now=now)
            repo.record_audit(s, action="case.register", case_id=case_id, now=now)
            return case_id

        try:
            case_id = await self._db.run(write)
        except IntegrityError:
            # A concurrent retry with the same key won the race: return its case.
            found = await self._db.run(lambda s: repo.case_id_by_key(s, reg.idempotency_key))
            if found is None:
                raise
            case_id = found
        started = await self._starter.ensure_started(case_id)
        view = await self._db.run(lambda s: self._view(s, case_id))
        facts = await self._db.run(lambda s: repo.case_facts(s, self._case(s, case_id)))
        return Registered(
            case=view,
            journey_started=started,
            needs_without_consent=facts.needs_without_consent(),
        )

    # --- reading -------------------------------------------------------------------

    @staticmethod
    def _case(s: Session, case_id: str, *, lock: bool = False) -> CaseRow:
        case = repo.get_case(s, case_id, lock=lock)
        if case is None:
            raise NotFound("case not found")
        return case

    def _view(self, s: Session, case_id: str) -> d.CaseView:
        case = self._case(s, case_id)
        birth_year = int(case.birth_year) if case.birth_year else None
        return d.CaseView(
            summary=repo.summary(s, case),
            survivor=d.SurvivorProfile(
                region=case.region,
                alias=case.alias,
                birth_year=birth_year,
                nationality=case.nationality,
                migrant_status=d.MigrantStatus(case.migrant_status)
                if case.migrant_status
                else None,
                languages=list(case.languages),
                contact=d.ContactDetails(
                    phone=case.phone,
                    email=case.email,
                    address=case.address,
                    safe_contact_instructions=case.safe_contact_instructions,
                ),
                accompanying_children=case.accompanying_children,
            ),
            incident=d.Incident(
                occurred_at=case.incident_at,
                violence_type=ViolenceType(case.violence_type),
                contexts=[d.IncidentContext(c) for c in case.incident_contexts],
                narrative=case.narrative,
            ),
            assessment=repo.get_assessment(s, case.risk_assessment_id),
            needs=[Need(n) for n in case.needs],
            declined=[Sector(x) for x in case.declined],
            accessibility_needs=list(case.accessibility_needs),
            legal_matters=[d.LegalMatter(m) for m in case.legal_matters],
            employment_interests=list(case.employment_interests),
            consents=list(repo.consents(s, case_id).values()),
            changes=repo.changes(s, case_id),
        )

    async def get(self, case_id: str) -> d.CaseView:
        d.validate_case_id(case_id)
        now = self._clock()
        caller = caller_or_none()

        def read(s: Session) -> d.CaseView:
            if caller is not None and caller.role is Role.COORDINATOR:
                # Her region, or an emergency grant: audited (with the grant).
                case = self._case(s, case_id)
                self._access.check_case_access(
                    s, caller, case_id=case_id, case_region=case.region, audit_action="case.read"
                )
            else:
                repo.record_audit(s, action="case.read", case_id=case_id, now=now)
            # Every read of personal data is audited, in the same unit of work.
            return self._view(s, case_id)

        try:
            return await self._db.run(read)
        except PermissionDenied:
            await self._db.run(
                lambda s: repo.record_audit(s, action="case.read_refused", case_id=case_id, now=now)
            )
            raise

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
            d.validate_region(region, "region")
        region = _regional_scope(region)
        page = _page(page_size, page_token)
        return await self._db.run(
            lambda s: repo.list_cases(s, region=region, risk=risk, status=status, page=page)
        )

    # --- changes -----------------------------------------------------------------------

    async def _change(
        self,
        case_id: str,
        kind: d.ChangeKind,
        idempotency_key: str,
        prepare: Callable[[Session, CaseRow, str, datetime], _Prepared],
    ) -> tuple[d.CaseSummary, d.ChangeView]:
        d.validate_case_id(case_id)
        d.validate_idempotency_key(idempotency_key)
        now = self._clock()

        def write(s: Session) -> str:
            existing = repo.change_by_key(s, case_id, kind, idempotency_key)
            if existing is not None:
                return existing.change_id
            case = self._case(s, case_id, lock=True)
            change_id = repo.new_change_id()
            before = repo.snapshot(case, repo.UNDOABLE_COLUMNS)
            consents_before = {
                scope.value: view.state.value for scope, view in repo.consents(s, case_id).items()
            }
            prepared = prepare(s, case, change_id, now)
            case.updated_at = now
            s.flush()
            after = repo.snapshot(case, repo.UNDOABLE_COLUMNS)
            consents_after = {
                scope.value: view.state.value for scope, view in repo.consents(s, case_id).items()
            }
            undo = {
                "case_before": {k: v for k, v in before.items() if after[k] != v},
                "case_after": {k: v for k, v in after.items() if before[k] != v},
                "consents_before": {
                    k: v for k, v in consents_before.items() if consents_after.get(k) != v
                },
                "consents_after": {
                    k: v for k, v in consents_after.items() if consents_before.get(k) != v
                },
            }
            repo.insert_change(
                s,
                change_id=change_id,
                case_id=case_id,
                kind=kind,
                idempotency_key=idempotency_key,
                now=now,
                notifies_journey=prepared.event is not None,
                detail=prepared.detail,
                undo=undo,
                notes=prepared.notes,
            )
            if prepared.event is not None and prepared.update_name is not None:
                self._outbox.enqueue(
                    s, case_id=case_id, update_name=prepared.update_name, event=prepared.event
                )
            repo.record_audit(
                s, action=f"case.{kind.value}", case_id=case_id, target=change_id, now=now
            )
            return change_id

        try:
            change_id = await self._db.run(write)
        except IntegrityError:
            found = await self._db.run(
                lambda s: repo.change_by_key(s, case_id, kind, idempotency_key)
            )
            if found is None:
                raise
            change_id = found.change_id

        row = await self._db.run(lambda s: repo.get_change(s, change_id))
        assert row is not None
        rejected = None
        if row.notifies_journey and row.status == repo.CHANGE_APPLIED:
            _, rejected = await self._outbox.deliver_in_order(case_id, change_id)

        def result(s: Session) -> tuple[d.CaseSummary, d.ChangeView]:
            change = repo.get_change(s, change_id)
            assert change is not None
            return repo.summary_of(s, case_id), repo.change_view(
                change, repo.delivery_of(s, change)
            )

        summary, view = await self._db.run(result)
        if view.rejected:
            what = rejected.error_type if rejected and rejected.error_type else "Rejected"
            raise FailedPrecondition(f"the case's journey refused this change ({what})")
        return summary, view

    async def _consent_change(
        self,
        case_id: str,
        kind: d.ChangeKind,
        scope: d.ConsentScope,
        idempotency_key: str,
    ) -> ChangeResult:
        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            current = repo.consents(s, case.case_id)
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
            repo.set_consent(s, case.case_id, scope, new_state, now)
            event = None
            if sector is not None:
                event = ConsentChange(
                    event_id=change_id,
                    sector=sector,
                    granted=new_state is d.ConsentState.GRANTED,
                    at=now,
                    reason="declined" if kind is d.ChangeKind.SERVICE_DECLINED else "withdrawn",
                )
            return _Prepared(detail={"scope": scope.value}, update_name=UPDATE_CONSENT, event=event)

        summary, change = await self._change(case_id, kind, idempotency_key, prepare)
        consent = await self._db.run(lambda s: repo.consents(s, case_id)[scope])
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

    def _apply_assessment(self, s: Session, case: CaseRow, assessment: d.RiskAssessment) -> None:
        assessment_id = repo.new_assessment_id()
        repo.insert_assessment(
            s, case_id=case.case_id, assessment_id=assessment_id, assessment=assessment
        )
        case.risk = assessment.level.value
        case.risk_assessment_id = assessment_id

    async def reassess_risk(
        self,
        case_id: str,
        answers: Mapping[d.Indicator, d.Answer],
        override: d.RiskOverride | None,
        idempotency_key: str,
    ) -> ChangeResult:
        assessment = d.assess_risk(answers, override, at=self._clock())

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            self._apply_assessment(s, case, assessment)
            return _Prepared(
                detail={"risk": assessment.level.value, "assessment_id": case.risk_assessment_id},
                update_name=UPDATE_RISK,
                event=RiskChange(event_id=change_id, risk=assessment.level, at=now),
            )

        summary, change = await self._change(
            case_id, d.ChangeKind.RISK_REASSESSED, idempotency_key, prepare
        )
        current = await self._db.run(
            lambda s: repo.get_assessment(s, self._case(s, case_id).risk_assessment_id)
        )
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

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            if contacted_at < case.created_at:
                raise InvalidArgument("contacted_at", "must not be before the case was registered")
            return _Prepared(
                detail={"at": contacted_at.isoformat(), "channel": channel.value},
                update_name=UPDATE_FOLLOW_UP,
                event=FollowUpContact(event_id=change_id, at=contacted_at),
                notes=notes,
            )

        summary, change = await self._change(
            case_id, d.ChangeKind.FOLLOW_UP, idempotency_key, prepare
        )
        return ChangeResult(summary=summary, change=change)

    async def confirm_medical_care(
        self, case_id: str, *, item: ClinicalItem, given_at: datetime, idempotency_key: str
    ) -> ChangeResult:
        given_at = d.validate_past_time(given_at, "given_at", now=self._clock())

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            if given_at < case.incident_at:
                raise InvalidArgument("given_at", "must not be before the incident")
            return _Prepared(
                detail={"at": given_at.isoformat(), "item": item.value},
                update_name=UPDATE_MEDICAL_CARE,
                event=MedicalCareConfirmed(event_id=change_id, item=item, at=given_at),
            )

        summary, change = await self._change(
            case_id, d.ChangeKind.MEDICAL_CARE, idempotency_key, prepare
        )
        return ChangeResult(summary=summary, change=change)

    async def request_closure(
        self, case_id: str, reason: d.ClosureReason, idempotency_key: str
    ) -> ChangeResult:
        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            # Whether closure may be asked now is the journey's call (a refused
            # closure leaves intake's status as it was: the change is undone).
            case.status = d.CaseStatus.CLOSURE_REQUESTED.value
            return _Prepared(
                detail={"reason": reason.value},
                update_name=UPDATE_CLOSURE_REQUEST,
                event=ClosureRequest(event_id=change_id, at=now, reason=reason.value),
            )

        summary, change = await self._change(
            case_id, d.ChangeKind.CLOSURE_REQUESTED, idempotency_key, prepare
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

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> _Prepared:
            if needs:
                if Need.LEGAL in needs and not case.legal_matters:
                    raise InvalidArgument(
                        "needs", "legal aid needs legal matters, and none were recorded"
                    )
                case.needs = [n.value for n in needs]
            if assessment is not None:
                self._apply_assessment(s, case, assessment)
            case.status = d.CaseStatus.OPEN.value
            case.reopen_count += 1
            facts = repo.case_facts(s, case)
            return _Prepared(
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

        summary, change = await self._change(
            case_id, d.ChangeKind.REOPENED, idempotency_key, prepare
        )
        current = None
        if assessment is not None:
            current = await self._db.run(
                lambda s: repo.get_assessment(s, self._case(s, case_id).risk_assessment_id)
            )
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
        d.validate_idempotency_key(idempotency_key)
        now = self._clock()

        def write(s: Session) -> tuple[d.Escalation, bool]:
            existing = repo.escalation_by_key(s, idempotency_key)
            if existing is not None:
                return existing, True
            if not repo.case_exists(s, case_id):
                raise NotFound("case not found")
            escalation = d.Escalation(
                escalation_id=repo.new_escalation_id(),
                case_id=case_id,
                region=region,
                level=level,
                wait=wait,
                due_at=due_at,
                referral_id=referral_id,
                recorded_at=now,
            )
            repo.insert_escalation(s, escalation, idempotency_key)
            return escalation, False

        try:
            return await self._db.run(write)
        except IntegrityError:
            found = await self._db.run(lambda s: repo.escalation_by_key(s, idempotency_key))
            if found is None:
                raise
            return found, True

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
            d.validate_region(region, "region")
        region = _regional_scope(region)
        if case_id:
            d.validate_case_id(case_id)
        if not 0 <= min_level <= max(d.ESCALATION_LEVELS):
            raise InvalidArgument("min_level", "must be between 0 and 3")
        page = _page(page_size, page_token)
        return await self._db.run(
            lambda s: repo.list_escalations(
                s, region=region, case_id=case_id, min_level=min_level, page=page
            )
        )

    # --- consent proofs for the sectors -----------------------------------------------

    async def issue_consent_proof(self, case_id: str, sector: Sector) -> tuple[str, ConsentProof]:
        """Intake's signed word that the survivor consents to `sector`, for
        that sector's referral request; FAILED_PRECONDITION without consent."""
        d.validate_case_id(case_id)
        if self._issuer is None:
            raise FailedPrecondition("this intake cannot sign consent proofs")
        issuer = self._issuer
        now = self._clock()

        def prove(s: Session) -> tuple[str, ConsentProof]:
            self._case(s, case_id)
            consent = repo.consents(s, case_id).get(d.ConsentScope.of(sector))
            if consent is None or consent.state is not d.ConsentState.GRANTED:
                raise FailedPrecondition("no consent for this sector")
            document, proof = issue_consent_proof(issuer, case_id=case_id, sector=sector)
            repo.record_audit(
                s,
                action="consent.proof_issued",
                case_id=case_id,
                target=proof.proof_id,
                reason=sector.value,
                now=now,
            )
            return document, proof

        return await self._db.run(prove)

    # --- emergency access -----------------------------------------------------------------

    async def open_emergency_grant(
        self,
        case_id: str,
        *,
        reason: GrantReason,
        note: str | None,
        ttl: timedelta | None,
    ) -> EmergencyGrant:
        d.validate_case_id(case_id)
        if note is not None and len(note) > MAX_GRANT_NOTE:
            raise InvalidArgument("note", f"must be at most {MAX_GRANT_NOTE} characters")
        note = note.strip() or None if note else None
        caller: Caller = current_caller()

        def grant(s: Session) -> EmergencyGrant:
            case = self._case(s, case_id)
            extra = {"ttl": ttl} if ttl is not None else {}
            return self._access.open_grant(
                s,
                caller,
                case_id=case_id,
                case_region=case.region,
                reason=reason,
                note=note,
                **extra,
            )

        return await self._db.run(grant)

    async def revoke_emergency_grant(self, grant_id: str) -> EmergencyGrant:
        if not grant_id or len(grant_id) > 32 or not grant_id.isascii():
            raise InvalidArgument("grant_id", "is not a grant id")
        caller = current_caller()
        return await self._db.run(lambda s: self._access.revoke(s, caller, grant_id))
