"""Every query intake makes. Never commits: the unit of work does.

Rows go in and domain objects come out; personal data is decrypted here only
because the columns do it (EncryptedText), and lists never select those columns.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from masar.contract import ClinicalItem, Need, Risk, Sector, ViolenceType
from masar.platform import audit
from masar.platform.errors import InvalidArgument
from masar.platform.identity import caller_or_none
from masar.platform.outbox import DeliveryOutcome
from services.intake import domain as d
from services.intake.models import (
    OUTBOX,
    CaseChangeRow,
    CaseRow,
    ConsentRow,
    EscalationRow,
    JourneyStartRow,
    RiskAssessmentRow,
)

START_PENDING = "PENDING"
START_DONE = "STARTED"
CHANGE_APPLIED = "APPLIED"
CHANGE_REJECTED = "REJECTED"


def new_change_id() -> str:
    # Also the outbox event id the journey deduplicates on.
    return f"chg-{secrets.token_hex(12)}"


def new_assessment_id() -> str:
    return f"risk-{secrets.token_hex(8)}"


def new_escalation_id() -> str:
    return f"esc-{secrets.token_hex(8)}"


# --- paging ---------------------------------------------------------------------------


def encode_page_token(at: datetime, key: str) -> str:
    raw = json.dumps([at.isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        at, key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(at)
        if not isinstance(key, str) or moment.tzinfo is None:
            raise ValueError
        return moment, key
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a page token from this service") from None


def _before(at_column: Any, key_column: Any, after: tuple[datetime, str]) -> ColumnElement[bool]:
    """Rows after `after` in (at, key) descending order. Spelt out rather than
    a row-value comparison, so each side binds with its column's type."""
    at, key = after
    return or_(at_column < at, and_(at_column == at, key_column < key))


@dataclass(frozen=True)
class Page:
    limit: int
    after: tuple[datetime, str] | None = None


# --- audit ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unauthenticated:
    """The actor recorded when the server runs without authentication."""

    subject: str = "unauthenticated"
    role: str = "none"
    org: str = ""


def record_audit(
    session: Session,
    *,
    action: str,
    case_id: str,
    target: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    actor = caller_or_none() or _Unauthenticated()
    audit.append(
        session, actor=actor, action=action, case_id=case_id, target=target, reason=reason, now=now
    )


# --- cases -------------------------------------------------------------------------------


def case_id_by_key(session: Session, idempotency_key: str) -> str | None:
    return session.execute(
        select(CaseRow.case_id).where(CaseRow.idempotency_key == idempotency_key)
    ).scalar_one_or_none()


def get_case(session: Session, case_id: str, *, lock: bool = False) -> CaseRow | None:
    query = select(CaseRow).where(CaseRow.case_id == case_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def case_exists(session: Session, case_id: str) -> bool:
    return bool(session.execute(select(exists().where(CaseRow.case_id == case_id))).scalar())


def insert_case(
    session: Session,
    *,
    case_id: str,
    reg: d.Registration,
    assessment: d.RiskAssessment,
    now: datetime,
) -> None:
    s = reg.survivor
    assessment_id = new_assessment_id()
    session.add(
        CaseRow(
            case_id=case_id,
            idempotency_key=reg.idempotency_key,
            region=s.region,
            status=d.CaseStatus.OPEN.value,
            risk=assessment.level.value,
            risk_assessment_id=assessment_id,
            created_at=now,
            updated_at=now,
            reopen_count=0,
            alias=s.alias,
            birth_year=str(s.birth_year) if s.birth_year is not None else None,
            nationality=s.nationality,
            migrant_status=s.migrant_status.value if s.migrant_status else None,
            languages=list(s.languages),
            accompanying_children=s.accompanying_children,
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
    )
    session.flush()
    insert_assessment(session, case_id=case_id, assessment_id=assessment_id, assessment=assessment)
    for scope, state in d.initial_consents(reg.consents).items():
        session.add(
            ConsentRow(case_id=case_id, scope=scope.value, state=state.value, updated_at=now)
        )
    session.flush()


def case_facts(session: Session, case: CaseRow) -> d.CaseFacts:
    return d.CaseFacts(
        case_id=case.case_id,
        region=case.region,
        risk=Risk(case.risk),
        needs=[Need(n) for n in case.needs],
        declined=[Sector(s) for s in case.declined],
        consents={scope: view.state for scope, view in consents(session, case.case_id).items()},
        incident_at=case.incident_at,
        violence_type=ViolenceType(case.violence_type),
        accompanying_children=case.accompanying_children,
        accessibility_needs=list(case.accessibility_needs),
        legal_matters=list(case.legal_matters),
        employment_interests=list(case.employment_interests),
        languages=list(case.languages),
    )


def _journey_state(status: str | None) -> d.JourneyState:
    return d.JourneyState.STARTED if status == START_DONE else d.JourneyState.START_PENDING


def summary(session: Session, case: CaseRow) -> d.CaseSummary:
    status = session.execute(
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
    )


def summary_of(session: Session, case_id: str) -> d.CaseSummary:
    case = get_case(session, case_id)
    assert case is not None
    return summary(session, case)


def list_cases(
    session: Session,
    *,
    region: str | None,
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
        JourneyStartRow.status.label("journey"),
    ).outerjoin(JourneyStartRow, JourneyStartRow.case_id == CaseRow.case_id)
    if region:
        query = query.where(CaseRow.region == region)
    if risk:
        query = query.where(CaseRow.risk == risk.value)
    if status:
        query = query.where(CaseRow.status == status.value)
    if page.after is not None:
        query = query.where(_before(CaseRow.created_at, CaseRow.case_id, page.after))
    query = query.order_by(CaseRow.created_at.desc(), CaseRow.case_id.desc()).limit(page.limit + 1)
    rows = session.execute(query).all()
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
        )
        for r in rows[: page.limit]
    ]
    token = None
    if len(rows) > page.limit:
        last = summaries[-1]
        token = encode_page_token(last.created_at, last.case_id)
    return summaries, token


# --- risk -------------------------------------------------------------------------------


def insert_assessment(
    session: Session, *, case_id: str, assessment_id: str, assessment: d.RiskAssessment
) -> None:
    session.add(
        RiskAssessmentRow(
            assessment_id=assessment_id,
            case_id=case_id,
            assessed_at=assessment.assessed_at,
            answers=json.dumps({k.value: v.value for k, v in assessment.answers.items()}),
            score=assessment.score,
            computed=assessment.computed.value,
            override_level=assessment.override.level.value if assessment.override else None,
            override_reason=assessment.override.reason if assessment.override else None,
            level=assessment.level.value,
        )
    )
    session.flush()


def get_assessment(session: Session, assessment_id: str) -> d.RiskAssessment:
    row = session.get(RiskAssessmentRow, assessment_id)
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


# --- consents ---------------------------------------------------------------------------


def consents(session: Session, case_id: str) -> dict[d.ConsentScope, d.ConsentView]:
    rows = session.execute(select(ConsentRow).where(ConsentRow.case_id == case_id)).scalars()
    found = {
        d.ConsentScope(r.scope): d.ConsentView(
            scope=d.ConsentScope(r.scope), state=d.ConsentState(r.state), updated_at=r.updated_at
        )
        for r in rows
    }
    return {scope: found[scope] for scope in d.ConsentScope if scope in found}


def set_consent(
    session: Session, case_id: str, scope: d.ConsentScope, state: d.ConsentState, now: datetime
) -> None:
    row = session.get(ConsentRow, (case_id, scope.value))
    if row is None:
        session.add(
            ConsentRow(case_id=case_id, scope=scope.value, state=state.value, updated_at=now)
        )
    else:
        row.state = state.value
        row.updated_at = now
    session.flush()


# --- changes ------------------------------------------------------------------------------


def change_by_key(
    session: Session, case_id: str, kind: d.ChangeKind, idempotency_key: str
) -> CaseChangeRow | None:
    return session.execute(
        select(CaseChangeRow).where(
            CaseChangeRow.case_id == case_id,
            CaseChangeRow.kind == kind.value,
            CaseChangeRow.idempotency_key == idempotency_key,
        )
    ).scalar_one_or_none()


def get_change(session: Session, change_id: str) -> CaseChangeRow | None:
    return session.get(CaseChangeRow, change_id)


def insert_change(
    session: Session,
    *,
    change_id: str,
    case_id: str,
    kind: d.ChangeKind,
    idempotency_key: str,
    now: datetime,
    notifies_journey: bool,
    detail: Mapping[str, Any],
    undo: Mapping[str, Any],
    notes: str | None,
) -> None:
    session.add(
        CaseChangeRow(
            change_id=change_id,
            case_id=case_id,
            kind=kind.value,
            idempotency_key=idempotency_key,
            recorded_at=now,
            notifies_journey=notifies_journey,
            status=CHANGE_APPLIED,
            detail=dict(detail),
            undo=dict(undo),
            notes=notes,
            rejection=None,
        )
    )
    session.flush()


def mark_new_run(session: Session, change_id: str) -> None:
    row = session.get(CaseChangeRow, change_id)
    if row is not None:
        row.detail = {**row.detail, "new_run": True}


def change_view(row: CaseChangeRow, delivery: DeliveryOutcome | None) -> d.ChangeView:
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
    )


def delivery_of(session: Session, row: CaseChangeRow) -> DeliveryOutcome | None:
    if not row.notifies_journey:
        return None
    status = session.execute(
        select(OUTBOX.c.status).where(OUTBOX.c.event_id == row.change_id)
    ).scalar_one_or_none()
    return DeliveryOutcome(status) if status else None


def changes(session: Session, case_id: str) -> list[d.ChangeView]:
    rows = session.execute(
        select(CaseChangeRow, OUTBOX.c.status)
        .outerjoin(OUTBOX, OUTBOX.c.event_id == CaseChangeRow.change_id)
        .where(CaseChangeRow.case_id == case_id)
        .order_by(CaseChangeRow.recorded_at, CaseChangeRow.change_id)
    ).all()
    return [
        change_view(row, DeliveryOutcome(status) if row.notifies_journey and status else None)
        for row, status in rows
    ]


# Columns a change may set, and how to put them back if the journey refuses it.
UNDOABLE_COLUMNS = ("status", "risk", "risk_assessment_id", "needs", "declined", "reopen_count")


def snapshot(case: CaseRow, columns: Sequence[str]) -> dict[str, Any]:
    return {c: getattr(case, c) for c in columns}


def revert_change(session: Session, change_id: str, error: str) -> bool:
    """Undo a change the journey refused: each column and consent goes back to
    its value before the change, unless a later change has moved it since."""
    row = session.get(CaseChangeRow, change_id, with_for_update=True)
    if row is None or row.status == CHANGE_REJECTED:
        return False
    case = get_case(session, row.case_id, lock=True)
    assert case is not None
    undo = row.undo
    before, after = undo.get("case_before", {}), undo.get("case_after", {})
    for column, value in before.items():
        if column in UNDOABLE_COLUMNS and getattr(case, column) == after.get(column):
            setattr(case, column, value)
    consents_before = undo.get("consents_before", {})
    consents_after = undo.get("consents_after", {})
    for scope, state in consents_before.items():
        current = session.get(ConsentRow, (row.case_id, scope))
        if current is not None and current.state == consents_after.get(scope):
            current.state = state
    row.status = CHANGE_REJECTED
    row.rejection = error[:128]
    session.flush()
    return True


# --- journey starts ----------------------------------------------------------------------


def insert_journey_start(session: Session, *, case_id: str, payload: str, now: datetime) -> None:
    session.add(
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
    session.flush()


def get_journey_start(session: Session, case_id: str) -> JourneyStartRow | None:
    return session.get(JourneyStartRow, case_id)


def pending_journey_starts(session: Session, limit: int) -> list[str]:
    return list(
        session.execute(
            select(JourneyStartRow.case_id)
            .where(JourneyStartRow.status == START_PENDING)
            .order_by(JourneyStartRow.created_at)
            .limit(limit)
        ).scalars()
    )


def record_journey_started(
    session: Session, case_id: str, *, run_id: str | None, now: datetime
) -> None:
    """The first start is done (by us, or by a concurrent attempt: idempotent)."""
    row = session.get(JourneyStartRow, case_id, with_for_update=True)
    assert row is not None
    if row.status == START_DONE:
        return
    row.status = START_DONE
    row.attempts += 1
    row.last_error = None
    row.started_at = now
    row.run_id = run_id
    row.runs = 1


def record_new_run(
    session: Session, case_id: str, *, run_id: str | None, now: datetime, payload: str
) -> None:
    """A reopened case whose journey had ended got a new run."""
    row = session.get(JourneyStartRow, case_id, with_for_update=True)
    assert row is not None
    row.status = START_DONE
    row.started_at = now
    row.run_id = run_id
    row.runs += 1
    row.payload = payload


def record_journey_start_failed(session: Session, case_id: str, error: str) -> None:
    session.execute(
        update(JourneyStartRow)
        .where(JourneyStartRow.case_id == case_id, JourneyStartRow.status == START_PENDING)
        .values(attempts=JourneyStartRow.attempts + 1, last_error=error[:128])
    )


# --- outbox order --------------------------------------------------------------------------


def outbox_entry(session: Session, event_id: str) -> tuple[str, str, str] | None:
    """(case_id, update_name, status) of one outbox entry."""
    row = session.execute(
        select(OUTBOX.c.case_id, OUTBOX.c.update_name, OUTBOX.c.status).where(
            OUTBOX.c.event_id == event_id
        )
    ).one_or_none()
    return (row.case_id, row.update_name, row.status) if row else None


def queued_events(session: Session, *, case_id: str | None = None, limit: int = 100) -> list[str]:
    """Queued updates, oldest first, of cases whose journey has started (a
    case's updates never overtake its journey's start)."""
    started = exists().where(
        JourneyStartRow.case_id == OUTBOX.c.case_id, JourneyStartRow.status == START_DONE
    )
    query = select(OUTBOX.c.event_id).where(
        OUTBOX.c.status == DeliveryOutcome.QUEUED.value, started
    )
    if case_id is not None:
        query = query.where(OUTBOX.c.case_id == case_id)
    query = query.order_by(OUTBOX.c.created_at, OUTBOX.c.event_id).limit(limit)
    return list(session.execute(query).scalars())


# --- escalations -----------------------------------------------------------------------------


def _escalation(row: EscalationRow) -> d.Escalation:
    return d.Escalation(
        escalation_id=row.escalation_id,
        case_id=row.case_id,
        region=row.region,
        level=row.level,
        wait=row.wait,
        due_at=row.due_at,
        referral_id=row.referral_id,
        recorded_at=row.recorded_at,
    )


def escalation_by_key(session: Session, idempotency_key: str) -> d.Escalation | None:
    row = session.execute(
        select(EscalationRow).where(EscalationRow.idempotency_key == idempotency_key)
    ).scalar_one_or_none()
    return _escalation(row) if row else None


def insert_escalation(session: Session, escalation: d.Escalation, idempotency_key: str) -> None:
    session.add(
        EscalationRow(
            escalation_id=escalation.escalation_id,
            idempotency_key=idempotency_key,
            case_id=escalation.case_id,
            region=escalation.region,
            level=escalation.level,
            wait=escalation.wait,
            due_at=escalation.due_at,
            referral_id=escalation.referral_id,
            recorded_at=escalation.recorded_at,
        )
    )
    session.flush()


def list_escalations(
    session: Session,
    *,
    region: str | None,
    case_id: str | None,
    min_level: int,
    page: Page,
) -> tuple[list[d.Escalation], str | None]:
    query = select(EscalationRow)
    if region:
        query = query.where(EscalationRow.region == region)
    if case_id:
        query = query.where(EscalationRow.case_id == case_id)
    if min_level:
        query = query.where(EscalationRow.level >= min_level)
    if page.after is not None:
        query = query.where(
            _before(EscalationRow.recorded_at, EscalationRow.escalation_id, page.after)
        )
    query = query.order_by(
        EscalationRow.recorded_at.desc(), EscalationRow.escalation_id.desc()
    ).limit(page.limit + 1)
    rows = list(session.execute(query).scalars())
    items = [_escalation(r) for r in rows[: page.limit]]
    token = None
    if len(rows) > page.limit:
        token = encode_page_token(items[-1].recorded_at, items[-1].escalation_id)
    return items, token
