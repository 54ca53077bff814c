"""The journey API's rules (masar.v1.JourneyService; the gRPC edge is
services.intake.journey_servicer).

People reach journeys only through here: the status read, lists and a live
board from Temporal visibility, and the coordinators' actions (reassign a
referral, extend a deadline, decide a closure). The case holders' changes
(follow-up, consent, medical care, risk, closure request, reopen) are
intake's change-with-undo (services.intake.changes) and are reached through
IntakeService's own handlers (the servicer delegates), so there is one path
for each change.

A coordinator's action:
1. the caller is the verified token's (the interceptor checked it and the
   role); the case must exist in intake (NOT_FOUND otherwise);
2. scope: her region, or an emergency grant she holds for the case — the
   same check as the case APIs (services.intake.grants); a refusal is audited;
3. the idempotency key is recorded with the event id it stands for, and the
   action is audited (actor: the verified caller), in one unit of work;
4. the Update is sent (`_send_update`), its actor the verified caller's
   subject; a refusal by the journey is audited with its reason code and the
   caller gets FAILED_PRECONDITION with a clear message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from masar import contract as c
from masar.platform.assertions import Actor, AssertionSigner
from masar.platform.db import Database
from masar.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from masar.platform.idempotency import IdempotencyLedger, fingerprint, run_retrying_conflicts
from masar.platform.identity import Caller, Role, caller_or_none
from masar.platform.temporal import TemporalConnector
from masar.platform.validation import require_idempotency_key
from services.intake import domain as d
from services.intake.grants import REASON_UNDER_GRANT, EmergencyAccess
from services.intake.journey_scope import (
    BoardChange,
    BoardEvent,
    Cursor,
    JourneyFilter,
    JourneyRow,
    ListScope,
    board_changes,
    decode_cursor,
    encode_cursor,
    held_case_ids,
    journey_row,
    list_scope,
    page_size_of,
    visibility_query,
)
from services.intake.models import CaseRow
from services.intake.repository import (
    START_DONE,
    CaseRepository,
    JourneyStartRepository,
    record_audit,
)
from services.intake.scope import HELD_ELSEWHERE, holds

log = logging.getLogger(__name__)


MAX_REASON = 500
MAX_EXTENSION_SECONDS = 365 * 24 * 3600
# A board shows at most this many journeys (visibility is read whole each round).
MAX_BOARD = 2000

# Why the journey refused, for the caller (by the contract's error types).
REFUSALS: dict[str, str] = {
    c.ERR_JOURNEY_CLOSED: "the journey is closed",
    c.ERR_NOT_CLOSED: "the journey is not closed: there is nothing to reopen",
    c.ERR_NO_CLOSURE_PENDING: "no closure request is waiting for a decision",
    c.ERR_CLOSURE_PENDING: "a closure request is already waiting for a decision",
    c.ERR_UNKNOWN_WAIT: "target: names no referral, transfer or wait of this journey",
    c.ERR_NO_OPEN_WAIT: "target: has no running deadline to extend",
    c.ERR_REFERRAL_BUSY: "a request to that sector is already under way; try again shortly",
    c.ERR_SECTOR_UNAVAILABLE: "the sector could not be reached; nothing changed, try again",
    c.ERR_STALE_REFERRAL: "referral_id: the referral is no longer in a state for this",
    c.ERR_UNKNOWN_REFERRAL: "referral_id: unknown to this journey",
    c.ERR_NO_CONSENT: "the survivor has not consented to that sector",
    c.ERR_NO_PROVIDER: "provider_id: no eligible provider took the referral",
    c.ERR_UNKNOWN_CASE: "the sector does not know this case",
    c.ERR_TRANSFER_OPEN: "a transfer is waiting for an answer",
    c.ERR_STALE_TRANSFER: "the transfer is no longer waiting for an answer",
    c.ERR_UNKNOWN_TRANSFER: "transfer_id: unknown to this journey",
    "JourneyNotRunning": "the case's journey is not running",
}
_FIELD = re.compile(r"([a-z_]{1,40}):")


def refusal_message(error_type: str | None, message: str = "") -> str:
    """A clear message for a journey's refusal; never echoes a value."""
    if error_type in REFUSALS:
        return f"the journey refused: {REFUSALS[error_type]}"
    field = _FIELD.match(message or "")
    if error_type == c.ERR_INVALID and field:
        return f"the journey refused: {field.group(1)} is not acceptable"
    return f"the journey refused ({error_type or 'Rejected'})"


class JourneyRefused(FailedPrecondition):
    def __init__(self, error_type: str | None, message: str = "") -> None:
        super().__init__(refusal_message(error_type, message))
        self.error_type = error_type or "Rejected"


class Verb(StrEnum):
    """The coordinators' actions, by their audit names (journey.<verb>)."""

    REASSIGN = "reassign_referral"
    EXTEND = "extend_deadline"
    CLOSURE = "decide_closure"


@dataclass(frozen=True)
class Action:
    """A coordinator's checked request: its parts (the idempotency
    fingerprint), how to make its Update for an event id and an actor, and
    the Update's name."""

    request: tuple[Any, ...]
    event_of: Callable[[str, str], Any]
    update_name: str


@dataclass(frozen=True)
class Answer:
    case_id: str
    event_id: str
    stage: c.Stage | None
    duplicate: bool


def require_reason(reason: str, field: str = "reason") -> str:
    if not reason or not reason.strip():
        raise InvalidArgument(field, "is required")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(field, f"must be at most {MAX_REASON} characters")
    return reason.strip()


def require_target(target: str) -> str:
    if not target or not re.fullmatch(r"[a-z][a-z0-9_:-]{0,63}", target):
        raise InvalidArgument("target", "must be a referral id, a transfer id or a wait name")
    return target


def new_event_id() -> str:
    return f"jny-{secrets.token_hex(8)}"


async def _send_update(
    client: Client,
    signer: AssertionSigner | None,
    case_id: str,
    update_name: str,
    event: Any,
    actor: Actor,
) -> c.UpdateResult:
    """THE one place the journey API sends an Update to a journey.

    `event` names the verified caller as its actor, and is signed here for
    `actor` (the verified token's identity, with the grant the access was
    made under): the journey's validators verify the assertion
    (masar.platform.assertions, workflows.authentication). Signed right
    before sending: an assertion is good for one delivery, for minutes.

    Raises JourneyRefused (FAILED_PRECONDITION) when the journey refuses and
    Unavailable when Temporal cannot be reached."""
    if signer is not None:
        event = dataclasses.replace(
            event, assertion=signer.sign(update_name, case_id, event, actor)
        )
    handle = client.get_workflow_handle(c.journey_workflow_id(case_id))
    try:
        result: c.UpdateResult = await handle.execute_update(
            update_name,
            event,
            id=event.event_id,
            result_type=c.UpdateResult,
            rpc_timeout=timedelta(seconds=30),
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise JourneyRefused(getattr(cause, "type", None), getattr(cause, "message", "")) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise JourneyRefused("JourneyNotRunning") from None
        raise Unavailable("Temporal cannot be reached; try again") from None
    return result


class JourneyApi:
    def __init__(
        self,
        database: Database,
        connector: TemporalConnector,
        *,
        access: EmergencyAccess,
        ledger: IdempotencyLedger,
        clock: Callable[[], datetime],
        signer: AssertionSigner | None,
        poll_interval: float = 1.5,
        max_watchers: int = 64,
        connect_timeout: float = 3.0,
    ) -> None:
        self._db = database
        self._connector = connector
        self._access = access
        self._ledger = ledger
        self._clock = clock
        # Intake's assertion key: signs the coordinators' Updates (None: unsigned,
        # which a journey refuses; for tests of the refusal only).
        self._signer = signer
        self.poll_interval = poll_interval
        self._watchers = asyncio.Semaphore(max_watchers)
        self._connect_timeout = connect_timeout

    async def _client(self) -> Client:
        client = self._connector.client
        if client is not None:
            return client
        try:
            return await asyncio.wait_for(self._connector.get(), timeout=self._connect_timeout)
        except Exception:
            raise Unavailable("Temporal cannot be reached; try again") from None

    # --- scope ----------------------------------------------------------------------------

    def _authorise(self, s: Session, caller: Caller | None, case: CaseRow) -> str | None:
        """May the caller read (or, a coordinator, steer) this journey? A
        coordinator: her region or an active grant (the same check as the
        case APIs); the holding organisation's officers and supervisors.
        Returns the grant's id when the access is under one."""
        if caller is None:
            return None
        if caller.role is Role.COORDINATOR:
            access = self._access.check_case_access(
                s, caller, case_id=case.case_id, case_region=case.region
            )
            return access.grant.grant_id if access.grant is not None else None
        if holds(caller, case):
            return None
        raise PermissionDenied(HELD_ELSEWHERE)

    async def _audited(self, write: Callable[[Session], Any], case_id: str, refused: str) -> Any:
        now = self._clock()
        try:
            return await run_retrying_conflicts(self._db, write)
        except PermissionDenied:
            await self._db.run(lambda s: record_audit(s, action=refused, case_id=case_id, now=now))
            raise

    # --- the status ---------------------------------------------------------------------------

    async def get(self, case_id: str) -> c.JourneyStatus:
        d.require_intake_case_id(case_id)
        caller = caller_or_none()
        now = self._clock()

        def read(s: Session) -> None:
            case = CaseRepository.from_session(s).get_one(case_id)
            grant = self._authorise(s, caller, case)
            record_audit(
                s,
                action="journey.read",
                case_id=case_id,
                target=grant,
                reason=REASON_UNDER_GRANT if grant else None,
                now=now,
            )

        await self._audited(read, case_id, "journey.read_refused")
        client = await self._client()
        handle = client.get_workflow_handle(c.journey_workflow_id(case_id))
        try:
            status: c.JourneyStatus = await handle.query(
                c.QUERY_STATUS, result_type=c.JourneyStatus, rpc_timeout=timedelta(seconds=15)
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise FailedPrecondition(await self._not_started_message(case_id)) from None
            raise Unavailable("the journey cannot be asked right now; try again") from None
        except WorkflowQueryFailedError:
            raise Unavailable("the journey cannot be asked right now; try again") from None
        return status

    async def _not_started_message(self, case_id: str) -> str:
        row = await self._db.run(lambda s: JourneyStartRepository.from_session(s).get(case_id))
        if row is not None and row.status != START_DONE:
            return "the case's journey has not started yet (it will be when Temporal is reachable)"
        return "the case's journey is not running"

    # --- lists -------------------------------------------------------------------------------

    async def list_journeys(
        self, wanted: JourneyFilter, *, page_size: int, page_token: str
    ) -> tuple[list[JourneyRow], str | None]:
        caller = caller_or_none()
        scope = list_scope(caller, wanted)
        size = page_size_of(page_size)
        cursor = decode_cursor(page_token, caller, scope, wanted)
        client = await self._client()
        if scope.by_holder:
            rows, after = await self._held_page(client, scope, wanted, size, cursor.after_case)
            next_cursor = Cursor(after_case=after) if after else None
        else:
            rows, token = await self._visibility_page(
                client, visibility_query(scope, wanted), size, cursor.temporal
            )
            next_cursor = Cursor(temporal=token) if token else None
        if next_cursor is None:
            return rows, None
        return rows, encode_cursor(next_cursor, caller, scope, wanted)

    async def _visibility_page(
        self, client: Client, query: str, size: int, token: bytes | None
    ) -> tuple[list[JourneyRow], bytes | None]:
        try:
            pages = client.list_workflows(
                query, page_size=size, next_page_token=token, rpc_timeout=timedelta(seconds=15)
            )
            await pages.fetch_next_page()
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                # A token Temporal does not take (forged, or from another server).
                raise InvalidArgument("page_token", "is not valid any more") from None
            raise Unavailable("Temporal visibility cannot be reached; try again") from None
        return [journey_row(wf) for wf in pages.current_page or []], pages.next_page_token

    async def _held_page(
        self,
        client: Client,
        scope: ListScope,
        wanted: JourneyFilter,
        size: int,
        after: str | None,
    ) -> tuple[list[JourneyRow], str | None]:
        """Walk the held cases a chunk at a time until something matches (or
        none are left): (rows, the last case walked when more may follow)."""
        assert scope.holder is not None
        holder = scope.holder
        for _ in range(20):
            chunk = await self._db.run(
                functools.partial(held_case_ids, holder=holder, after=after, limit=size)
            )
            if not chunk:
                return [], None
            query = visibility_query(scope, wanted, chunk)
            rows, _ = await self._visibility_page(client, query, size, None)
            after = chunk[-1] if len(chunk) == size else None
            if rows or after is None:
                order = {case_id: i for i, case_id in enumerate(chunk)}
                return sorted(rows, key=lambda r: order.get(r.case_id, 0)), after
        return [], after

    async def _everything(self, wanted: JourneyFilter, scope: ListScope) -> dict[str, JourneyRow]:
        """Every journey in scope (at most MAX_BOARD), for a board's round."""
        client = await self._client()
        found: dict[str, JourneyRow] = {}
        cursor = Cursor()
        while len(found) < MAX_BOARD:
            if scope.by_holder:
                rows, after = await self._held_page(client, scope, wanted, 200, cursor.after_case)
                cursor = Cursor(after_case=after)
                more = after is not None
            else:
                rows, token = await self._visibility_page(
                    client, visibility_query(scope, wanted), 500, cursor.temporal
                )
                cursor = Cursor(temporal=token)
                more = token is not None
            for row in rows:
                found[row.case_id] = row
            if not more:
                break
        return found

    async def watch(self, wanted: JourneyFilter) -> AsyncIterator[BoardChange]:
        """The board: every journey in scope, SYNCED, then the changes seen
        at each round, until the client goes away or the token expires."""
        caller = caller_or_none()
        scope = list_scope(caller, wanted)
        if self._watchers.locked():
            raise ResourceExhausted("too many live boards on this service; try again later")
        async with self._watchers:
            seen: dict[str, JourneyRow] | None = None
            while True:
                now = self._clock()
                if caller is not None and caller.expires_at <= now:
                    raise Unauthenticated("token expired")
                try:
                    current = await self._everything(wanted, scope)
                except Unavailable:
                    if seen is None:
                        raise
                    log.info("board round skipped: Temporal unreachable")
                    current = seen
                for change in board_changes(seen, current, now):
                    yield change
                if seen is None:
                    yield BoardChange(BoardEvent.SYNCED, None, now)
                seen = current
                await asyncio.sleep(self.poll_interval)

    # --- coordinators' actions -----------------------------------------------------------

    async def _act(
        self, verb: Verb, case_id: str, idempotency_key: str, build: Callable[[], Action]
    ) -> Answer:
        """Scope first (a refused caller learns nothing of her request's
        faults), then the request's checks (`build`), the key and the audit
        entry in one unit of work; then the Update."""
        d.require_intake_case_id(case_id)
        caller = caller_or_none()
        if caller is None or caller.role is not Role.COORDINATOR:
            raise PermissionDenied("only a coordinator steers a journey")
        now = self._clock()
        scope = f"journey.{verb.value}"

        def write(s: Session) -> tuple[str, str | None, Action]:
            case = CaseRepository.from_session(s).get_one(case_id)
            grant = self._authorise(s, caller, case)
            require_idempotency_key(idempotency_key)
            action = build()
            print_ = fingerprint(case_id, caller.subject, *action.request)
            entry = self._ledger.lookup(s, scope=scope, key=idempotency_key, fingerprint=print_)
            if entry is not None:
                return entry.subject_id, grant, action
            event_id = new_event_id()
            self._ledger.record(
                s, scope=scope, key=idempotency_key, fingerprint=print_, subject_id=event_id
            )
            if grant is not None:
                record_audit(
                    s,
                    action="journey.access",
                    case_id=case_id,
                    target=grant,
                    reason=REASON_UNDER_GRANT,
                    now=now,
                )
            record_audit(s, action=scope, case_id=case_id, target=event_id, now=now)
            return event_id, grant, action

        event_id, grant, action = await self._audited(write, case_id, f"{scope}_refused")
        actor = Actor.of(caller, grant_id=grant or "")
        try:
            client = await self._client()
            event = action.event_of(event_id, caller.subject)
            result = await _send_update(
                client, self._signer, case_id, action.update_name, event, actor
            )
        except (JourneyRefused, Unavailable) as exc:
            reason = exc.error_type if isinstance(exc, JourneyRefused) else "TemporalUnreachable"
            await self._db.run(
                lambda s: record_audit(
                    s,
                    action=f"{scope}_failed",
                    case_id=case_id,
                    target=event_id,
                    reason=reason,
                    now=self._clock(),
                )
            )
            raise
        return Answer(case_id, event_id, result.stage, result.duplicate)

    async def reassign(
        self, case_id: str, *, referral_id: str, provider_id: str, reason: str, key: str
    ) -> Answer:
        def build() -> Action:
            if len(referral_id) > 64 or c.sector_of_referral(referral_id) is None:
                raise InvalidArgument("referral_id", "is not a referral id")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", provider_id):
                raise InvalidArgument("provider_id", "is not a provider id")
            why = require_reason(reason)
            return Action(
                (referral_id, provider_id, why),
                lambda event_id, actor: c.Reassignment(
                    event_id=event_id,
                    referral_id=referral_id,
                    provider_id=provider_id,
                    coordinator_id=actor,
                    reason=why,
                ),
                c.UPDATE_REASSIGN,
            )

        return await self._act(Verb.REASSIGN, case_id, key, build)

    async def extend(
        self, case_id: str, *, target: str, seconds: int, reason: str, key: str
    ) -> Answer:
        def build() -> Action:
            what = require_target(target)
            if not 0 < seconds <= MAX_EXTENSION_SECONDS:
                raise InvalidArgument("extend_by_seconds", "must be between 1 second and 365 days")
            why = require_reason(reason)
            return Action(
                (what, seconds, why),
                lambda event_id, actor: c.DeadlineExtension(
                    event_id=event_id,
                    target=what,
                    extend_by_seconds=seconds,
                    coordinator_id=actor,
                    reason=why,
                ),
                c.UPDATE_EXTEND,
            )

        return await self._act(Verb.EXTEND, case_id, key, build)

    async def decide_closure(
        self, case_id: str, *, approve: bool | None, reason: str, key: str
    ) -> Answer:
        """`approve` None: the request named no verdict (INVALID_ARGUMENT,
        once the caller is known to be in scope)."""

        def build() -> Action:
            if approve is None:
                raise InvalidArgument("verdict", "is required")
            why = require_reason(reason)
            return Action(
                (approve, why),
                lambda event_id, actor: c.ClosureDecision(
                    event_id=event_id, approve=approve, coordinator_id=actor, reason=why
                ),
                c.UPDATE_CLOSURE_DECISION,
            )

        return await self._act(Verb.CLOSURE, case_id, key, build)
