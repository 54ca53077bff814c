"""Every query intake makes, one repository per aggregate, each holding its
session: `CaseRepository.from_session(session).get(case_id)`. Never commits:
the unit of work does.

Rows go in and domain objects come out; personal data is decrypted here only
because the columns do it (EncryptedText), and lists never select those columns.
The emergency grants' own table is queried by services.intake.grants.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from masar.contract import ClinicalItem, Need, Risk, Sector, ViolenceType
from masar.platform import audit
from masar.platform.errors import NotFound
from masar.platform.identity import SYSTEM_ACTOR, caller_or_none
from masar.platform.outbox import DeliveryOutcome
from masar.platform.paging import decode_page_token, encode_page_token
from services.intake import domain as d
from services.intake.models import (
    OUTBOX,
    CaseChangeRow,
    CaseRow,
    ConsentRow,
    JourneyStartRow,
    RiskAssessmentRow,
    TransferRow,
)
from services.intake.scope import CaseFilter

START_PENDING = "PENDING"
START_DONE = "STARTED"
CHANGE_APPLIED = "APPLIED"
CHANGE_REJECTED = "REJECTED"
# Columns a change may set, and how to put them back if the journey refuses it.
UNDOABLE_COLUMNS = (
    "status",
    "risk",
    "risk_assessment_id",
    "needs",
    "declined",
    "reopen_count",
    "holding_organisation_id",
)
# Transfer columns a change may set (services.intake.transfers).
UNDOABLE_TRANSFER_COLUMNS = (
    "status",
    "to_organisation_id",
    "decided_at",
    "decided_by",
    "decline_reason",
    "redirect_count",
    "consent_recorded_at",
    "consent_recorded_by",
)


def new_change_id() -> str:
    # Also the outbox event id the journey deduplicates on.
    return f"chg-{secrets.token_hex(12)}"


def new_assessment_id() -> str:
    return f"risk-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Page:
    """Keyset paging, newest first, in the platform's page-token format."""

    limit: int
    token: str | None = None

    def after(self, at: Any, key: Any) -> ColumnElement[bool] | None:
        """Rows after the token's (at, key), spelt out rather than a row-value
        comparison so that each side binds with its column's type."""
        if not self.token:
            return None
        after_at, after_key = decode_page_token(self.token)
        return or_(at < after_at, and_(at == after_at, key < after_key))

    def next_token(self, count: int, at: datetime, key: str) -> str | None:
        return encode_page_token(at, key) if count > self.limit else None


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: Session) -> Self:
        return cls(session)


def record_audit(
    session: Session,
    *,
    action: str,
    case_id: str,
    target: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """An audit entry by the current caller (the system outside an RPC)."""
    audit.append(
        session,
        actor=caller_or_none() or SYSTEM_ACTOR,
        action=action,
        case_id=case_id,
        target=target,
        reason=reason,
        now=now,
    )


def _flag_out(value: bool | None) -> str | None:
    """An optional yes/no as stored (encrypted text); None = not asked."""
    return None if value is None else ("true" if value else "false")


def _flag_in(stored: str | None) -> bool | None:
    return None if stored is None else stored == "true"


def _journey_state(status: str | None) -> d.JourneyState:
    return d.JourneyState.STARTED if status == START_DONE else d.JourneyState.START_PENDING


# --- cases ------------------------------------------------------------------------------


class CaseRepository(Repository):
    def get(self, case_id: str, *, lock: bool = False) -> CaseRow | None:
        query = select(CaseRow).where(CaseRow.case_id == case_id)
        if lock:
            query = query.with_for_update()
        return self.session.execute(query).scalar_one_or_none()

    def get_one(self, case_id: str, *, lock: bool = False) -> CaseRow:
        case = self.get(case_id, lock=lock)
        if case is None:
            raise NotFound("case not found")
        return case

    def exists(self, case_id: str) -> bool:
        query = select(exists().where(CaseRow.case_id == case_id))
        return bool(self.session.execute(query).scalar())

    def insert(
        self,
        *,
        case_id: str,
        reg: d.Registration,
        assessment: d.RiskAssessment,
        now: datetime,
        source_organisation_id: str | None = None,
        holding_organisation_id: str | None = None,
    ) -> CaseRow:
        s = reg.survivor
        assessment_id = new_assessment_id()
        case = CaseRow(
            case_id=case_id,
            region=s.region,
            status=d.CaseStatus.OPEN.value,
            risk=assessment.level.value,
            risk_assessment_id=assessment_id,
            created_at=now,
            updated_at=now,
            reopen_count=0,
            source_organisation_id=source_organisation_id,
            holding_organisation_id=holding_organisation_id,
            alias=s.alias,
            birth_year=str(s.birth_year) if s.birth_year is not None else None,
            nationality=s.nationality,
            migrant_status=s.migrant_status.value if s.migrant_status else None,
            languages=list(s.languages),
            accompanying_children=s.accompanying_children,
            interpreter_needed=_flag_out(s.interpreter_needed),
            phone=s.contact.phone,
            email=s.contact.email,
            address=s.contact.address,
            safe_contact_instructions=s.contact.safe_contact_instructions,
            incident_at=reg.incident.occurred_at,
            violence_type=reg.incident.violence_type.value,
            incident_contexts=[c.value for c in reg.incident.contexts],
            narrative=reg.incident.narrative,
            needs=[n.value for n in reg.needs],
            declined=[],
            accessibility_needs=list(reg.accessibility_needs),
            legal_matters=[m.value for m in reg.legal_matters],
            employment_interests=list(reg.employment_interests),
        )
        self.session.add(case)
        self.session.flush()
        self._insert_assessment(case_id, assessment_id, assessment)
        for scope, state in d.initial_consents(reg.consents).items():
            self.session.add(
                ConsentRow(case_id=case_id, scope=scope.value, state=state.value, updated_at=now)
            )
        self.session.flush()
        return case

    def facts(self, case: CaseRow) -> d.CaseFacts:
        return d.CaseFacts(
            case_id=case.case_id,
            region=case.region,
            risk=Risk(case.risk),
            needs=[Need(n) for n in case.needs],
            declined=[Sector(s) for s in case.declined],
            consents={scope: view.state for scope, view in self.consents(case.case_id).items()},
            incident_at=case.incident_at,
            violence_type=ViolenceType(case.violence_type),
            accompanying_children=case.accompanying_children,
            accessibility_needs=list(case.accessibility_needs),
            legal_matters=list(case.legal_matters),
            employment_interests=list(case.employment_interests),
            languages=list(case.languages),
            holding_organisation_id=case.holding_organisation_id,
        )

    def summary(self, case: CaseRow) -> d.CaseSummary:
        status = self.session.execute(
            select(JourneyStartRow.status).where(JourneyStartRow.case_id == case.case_id)
        ).scalar_one_or_none()
        return d.CaseSummary(
            case_id=case.case_id,
            region=case.region,
            risk=Risk(case.risk),
            status=d.CaseStatus(case.status),
            journey=_journey_state(status),
            created_at=case.created_at,
            updated_at=case.updated_at,
            reopen_count=case.reopen_count,
            source_organisation_id=case.source_organisation_id,
            holding_organisation_id=case.holding_organisation_id,
        )

    def view(self, case_id: str) -> d.CaseView:
        """The full case, personal data included (the caller audits the read)."""
        case = self.get_one(case_id)
        birth_year = int(case.birth_year) if case.birth_year else None
        migrant = d.MigrantStatus(case.migrant_status) if case.migrant_status else None
        return d.CaseView(
            summary=self.summary(case),
            survivor=d.SurvivorProfile(
                region=case.region,
                alias=case.alias,
                birth_year=birth_year,
                nationality=case.nationality,
                migrant_status=migrant,
                languages=list(case.languages),
                contact=d.ContactDetails(
                    phone=case.phone,
                    email=case.email,
                    address=case.address,
                    safe_contact_instructions=case.safe_contact_instructions,
                ),
                accompanying_children=case.accompanying_children,
                interpreter_needed=_flag_in(case.interpreter_needed),
            ),
            incident=d.Incident(
                occurred_at=case.incident_at,
                violence_type=ViolenceType(case.violence_type),
                contexts=[d.IncidentContext(c) for c in case.incident_contexts],
                narrative=case.narrative,
            ),
            assessment=self.assessment(case.risk_assessment_id),
            needs=[Need(n) for n in case.needs],
            declined=[Sector(x) for x in case.declined],
            accessibility_needs=list(case.accessibility_needs),
            legal_matters=[d.LegalMatter(m) for m in case.legal_matters],
            employment_interests=list(case.employment_interests),
            consents=list(self.consents(case_id).values()),
            changes=ChangeRepository(self.session).of_case(case_id),
        )

    def list(
        self,
        *,
        scope: CaseFilter,
        risk: Risk | None,
        status: d.CaseStatus | None,
        page: Page,
    ) -> tuple[list[d.CaseSummary], str | None]:
        # Only plain columns: a list never decrypts personal data.
        query = select(
            CaseRow.case_id,
            CaseRow.region,
            CaseRow.risk,
            CaseRow.status,
            CaseRow.created_at,
            CaseRow.updated_at,
            CaseRow.reopen_count,
            CaseRow.source_organisation_id,
            CaseRow.holding_organisation_id,
            JourneyStartRow.status.label("journey"),
        ).outerjoin(JourneyStartRow, JourneyStartRow.case_id == CaseRow.case_id)
        if scope.region:
            query = query.where(CaseRow.region == scope.region)
        if scope.holding_organisation_id is not None:
            query = query.where(CaseRow.holding_organisation_id == scope.holding_organisation_id)
        if scope.source_organisation_id is not None:
            query = query.where(CaseRow.source_organisation_id == scope.source_organisation_id)
        if risk:
            query = query.where(CaseRow.risk == risk.value)
        if status:
            query = query.where(CaseRow.status == status.value)
        after = page.after(CaseRow.created_at, CaseRow.case_id)
        if after is not None:
            query = query.where(after)
        query = query.order_by(CaseRow.created_at.desc(), CaseRow.case_id.desc())
        rows = self.session.execute(query.limit(page.limit + 1)).all()
        summaries = [
            d.CaseSummary(
                case_id=r.case_id,
                region=r.region,
                risk=Risk(r.risk),
                status=d.CaseStatus(r.status),
                journey=_journey_state(r.journey),
                created_at=r.created_at,
                updated_at=r.updated_at,
                reopen_count=r.reopen_count,
                source_organisation_id=r.source_organisation_id,
                holding_organisation_id=r.holding_organisation_id,
            )
            for r in rows[: page.limit]
        ]
        last = summaries[-1] if summaries else None
        token = page.next_token(len(rows), last.created_at, last.case_id) if last else None
        return summaries, token

    # -- risk --

    def _insert_assessment(
        self, case_id: str, assessment_id: str, assessment: d.RiskAssessment
    ) -> None:
        override = assessment.override
        self.session.add(
            RiskAssessmentRow(
                assessment_id=assessment_id,
                case_id=case_id,
                assessed_at=assessment.assessed_at,
                answers=json.dumps({k.value: v.value for k, v in assessment.answers.items()}),
                score=assessment.score,
                computed=assessment.computed.value,
                override_level=override.level.value if override else None,
                override_reason=override.reason if override else None,
                level=assessment.level.value,
            )
        )
        self.session.flush()

    def apply_assessment(self, case: CaseRow, assessment: d.RiskAssessment) -> None:
        """A new assessment becomes the case's current one."""
        assessment_id = new_assessment_id()
        self._insert_assessment(case.case_id, assessment_id, assessment)
        case.risk = assessment.level.value
        case.risk_assessment_id = assessment_id

    def assessment(self, assessment_id: str) -> d.RiskAssessment:
        row = self.session.get(RiskAssessmentRow, assessment_id)
        assert row is not None
        answers = {d.Indicator(k): d.Answer(v) for k, v in json.loads(row.answers).items()}
        override = (
            d.RiskOverride(level=Risk(row.override_level), reason=row.override_reason or "")
            if row.override_level
            else None
        )
        return d.RiskAssessment(
            answers=answers,
            score=row.score,
            computed=Risk(row.computed),
            critical=d.critical_indicators(answers),
            override=override,
            assessed_at=row.assessed_at,
        )

    def current_assessment(self, case_id: str) -> d.RiskAssessment:
        return self.assessment(self.get_one(case_id).risk_assessment_id)

    # -- consents --

    def consents(self, case_id: str) -> dict[d.ConsentScope, d.ConsentView]:
        rows = self.session.execute(
            select(ConsentRow).where(ConsentRow.case_id == case_id)
        ).scalars()
        found = {
            d.ConsentScope(r.scope): d.ConsentView(
                scope=d.ConsentScope(r.scope),
                state=d.ConsentState(r.state),
                updated_at=r.updated_at,
            )
            for r in rows
        }
        return {scope: found[scope] for scope in d.ConsentScope if scope in found}

    def set_consent(
        self, case_id: str, scope: d.ConsentScope, state: d.ConsentState, now: datetime
    ) -> None:
        row = self.session.get(ConsentRow, (case_id, scope.value))
        if row is None:
            self.session.add(
                ConsentRow(case_id=case_id, scope=scope.value, state=state.value, updated_at=now)
            )
        else:
            row.state = state.value
            row.updated_at = now
        self.session.flush()


# --- changes ------------------------------------------------------------------------------


class ChangeRepository(Repository):
    """Changes made through the API after registration, and how to undo them."""

    def get(self, change_id: str) -> CaseChangeRow | None:
        return self.session.get(CaseChangeRow, change_id)

    def state_of(self, case: CaseRow) -> dict[str, Any]:
        """What a change may alter: the undoable columns, the consents and
        the case's transfers."""
        transfers = self.session.execute(
            select(TransferRow).where(TransferRow.case_id == case.case_id)
        ).scalars()
        return {
            "case": {c: getattr(case, c) for c in UNDOABLE_COLUMNS},
            "consents": {
                scope.value: view.state.value
                for scope, view in CaseRepository(self.session).consents(case.case_id).items()
            },
            "transfers": {t.transfer_id: _transfer_state(t) for t in transfers},
        }

    def insert(
        self,
        *,
        change_id: str,
        case_id: str,
        kind: d.ChangeKind,
        now: datetime,
        notifies_journey: bool,
        detail: Mapping[str, Any],
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        notes: str | None,
    ) -> None:
        """Record a change with what it altered (`state_of` before and after)."""

        def diff(part: str, one: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in one[part].items() if other[part].get(k) != v}

        undo = {
            "case_before": diff("case", before, after),
            "case_after": diff("case", after, before),
            "consents_before": diff("consents", before, after),
            "consents_after": diff("consents", after, before),
            "transfers_before": diff("transfers", before, after),
            "transfers_after": diff("transfers", after, before),
        }
        self.session.add(
            CaseChangeRow(
                change_id=change_id,
                case_id=case_id,
                kind=kind.value,
                recorded_at=now,
                notifies_journey=notifies_journey,
                status=CHANGE_APPLIED,
                detail=dict(detail),
                undo=undo,
                notes=notes,
                rejection=None,
            )
        )
        self.session.flush()

    def mark_new_run(self, change_id: str) -> None:
        row = self.get(change_id)
        if row is not None:
            row.detail = {**row.detail, "new_run": True}

    def view(self, change_id: str) -> d.ChangeView:
        row = self.get(change_id)
        assert row is not None
        return _change_view(row, self._delivery(row))

    def of_case(self, case_id: str) -> list[d.ChangeView]:
        rows = self.session.execute(
            select(CaseChangeRow, OUTBOX.c.status)
            .outerjoin(OUTBOX, OUTBOX.c.event_id == CaseChangeRow.change_id)
            .where(CaseChangeRow.case_id == case_id)
            .order_by(CaseChangeRow.recorded_at, CaseChangeRow.change_id)
        ).all()
        return [
            _change_view(row, DeliveryOutcome(status) if row.notifies_journey and status else None)
            for row, status in rows
        ]

    def _delivery(self, row: CaseChangeRow) -> DeliveryOutcome | None:
        if not row.notifies_journey:
            return None
        status = self.session.execute(
            select(OUTBOX.c.status).where(OUTBOX.c.event_id == row.change_id)
        ).scalar_one_or_none()
        return DeliveryOutcome(status) if status else None

    def revert(self, change_id: str, error: str) -> bool:
        """Undo a change the journey refused: each column and consent goes back
        to its value before the change, unless a later change has moved it since."""
        session = self.session
        row = session.get(CaseChangeRow, change_id, with_for_update=True)
        if row is None or row.status == CHANGE_REJECTED:
            return False
        case = CaseRepository(session).get_one(row.case_id, lock=True)
        undo = row.undo
        before, after = undo.get("case_before", {}), undo.get("case_after", {})
        for column, value in before.items():
            if column in UNDOABLE_COLUMNS and getattr(case, column) == after.get(column):
                setattr(case, column, value)
        consents_after = undo.get("consents_after", {})
        for scope, state in undo.get("consents_before", {}).items():
            current = session.get(ConsentRow, (row.case_id, scope))
            if current is not None and current.state == consents_after.get(scope):
                current.state = state
        self._revert_transfers(undo)
        row.status = CHANGE_REJECTED
        row.rejection = error[:128]
        session.flush()
        return True

    def _revert_transfers(self, undo: Mapping[str, Any]) -> None:
        """A transfer the change created goes; one it altered gets its columns
        back, unless a later change has moved it since."""
        before = undo.get("transfers_before", {})
        for transfer_id, after in undo.get("transfers_after", {}).items():
            current = self.session.get(TransferRow, transfer_id, with_for_update=True)
            if current is None or _transfer_state(current) != after:
                continue
            if transfer_id not in before:
                self.session.delete(current)
                continue
            for column, value in before[transfer_id].items():
                if column in UNDOABLE_TRANSFER_COLUMNS:
                    if column.endswith("_at") and value is not None:
                        value = datetime.fromisoformat(value)
                    setattr(current, column, value)
        self.session.flush()


def _transfer_state(row: TransferRow) -> dict[str, Any]:
    """A transfer's undoable columns, as JSON values."""
    state: dict[str, Any] = {}
    for column in UNDOABLE_TRANSFER_COLUMNS:
        value = getattr(row, column)
        state[column] = value.isoformat() if isinstance(value, datetime) else value
    return state


def _change_view(row: CaseChangeRow, delivery: DeliveryOutcome | None) -> d.ChangeView:
    detail = row.detail
    at = detail.get("at")
    return d.ChangeView(
        change_id=row.change_id,
        kind=d.ChangeKind(row.kind),
        recorded_at=row.recorded_at,
        delivery=delivery,
        rejected=row.status == CHANGE_REJECTED,
        scope=d.ConsentScope(detail["scope"]) if "scope" in detail else None,
        at=datetime.fromisoformat(at) if at else None,
        clinical_item=ClinicalItem(detail["item"]) if "item" in detail else None,
        closure_reason=d.ClosureReason(detail["reason"]) if "reason" in detail else None,
        channel=d.FollowUpChannel(detail["channel"]) if "channel" in detail else None,
        risk=Risk(detail["risk"]) if "risk" in detail else None,
        notes=row.notes,
        new_journey_run=bool(detail.get("new_run")),
        transfer_id=detail.get("transfer_id"),
    )


# --- journey starts and the outbox's order ------------------------------------------------


class JourneyStartRepository(Repository):
    """The "journey start pending" markers, and the outbox entries' order
    (a case's updates never overtake its journey's start)."""

    def insert(self, *, case_id: str, payload: str, now: datetime) -> None:
        self.session.add(
            JourneyStartRow(
                case_id=case_id,
                payload=payload,
                status=START_PENDING,
                attempts=0,
                last_error=None,
                created_at=now,
                started_at=None,
                run_id=None,
                runs=0,
            )
        )
        self.session.flush()

    def get(self, case_id: str) -> JourneyStartRow | None:
        return self.session.get(JourneyStartRow, case_id)

    def pending(self, limit: int) -> list[str]:
        query = (
            select(JourneyStartRow.case_id)
            .where(JourneyStartRow.status == START_PENDING)
            .order_by(JourneyStartRow.created_at)
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())

    def started(self, case_id: str, *, run_id: str | None, now: datetime) -> None:
        """The first start is done (by us, or by a concurrent attempt: idempotent)."""
        row = self.session.get(JourneyStartRow, case_id, with_for_update=True)
        assert row is not None
        if row.status == START_DONE:
            return
        row.status = START_DONE
        row.attempts += 1
        row.last_error = None
        row.started_at = now
        row.run_id = run_id
        row.runs = 1

    def new_run(self, case_id: str, *, run_id: str | None, now: datetime, payload: str) -> None:
        """A reopened case whose journey had ended got a new run."""
        row = self.session.get(JourneyStartRow, case_id, with_for_update=True)
        assert row is not None
        row.status = START_DONE
        row.started_at = now
        row.run_id = run_id
        row.runs += 1
        row.payload = payload

    def failed(self, case_id: str, error: str) -> None:
        self.session.execute(
            update(JourneyStartRow)
            .where(JourneyStartRow.case_id == case_id, JourneyStartRow.status == START_PENDING)
            .values(attempts=JourneyStartRow.attempts + 1, last_error=error[:128])
        )

    def outbox_entry(self, event_id: str) -> tuple[str, str, str] | None:
        """(case_id, update_name, status) of one outbox entry."""
        row = self.session.execute(
            select(OUTBOX.c.case_id, OUTBOX.c.update_name, OUTBOX.c.status).where(
                OUTBOX.c.event_id == event_id
            )
        ).one_or_none()
        return (row.case_id, row.update_name, row.status) if row else None

    def queued_events(self, *, case_id: str | None = None, limit: int = 100) -> list[str]:
        """Queued updates, oldest first, of cases whose journey has started."""
        started = exists().where(
            JourneyStartRow.case_id == OUTBOX.c.case_id, JourneyStartRow.status == START_DONE
        )
        query = select(OUTBOX.c.event_id).where(
            OUTBOX.c.status == DeliveryOutcome.QUEUED.value, started
        )
        if case_id is not None:
            query = query.where(OUTBOX.c.case_id == case_id)
        query = query.order_by(OUTBOX.c.created_at, OUTBOX.c.event_id).limit(limit)
        return list(self.session.execute(query).scalars())
