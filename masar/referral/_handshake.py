"""`SectorHandshake`: the sector side of the referral handshake, each
operation one unit of work (plus journey delivery for staff actions). Sector
services delegate to it; see the package docstring for the whole story.

(The journey's side of the same handshake is `workflows.handshake`, which
this module never imports.)"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.orm import Session

from masar import contract
from masar.contract import (
    Milestone,
    PurgeResult,
    ReferralDecision,
    ReferralMilestone,
    ReferralStatus,
    Sector,
)
from masar.platform import audit
from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.idempotency import IdempotencyLedger, fingerprint, run_retrying_conflicts
from masar.platform.identity import caller_or_none, current_caller
from masar.platform.outbox import DeliveryOutcome, Outbox
from masar.referral._domain import (
    CLOSING_STATUSES,
    MILESTONE_FROM,
    MILESTONE_TO,
    OPEN_STATUSES,
    ReferralDraft,
    ReferralFilter,
    ReferralPage,
    ReferralRecord,
    StaffActionResult,
    StaffDecision,
    stable_event_id,
)
from masar.referral._repository import M, N, ReferralRepository, SectorHooks
from masar.referral._roles import SYSTEM_ACTOR, check_referral_scope, visible_to
from masar.referral.consent import WITHDRAWN_AT, ConsentVerifier, purge_scope, withdrawal_time

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)


# A sector's file of one referral, read from its row inside a unit of work.
FileReader = Callable[[Session, ReferralRecord, M], T]


class Registry(Protocol[S_contra, T_co]):
    """A sector's reference data (shelters, programmes, legal providers):
    `insert` a new record from its spec (returning its id), `get` one."""

    def insert(self, session: Session, spec: S_contra) -> str: ...

    def get(self, session: Session, record_id: str, /) -> T_co: ...


@dataclass
class _Done:
    """What a staff action's unit of work did."""

    record: ReferralRecord
    snapshot: dict[str, Any] | None  # None: a replay, nothing written now
    refused: str | None = None  # a replay of an update the journey refused
    applied: ReferralStatus | None = None  # the status the action left


class SectorHandshake(Generic[M, N]):
    """The handshake operations of one sector, on its own tables."""

    def __init__(
        self,
        *,
        sector: Sector,
        model: type[M],
        database: Database,
        outbox: Outbox,
        ledger: IdempotencyLedger,
        hooks: SectorHooks[M, N],
        consent: ConsentVerifier | None = None,
        audited: bool = False,
    ) -> None:
        self.sector = sector
        self.database = database
        self.outbox = outbox
        self.ledger = ledger
        self.hooks = hooks
        self.consent = consent
        self.audited = audited
        self.repository: ReferralRepository[M, N] = ReferralRepository(
            sector=sector, model=model, hooks=hooks
        )
        self._id_pattern = re.compile(
            rf"^{re.escape(contract.REFERRAL_ID_PREFIX[sector])}-[0-9a-f]{{16}}$"
        )

    # -- validation, access and audit --

    def check_referral_id(self, value: str, field: str = "referral_id") -> str:
        if not value:
            raise InvalidArgument(field, "is required")
        if not self._id_pattern.match(value):
            raise InvalidArgument(field, f"is not a {self.sector.value} referral id")
        return value

    async def authorise(self, referral_id: str) -> ReferralRecord:
        """The referral, if `referral_id` is one of this sector's and the
        current caller may act on it (`check_referral_scope`);
        InvalidArgument, NotFound or PermissionDenied otherwise. Every RPC on
        one referral calls this before it reads the rest of its request."""
        self.check_referral_id(referral_id)
        caller = current_caller()
        record = await self.get(referral_id)
        check_referral_scope(
            caller, self.sector, organisation_id=record.organisation_id, region=record.region
        )
        return record

    def require_own_region(self, region: str, records: str) -> str:
        """A coordinator registers the sector's reference data (`records`:
        "shelters", ...) in her own region only (checked before the rest of
        the request is read)."""
        if current_caller().region != region:
            raise PermissionDenied(f"a coordinator registers {records} in her own region only")
        return region

    def record_audit(
        self,
        session: Session,
        action: str,
        *,
        case_id: str,
        target: str | None = None,
        reason: str | None = None,
    ) -> None:
        """An audit entry by the current caller, in the caller's unit of work."""
        if self.audited:
            audit.append(
                session,
                actor=caller_or_none() or SYSTEM_ACTOR,
                action=action,
                case_id=case_id,
                target=target,
                reason=reason,
            )

    async def read_file(self, referral_id: str, read: FileReader[M, T]) -> T:
        """Read a referral's sector file (personal data): audited."""

        def work(session: Session) -> T:
            referral = self.repository.load(session, referral_id)
            result = read(session, self.repository.to_record(referral), referral)
            self.record_audit(
                session, "referral.file_read", case_id=referral.case_id, target=referral_id
            )
            return result

        return await self.database.run(work)

    async def read(self, referral_id: str, read: FileReader[M, T]) -> T:
        """Read a referral's sector file (not audited: for answering a change just made)."""

        def work(session: Session) -> T:
            referral = self.repository.load(session, referral_id)
            return read(session, self.repository.to_record(referral), referral)

        return await self.database.run(work)

    # -- reads --

    async def get(self, referral_id: str) -> ReferralRecord:
        repo = self.repository
        return await self.database.run(lambda s: repo.to_record(repo.load(s, referral_id)))

    async def list_visible(self, filters: ReferralFilter) -> ReferralPage:
        """The referrals matching `filters` that the current caller may see."""
        scoped = visible_to(current_caller(), self.sector, filters)
        return await self.database.run(lambda s: self.repository.query(s, scoped))

    # -- reference data (shelters, providers, programmes) --

    async def register(
        self,
        scope: str,
        registry: Registry[S, T],
        spec: S,
        *,
        idempotency_key: str,
        request_print: str,
    ) -> T:
        """Insert a record once per key, then get it: a retry with the same
        key gets the first one."""

        def work(session: Session) -> T:
            record_id, _ = self.ledger.once(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=request_print,
                create=lambda: registry.insert(session, spec),
            )
            return registry.get(session, record_id)

        return await run_retrying_conflicts(self.database, work)

    # -- create --

    async def create(self, draft: ReferralDraft[N], *, consent_proof: str) -> ReferralRecord:
        """A PENDING referral to a chosen (or the named) provider, if intake's
        `consent_proof` is valid for the case; a retry with the same key
        returns the first referral."""
        if self.consent is None:
            raise FailedPrecondition("consent_proof: this service cannot verify consent")
        consent = self.consent
        proof = consent.check(consent_proof, draft.case_id)
        repo = self.repository
        scope = f"{self.sector.value}.referral.create"
        print_ = fingerprint(
            draft.case_id,
            draft.region,
            draft.risk,
            draft.needs,
            draft.exclude_provider_ids,
            draft.provider_id,
        )

        def work(session: Session) -> ReferralRecord:
            # Not a proof of a consent withdrawn since (a purge told us so).
            consent.check_current(session, proof, self.ledger.table)
            referral_id, created = self.ledger.once(
                session,
                scope=scope,
                key=draft.idempotency_key,
                fingerprint=print_,
                create=lambda: repo.insert(session, draft).referral_id,
            )
            if created:
                self.record_audit(
                    session, "referral.created", case_id=draft.case_id, target=referral_id
                )
            return repo.to_record(repo.load(session, referral_id))

        return await run_retrying_conflicts(self.database, work)

    # -- staff actions, delivered to the journey --

    async def decide(self, referral_id: str, decision: StaffDecision) -> StaffActionResult:
        """Accept (the sector's hook reserves capacity) or decline a PENDING
        referral, and deliver the decision to the journey."""
        accept = decision.accept
        if not accept and decision.decline_reason is None:
            raise InvalidArgument("decline_reason", "is required to decline")
        new_status = ReferralStatus.ACCEPTED if accept else ReferralStatus.DECLINED
        reason = None if accept else decision.decline_reason
        kind = "decision"
        event_id = stable_event_id(referral_id, kind, decision.idempotency_key)

        def apply(session: Session, referral: M) -> Any:
            now = utcnow()
            referral.decided_at = now
            referral.decline_reason = reason.value if reason else None
            return ReferralDecision(
                event_id=event_id,
                referral_id=referral_id,
                sector=self.sector,
                accepted=accept,
                decided_at=now,
                decline_reason=reason.value if reason else None,
            )

        return await self._staff_action(
            referral_id,
            kind=kind,
            idempotency_key=decision.idempotency_key,
            request_print=fingerprint(referral_id, accept, reason),
            allowed=frozenset({ReferralStatus.PENDING}),
            new_status=new_status,
            update_name=contract.UPDATE_REFERRAL_DECISION,
            apply=apply,
            wrong_state="referral is not pending",
        )

    async def record_milestone(
        self,
        referral_id: str,
        *,
        milestone: Milestone,
        idempotency_key: str,
        detail: str | None = None,
        apply: Callable[[Session, M], None] | None = None,
        from_statuses: Collection[ReferralStatus] | None = None,
        request_print: str = "",
    ) -> StaffActionResult:
        """STARTED (ACCEPTED -> IN_SERVICE) or COMPLETED (IN_SERVICE ->
        COMPLETED), delivered to the journey. `apply` writes the sector's own
        columns on the referral row (they are restored if the journey rejects
        the milestone); `detail` is a structured code, never free text;
        `request_print` fingerprints the sector's extra request fields."""
        kind = f"milestone:{milestone.value}"
        event_id = stable_event_id(referral_id, kind, idempotency_key)
        allowed = frozenset(from_statuses or MILESTONE_FROM[milestone])

        def write(session: Session, referral: M) -> Any:
            if apply is not None:
                apply(session, referral)
            return ReferralMilestone(
                event_id=event_id,
                referral_id=referral_id,
                sector=self.sector,
                milestone=milestone,
                at=utcnow(),
                detail=detail,
            )

        return await self._staff_action(
            referral_id,
            kind=kind,
            idempotency_key=idempotency_key,
            request_print=fingerprint(referral_id, milestone, detail, request_print),
            allowed=allowed,
            new_status=MILESTONE_TO[milestone],
            update_name=contract.UPDATE_REFERRAL_MILESTONE,
            apply=write,
            wrong_state="referral is not in a state for this step",
        )

    async def record_event(
        self,
        referral_id: str,
        *,
        kind: str,
        idempotency_key: str,
        update_name: str,
        build: Callable[[Session, M, str], Any],
        allowed: Collection[ReferralStatus],
        request_print: str = "",
        audit_reason: str | None = None,
        wrong_state: str = "referral is not in a state for this step",
    ) -> StaffActionResult:
        """A staff record the journey must hear of that leaves the referral's
        status as it is (e.g. clinical care recorded by health staff):
        `build(session, referral, event_id)` writes the sector's own columns
        on the referral row and returns the contract event for `update_name`.
        Delivered like a decision: one unit of work with its outbox entry,
        the columns restored and FailedPrecondition raised if the journey
        rejects it; once per key. `audit_reason` is a code (never data)."""
        event_id = stable_event_id(referral_id, kind, idempotency_key)
        return await self._staff_action(
            referral_id,
            kind=kind,
            idempotency_key=idempotency_key,
            request_print=fingerprint(referral_id, kind, request_print),
            allowed=frozenset(allowed),
            new_status=None,
            update_name=update_name,
            apply=lambda session, referral: build(session, referral, event_id),
            wrong_state=wrong_state,
            audit_reason=audit_reason,
        )

    async def _staff_action(
        self,
        referral_id: str,
        *,
        kind: str,
        idempotency_key: str,
        request_print: str,
        allowed: frozenset[ReferralStatus],
        new_status: ReferralStatus | None,
        update_name: str,
        apply: Callable[[Session, M], Any],
        wrong_state: str,
        audit_reason: str | None = None,
    ) -> StaffActionResult:
        repo = self.repository
        scope = f"{self.sector.value}.{kind}"
        event_id = stable_event_id(referral_id, kind, idempotency_key)

        def work(session: Session) -> _Done:
            referral = repo.load(session, referral_id, for_update=True)
            entry = self.ledger.lookup(
                session, scope=scope, key=idempotency_key, fingerprint=request_print
            )
            if entry is not None:
                refused = (entry.result or {}).get("refused")
                return _Done(repo.to_record(referral), None, refused)
            old = ReferralStatus(referral.status)
            if old not in allowed:
                raise FailedPrecondition(wrong_state)
            snapshot = repo.snapshot(referral)
            if new_status is not None:
                repo.transition(session, referral, new_status)
            else:
                referral.updated_at = utcnow()
            event = apply(session, referral)
            session.flush()
            self.outbox.enqueue(
                session, case_id=referral.case_id, update_name=update_name, event=event
            )
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=request_print,
                subject_id=referral_id,
                result={"event_id": event_id},
            )
            self.record_audit(
                session,
                f"referral.{kind}",
                case_id=referral.case_id,
                target=referral_id,
                reason=referral.decline_reason
                or (new_status.value if new_status is not None else audit_reason),
            )
            return _Done(repo.to_record(referral), snapshot, applied=new_status or old)

        done = await run_retrying_conflicts(self.database, work)
        if done.refused is not None:
            raise FailedPrecondition(f"the journey refused this update ({done.refused})")
        outcome, rejected = await self.outbox.deliver(event_id)
        if outcome is DeliveryOutcome.REJECTED:
            # An error type from the journey's validator: a code, never data.
            error_type = rejected.error_type if rejected and rejected.error_type else "Rejected"
            if done.snapshot is not None and done.applied is not None:
                await self._revert(
                    referral_id,
                    done.applied,
                    done.snapshot,
                    scope=scope,
                    idempotency_key=idempotency_key,
                    ledger_result={"event_id": event_id, "refused": error_type},
                )
            raise FailedPrecondition(f"the journey refused this update ({error_type})")
        if done.snapshot is None:
            done = _Done(await self.get(referral_id), None)
        return StaffActionResult(done.record, outcome)

    async def _revert(
        self,
        referral_id: str,
        applied: ReferralStatus,
        snapshot: dict[str, Any],
        *,
        scope: str,
        idempotency_key: str,
        ledger_result: dict[str, Any],
    ) -> None:
        """Undo a staff action the journey refused, and remember the refusal
        so a retry with the same key gets the same answer."""
        repo = self.repository

        def work(session: Session) -> None:
            self.ledger.set_result(session, scope=scope, key=idempotency_key, result=ledger_result)
            referral = repo.load(session, referral_id, for_update=True)
            if ReferralStatus(referral.status) is not applied:
                return  # changed again since: leave it
            repo.transition(session, referral, ReferralStatus(snapshot["status"]))
            for key, value in snapshot.items():
                if key != "updated_at":
                    setattr(referral, key, value)
            self.record_audit(
                session,
                "referral.reverted",
                case_id=referral.case_id,
                target=referral_id,
                reason=str(ledger_result.get("refused") or "Rejected"),
            )

        try:
            await self.database.run(work)
        except Exception as exc:
            log.warning(
                "could not revert a rejected staff action",
                extra={"referral_id": referral_id, "error": type(exc).__name__},
            )

    # -- sector-local steps (no journey update) --

    async def update_local(
        self,
        referral_id: str,
        *,
        step: str,
        idempotency_key: str,
        allowed: Collection[ReferralStatus],
        apply: Callable[[Session, M], None],
        request_print: str = "",
        wrong_state: str = "referral is not in a state for this step",
    ) -> ReferralRecord:
        """A sector step the journey does not need (e.g. training certified):
        writes once per key, in one unit of work."""
        repo = self.repository
        scope = f"{self.sector.value}.{step}"
        print_ = fingerprint(referral_id, step, request_print)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) not in allowed:
                raise FailedPrecondition(wrong_state)
            apply(session, referral)
            referral.updated_at = utcnow()
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            self.record_audit(
                session, f"referral.{step}", case_id=referral.case_id, target=referral_id
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    # -- the journey's requests --

    async def remind(self, referral_id: str, *, idempotency_key: str) -> ReferralRecord:
        """Count a reminder for an open referral (once per key); a closed
        referral is returned unchanged."""
        repo = self.repository
        scope = f"{self.sector.value}.remind"
        print_ = fingerprint(referral_id)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) in OPEN_STATUSES:
                referral.reminders = (referral.reminders or 0) + 1
                referral.updated_at = utcnow()
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    async def close(
        self, referral_id: str, *, status: ReferralStatus, idempotency_key: str
    ) -> ReferralRecord:
        """REROUTED, EXPIRED or WITHDRAWN: an open referral closes and releases
        what it held; one already closed is returned unchanged (the journey
        reads its status)."""
        if status not in CLOSING_STATUSES:
            raise InvalidArgument("status", "must be REROUTED, EXPIRED or WITHDRAWN")
        repo = self.repository
        scope = f"{self.sector.value}.close"
        print_ = fingerprint(referral_id, status)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) in OPEN_STATUSES:
                repo.transition(session, referral, status)
                self.record_audit(
                    session,
                    "referral.closed",
                    case_id=referral.case_id,
                    target=referral_id,
                    reason=status.value,
                )
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    async def purge_case(
        self, case_id: str, *, idempotency_key: str, withdrawn_at: datetime | None = None
    ) -> PurgeResult:
        """Consent withdrawn (at `withdrawn_at`, intake's time): open
        referrals of the case become WITHDRAWN (releasing capacity) and the
        sector erases what it received. Referral ids and statuses stay. The
        purge's ledger entry keeps the withdrawal time: from then on a consent
        proof of a consent given before it is refused (masar.referral.consent).
        A retry returns the first counts."""
        repo = self.repository
        scope = purge_scope(self.sector)
        print_ = fingerprint(case_id)

        def work(session: Session) -> PurgeResult:
            entry = self.ledger.lookup(
                session, scope=scope, key=idempotency_key, fingerprint=print_
            )
            if entry is not None and entry.result is not None:
                return PurgeResult(
                    referrals_withdrawn=int(entry.result["referrals_withdrawn"]),
                    records_purged=int(entry.result["records_purged"]),
                )
            withdrawn = purged = 0
            now = utcnow()
            for referral in repo.of_case(session, case_id, for_update=True):
                if ReferralStatus(referral.status) in OPEN_STATUSES:
                    repo.transition(session, referral, ReferralStatus.WITHDRAWN)
                    withdrawn += 1
                purged += self.hooks.purge_needs(session, referral)
                if referral.needs_purged_at is None:
                    referral.needs_purged_at = now
                    referral.updated_at = now
            result = PurgeResult(referrals_withdrawn=withdrawn, records_purged=purged)
            # Consent withdrawn: what the sector received is gone, and the log says so.
            self.record_audit(session, "case.purged", case_id=case_id, reason="consent_withdrawn")
            told = withdrawal_time(withdrawn_at, now)
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=case_id,
                result={**dataclasses.asdict(result), WITHDRAWN_AT: told.isoformat()},
            )
            return result

        return await run_retrying_conflicts(self.database, work)
