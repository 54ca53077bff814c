"""The change-with-undo: how every change to a case reaches its journey.

A change is written (case columns, consents, transfers, the change record,
its outbox entry and its idempotency-ledger entry) in one unit of work, then
delivered to the journey as an Update. If the journey refuses it, the outbox
undoes it (services.intake.journey, `ChangeRepository.revert`) and the caller
gets FAILED_PRECONDITION. A retry with the same idempotency key returns the
first change; the same key with another request is refused.

Who may make the change is checked under the case's lock, before anything
is written (`authorise`); a refusal is audited in a unit of work of its own.

The outbox entry names who made the change (the verified caller), and the
outbox signs an actor assertion for it with intake's assertion key at each
delivery (masar.platform.outbox, masar.platform.assertions): the journey
refuses an Update that does not carry one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from masar.platform.assertions import Actor
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, PermissionDenied
from masar.platform.idempotency import IdempotencyLedger, fingerprint, run_retrying_conflicts
from masar.platform.identity import caller_or_none
from masar.platform.validation import require_idempotency_key
from services.intake import domain as d
from services.intake.journey import IntakeOutbox
from services.intake.models import CaseRow
from services.intake.repository import (
    CHANGE_APPLIED,
    CaseRepository,
    ChangeRepository,
    new_change_id,
    record_audit,
)
from services.intake.scope import require_holder


def change_scope(kind: d.ChangeKind) -> str:
    return f"intake.{kind.value}"


@dataclass
class Prepared:
    """What one change does, built inside its unit of work."""

    detail: dict[str, Any]
    update_name: str | None = None
    event: Any = None  # a contract dataclass with event_id, or None (stays with intake)
    notes: str | None = None


Prepare = Callable[[Session, CaseRow, str, datetime], Prepared]
# May the current caller make this change to this case? Raises PermissionDenied.
Authorise = Callable[[Session, CaseRow], None]


def holder_only(session: Session, case: CaseRow) -> None:
    require_holder(caller_or_none(), case)


class ChangeWriter:
    def __init__(
        self,
        database: Database,
        outbox: IntakeOutbox,
        *,
        ledger: IdempotencyLedger,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = database
        self._outbox = outbox
        self._ledger = ledger
        self._clock = clock

    async def apply(
        self,
        case_id: str,
        kind: d.ChangeKind,
        idempotency_key: str,
        request: tuple[Any, ...],
        prepare: Prepare,
        *,
        authorise: Authorise = holder_only,
    ) -> tuple[d.CaseSummary, d.ChangeView]:
        """Write the change, its outbox entry and its key in one unit of work;
        deliver it; the outbox undoes what the journey refuses, and the caller
        then gets FAILED_PRECONDITION."""
        d.require_intake_case_id(case_id)
        require_idempotency_key(idempotency_key)
        now = self._clock()
        scope = change_scope(kind)
        print_ = fingerprint(case_id, *request)

        def write(s: Session) -> str:
            case = CaseRepository.from_session(s).get_one(case_id, lock=True)
            authorise(s, case)
            entry = self._ledger.lookup(s, scope=scope, key=idempotency_key, fingerprint=print_)
            if entry is not None:
                return entry.subject_id
            changes = ChangeRepository.from_session(s)
            change_id = new_change_id()
            before = changes.state_of(case)
            prepared = prepare(s, case, change_id, now)
            case.updated_at = now
            s.flush()
            changes.insert(
                change_id=change_id,
                case_id=case_id,
                kind=kind,
                now=now,
                notifies_journey=prepared.event is not None,
                detail=prepared.detail,
                before=before,
                after=changes.state_of(case),
                notes=prepared.notes,
            )
            if prepared.event is not None and prepared.update_name is not None:
                caller = caller_or_none()
                self._outbox.enqueue(
                    s,
                    case_id=case_id,
                    update_name=prepared.update_name,
                    event=prepared.event,
                    # Who acted, for the assertion signed at delivery.
                    actor=Actor.of(caller) if caller is not None else None,
                )
            self._ledger.record(
                s, scope=scope, key=idempotency_key, fingerprint=print_, subject_id=change_id
            )
            record_audit(s, action=f"case.{kind.value}", case_id=case_id, target=change_id, now=now)
            return change_id

        try:
            change_id = await run_retrying_conflicts(self._db, write)
        except PermissionDenied:
            await self._db.run(
                lambda s: record_audit(
                    s, action="case.change_refused", case_id=case_id, reason=kind.value, now=now
                )
            )
            raise

        def pending_delivery(s: Session) -> bool:
            row = ChangeRepository.from_session(s).get(change_id)
            assert row is not None
            return row.notifies_journey and row.status == CHANGE_APPLIED

        rejected = None
        if await self._db.run(pending_delivery):
            _, rejected = await self._outbox.deliver_in_order(case_id, change_id)

        def result(s: Session) -> tuple[d.CaseSummary, d.ChangeView]:
            cases = CaseRepository.from_session(s)
            view = ChangeRepository.from_session(s).view(change_id)
            return cases.summary(cases.get_one(case_id)), view

        summary, view = await self._db.run(result)
        if view.rejected:
            what = rejected.error_type if rejected and rejected.error_type else "Rejected"
            raise FailedPrecondition(f"the case's journey refused this change ({what})")
        return summary, view
