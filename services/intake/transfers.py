"""Case transfers between organisations: intake's use cases.

The organisation holding a case asks another to take it over, with a reason
from a structured list and the survivor's consent to that recipient, which is
recorded (refused without it, naming `survivor_consents`). The organisation
the request is addressed to accepts — it then holds the case, and the one
that held it loses access — or declines. A coordinator of the case's region
may redirect a waiting request to another organisation (with the survivor's
consent to that one). The journey keeps the `transfer_accept` deadline and
its ladder, and reports each rung back (`record_rung`); at the last one the
request lapses and the case stays with its holder.

Each request, decision and redirect is a change of the case, written and
delivered with the change-with-undo (services.intake.changes): a change the
journey refuses (a stale or unknown transfer, a closed journey) is undone and
the caller gets FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from masar.contract import (
    LEVEL_REMINDER,
    TRANSFER_ACCEPT_WAIT,
    UPDATE_TRANSFER_DECISION,
    UPDATE_TRANSFER_REDIRECT,
    UPDATE_TRANSFER_REQUEST,
    TransferDecision,
    TransferDeclineReason,
    TransferReason,
    TransferRedirect,
    TransferRequest,
    TransferStatus,
    new_transfer_id,
)
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.idempotency import IdempotencyLedger, fingerprint, run_retrying_conflicts
from masar.platform.identity import SYSTEM_ACTOR, Caller, caller_or_none
from masar.platform.validation import require_idempotency_key
from services.intake import domain as d
from services.intake.changes import ChangeWriter, Prepared
from services.intake.inbox import (
    EscalationRepository,
    TransferRepository,
    new_escalation_id,
    transfer_view,
)
from services.intake.models import CaseRow
from services.intake.repository import CaseRepository, Page, record_audit
from services.intake.scope import HOLDER_ROLES
from services.intake.transfer_domain import (
    TransferRecord,
    may_see,
    require_receiver,
    require_regional_coordinator,
    require_transfer_id,
    transfer_scope,
)

RUNG_SCOPE = "intake.transfer_rung"
CONSENT_REQUIRED = "the survivor's consent to the transfer is required"


@dataclass(frozen=True)
class TransferResult:
    transfer: TransferRecord
    summary: d.CaseSummary
    change: d.ChangeView


def _require_consent(survivor_consents: bool) -> None:
    if not survivor_consents:
        raise InvalidArgument("survivor_consents", CONSENT_REQUIRED)


def _who(caller: Caller | None) -> str:
    return (caller or SYSTEM_ACTOR).subject


class TransferService:
    def __init__(
        self,
        database: Database,
        changes: ChangeWriter,
        *,
        ledger: IdempotencyLedger,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = database
        self._changes = changes
        self._ledger = ledger
        self._clock = clock

    async def _record(self, transfer_id: str) -> TransferRecord:
        return await self._db.run(
            lambda s: transfer_view(TransferRepository.from_session(s).get_one(transfer_id))
        )

    async def _result(self, summary: d.CaseSummary, change: d.ChangeView) -> TransferResult:
        assert change.transfer_id is not None
        record = await self._record(change.transfer_id)
        return TransferResult(transfer=record, summary=summary, change=change)

    # --- the holding organisation asks -------------------------------------------------

    async def request(
        self,
        case_id: str,
        *,
        to_organisation_id: str,
        reason: TransferReason,
        survivor_consents: bool,
        idempotency_key: str,
    ) -> TransferResult:
        d.require_intake_case_id(case_id)
        d.require_organisation_id(to_organisation_id, "to_organisation_id")
        _require_consent(survivor_consents)
        caller = caller_or_none()
        if caller is not None and caller.role in HOLDER_ROLES and not caller.org:
            raise PermissionDenied("transfers are between organisations: the token names none")

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            holder = case.holding_organisation_id
            if not holder:
                raise FailedPrecondition("the case has no holding organisation to transfer from")
            if to_organisation_id == holder:
                raise InvalidArgument("to_organisation_id", "already holds the case")
            transfers = TransferRepository.from_session(s)
            if transfers.pending_of(case.case_id) is not None:
                raise FailedPrecondition("a transfer of this case is already waiting for an answer")
            transfer_id = new_transfer_id()
            transfers.insert(
                transfer_id=transfer_id,
                case=case,
                from_organisation_id=holder,
                to_organisation_id=to_organisation_id,
                reason=reason,
                requested_by=_who(caller),
                now=now,
            )
            # Her consent to this recipient, recorded like a referral consent.
            record_audit(
                s,
                action="consent.transfer_granted",
                case_id=case.case_id,
                target=transfer_id,
                now=now,
            )
            return Prepared(
                detail={"transfer_id": transfer_id, "transfer_reason": reason.value},
                update_name=UPDATE_TRANSFER_REQUEST,
                event=TransferRequest(
                    event_id=change_id,
                    transfer_id=transfer_id,
                    from_organisation_id=holder,
                    to_organisation_id=to_organisation_id,
                    reason=reason,
                    requested_at=now,
                    consent_at=now,
                ),
            )

        summary, change = await self._changes.apply(
            case_id,
            d.ChangeKind.TRANSFER_REQUESTED,
            idempotency_key,
            (to_organisation_id, reason, survivor_consents),
            prepare,
        )
        return await self._result(summary, change)

    # --- the receiving organisation answers ---------------------------------------------

    async def _case_of(self, transfer_id: str) -> TransferRecord:
        require_transfer_id(transfer_id)
        return await self._record(transfer_id)

    async def decide(
        self,
        transfer_id: str,
        *,
        accept: bool,
        decline_reason: TransferDeclineReason | None,
        idempotency_key: str,
    ) -> TransferResult:
        record = await self._case_of(transfer_id)
        caller = caller_or_none()
        require_receiver(caller, record)
        if not accept and decline_reason is None:
            raise InvalidArgument("decline_reason", "is required when declining")

        def authorise(s: Session, case: CaseRow) -> None:
            row = TransferRepository.from_session(s).get_one(transfer_id, lock=True)
            require_receiver(caller, transfer_view(row))

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            row = TransferRepository.from_session(s).get_one(transfer_id, lock=True)
            if row.status != TransferStatus.PENDING.value:
                raise FailedPrecondition("the transfer is no longer waiting for an answer")
            row.status = (TransferStatus.ACCEPTED if accept else TransferStatus.DECLINED).value
            row.decided_at = now
            row.decided_by = _who(caller)
            row.decline_reason = None if accept or decline_reason is None else decline_reason.value
            row.updated_at = now
            if accept:
                # Ownership moves: the organisation that held the case loses access.
                case.holding_organisation_id = row.to_organisation_id
            return Prepared(
                detail={"transfer_id": transfer_id, "accepted": accept},
                update_name=UPDATE_TRANSFER_DECISION,
                event=TransferDecision(
                    event_id=change_id,
                    transfer_id=transfer_id,
                    to_organisation_id=row.to_organisation_id,
                    accepted=accept,
                    decided_at=now,
                    decline_reason=None if accept else decline_reason,
                ),
            )

        summary, change = await self._changes.apply(
            record.case_id,
            d.ChangeKind.TRANSFER_DECIDED,
            idempotency_key,
            (transfer_id, accept, decline_reason),
            prepare,
            authorise=authorise,
        )
        return await self._result(summary, change)

    # --- a coordinator of the region redirects ------------------------------------------

    async def redirect(
        self,
        transfer_id: str,
        *,
        to_organisation_id: str,
        survivor_consents: bool,
        idempotency_key: str,
    ) -> TransferResult:
        record = await self._case_of(transfer_id)
        caller = caller_or_none()
        require_regional_coordinator(caller, record.region)
        d.require_organisation_id(to_organisation_id, "to_organisation_id")
        _require_consent(survivor_consents)

        def authorise(s: Session, case: CaseRow) -> None:
            require_regional_coordinator(caller, case.region)

        def prepare(s: Session, case: CaseRow, change_id: str, now: datetime) -> Prepared:
            row = TransferRepository.from_session(s).get_one(transfer_id, lock=True)
            if row.status != TransferStatus.PENDING.value:
                raise FailedPrecondition("the transfer is no longer waiting for an answer")
            if to_organisation_id in (row.to_organisation_id, row.from_organisation_id):
                raise InvalidArgument(
                    "to_organisation_id", "must name another organisation than the two concerned"
                )
            row.to_organisation_id = to_organisation_id
            row.redirect_count += 1
            row.consent_recorded_at = now
            row.consent_recorded_by = _who(caller)
            row.updated_at = now
            record_audit(
                s,
                action="consent.transfer_granted",
                case_id=case.case_id,
                target=transfer_id,
                now=now,
            )
            return Prepared(
                detail={"transfer_id": transfer_id},
                update_name=UPDATE_TRANSFER_REDIRECT,
                event=TransferRedirect(
                    event_id=change_id,
                    transfer_id=transfer_id,
                    to_organisation_id=to_organisation_id,
                    coordinator_id=_who(caller),
                    redirected_at=now,
                    consent_at=now,
                ),
            )

        summary, change = await self._changes.apply(
            record.case_id,
            d.ChangeKind.TRANSFER_REDIRECTED,
            idempotency_key,
            (transfer_id, to_organisation_id, survivor_consents),
            prepare,
            authorise=authorise,
        )
        return await self._result(summary, change)

    # --- reading ----------------------------------------------------------------------------

    async def get(self, transfer_id: str) -> TransferRecord:
        record = await self._case_of(transfer_id)
        if not may_see(caller_or_none(), record):
            raise PermissionDenied("the transfer concerns other organisations")
        return record

    async def list(
        self, *, case_id: str | None, status: TransferStatus | None, page: Page
    ) -> tuple[list[TransferRecord], str | None]:
        scope = transfer_scope(caller_or_none())
        if case_id:
            d.require_intake_case_id(case_id)
        return await self._db.run(
            lambda s: TransferRepository.from_session(s).list(
                scope=scope, case_id=case_id, status=status, page=page
            )
        )

    # --- the journey's ladder -------------------------------------------------------------

    async def record_rung(
        self,
        *,
        case_id: str,
        region: str,
        transfer_id: str,
        to_organisation_id: str,
        level: int,
        due_at: datetime,
        lapsed: bool,
        idempotency_key: str,
    ) -> tuple[d.Escalation, TransferRecord, bool]:
        """A rung of a transfer's ladder: a reminder addressed to the receiving
        organisation, an escalation to the region's coordinators, and at the
        last rung the lapse (the case stays with its holder). Idempotent by key;
        (escalation, transfer, duplicate)."""
        d.validate_escalation(
            case_id=case_id, region=region, level=level, wait=TRANSFER_ACCEPT_WAIT, referral_id=None
        )
        require_transfer_id(transfer_id)
        d.require_organisation_id(to_organisation_id, "to_organisation_id")
        require_idempotency_key(idempotency_key)
        now = self._clock()
        print_ = fingerprint(
            case_id, region, transfer_id, to_organisation_id, level, due_at, lapsed
        )

        def write(s: Session) -> tuple[d.Escalation, TransferRecord, bool]:
            escalations = EscalationRepository.from_session(s)
            transfers = TransferRepository.from_session(s)
            entry = self._ledger.lookup(
                s, scope=RUNG_SCOPE, key=idempotency_key, fingerprint=print_
            )
            if entry is not None:
                row = transfers.get_one(transfer_id)
                return escalations.get(entry.subject_id), transfer_view(row), True
            CaseRepository.from_session(s).get_one(case_id)
            row = transfers.get_one(transfer_id, lock=True)
            if row.case_id != case_id:
                raise InvalidArgument("transfer_id", "is not a transfer of this case")
            if (
                lapsed
                and row.status == TransferStatus.PENDING.value
                and row.to_organisation_id == to_organisation_id
            ):
                row.status = TransferStatus.LAPSED.value
                row.updated_at = now
                record_audit(
                    s, action="transfer.lapsed", case_id=case_id, target=transfer_id, now=now
                )
            escalation = d.Escalation(
                escalation_id=new_escalation_id(),
                case_id=case_id,
                region=region,
                level=level,
                wait=TRANSFER_ACCEPT_WAIT,
                due_at=due_at,
                referral_id=None,
                recorded_at=now,
                transfer_id=transfer_id,
                organisation_id=to_organisation_id if level == LEVEL_REMINDER else None,
            )
            escalations.insert(escalation)
            self._ledger.record(
                s,
                scope=RUNG_SCOPE,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=escalation.escalation_id,
            )
            return escalation, transfer_view(row), False

        return await run_retrying_conflicts(self._db, write)
