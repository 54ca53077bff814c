"""Emergency access, by four eyes: a coordinator opens a case outside her region.

A coordinator sees the cases of her own region. To open one elsewhere (a
survivor in danger who fled across regions, a colleague absent) she asks
for a grant for that one case, stating a reason code — and may add a note,
stored encrypted. Her request opens nothing by itself: a SECOND person
approves it — a coordinator of the case's region, or a supervisor of the
organisation holding the case, never the requester herself — or refuses it.
An approved grant opens the case to her for its window, counted from the
approval (3 h by default, 12 h at most); a request nobody decides lapses
after REQUEST_TTL. Its holder, its approver or a supervisor of the holding
organisation may revoke it; nobody else. A grant needs no job to end: past
`expires_at` it no longer opens anything.

Every request, approval, refusal and revocation is an audit entry, and so
is an attempt the rules refuse (ACTION_DENIED, with the attempted step as
its reason), and every access made under a grant when the caller asks
`check_case_access` to record it.

This module decides the coordinator's regional scope only; the other roles'
scopes (a shelter's staff and the referrals addressed to their shelter, ...)
are checked by the services that own those records.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    MetaData,
    RowMapping,
    Select,
    String,
    Table,
    and_,
    false,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.crypto import EncryptedText, Keyring
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from masar.platform.identity import Caller, Role, current_caller
from masar.platform.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
)

R = TypeVar("R")

DEFAULT_GRANT_TTL = timedelta(hours=3)
MAX_GRANT_TTL = timedelta(hours=12)
# A request nobody approved or refused within this opens nothing, ever.
REQUEST_TTL = timedelta(hours=12)
MAX_GRANT_NOTE = 2000
GRANTS_TABLE = "emergency_grants"

ACTION_REQUESTED = "emergency_access.requested"
ACTION_APPROVED = "emergency_access.approved"
ACTION_REFUSED = "emergency_access.refused"
ACTION_REVOKED = "emergency_access.revoked"
# An approval, refusal or revocation the rules refused (reason: which).
ACTION_DENIED = "emergency_access.denied"
REASON_UNDER_GRANT = "emergency_grant"

# The roles that may decide or revoke a grant (each within its scope).
DECIDER_ROLES = frozenset({Role.COORDINATOR, Role.SUPERVISOR})


class GrantReason(StrEnum):
    IMMINENT_DANGER = "imminent_danger"
    SURVIVOR_RELOCATED = "survivor_relocated"  # she fled to or was moved to this region
    COVERING_ABSENCE = "covering_absence"  # the case's own coordinator is unavailable
    COURT_REQUEST = "court_request"
    SURVIVOR_REQUEST = "survivor_request"


class Decision(StrEnum):
    """What the second person said (stored)."""

    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class GrantStatus(StrEnum):
    """Where a grant stands at a moment (derived from its columns and the time)."""

    PENDING = "pending"  # asked, waiting for a second person
    ACTIVE = "active"  # approved, within its window
    REFUSED = "refused"
    REVOKED = "revoked"  # by its holder, its approver or a supervisor (pending or not)
    EXPIRED = "expired"  # approved, past its window
    LAPSED = "lapsed"  # nobody decided within REQUEST_TTL


class Step(StrEnum):
    """The steps after a request (the reason of an ACTION_DENIED entry)."""

    APPROVE = "approve"
    REFUSE = "refuse"
    REVOKE = "revoke"


def emergency_grants_table(metadata: MetaData) -> Table:
    """Add the grants table to a service's metadata (intake's), created by
    its own migrations (0002, then 0005: four eyes)."""
    return Table(
        GRANTS_TABLE,
        metadata,
        Column("grant_id", String(32), primary_key=True),
        Column("case_id", String(64), nullable=False),
        # The requester: her subject, role, organisation and region.
        Column("subject", String(128), nullable=False),
        Column("role", String(32), nullable=False),
        Column("org", String(128), nullable=False),
        Column("region", String(64), nullable=False),
        # The case's region when she asked.
        Column("case_region", String(64), nullable=False),
        Column("reason", String(32), nullable=False),
        # Free text may name people: encrypted, and never in the audit log.
        Column("note", EncryptedText("access.grant_note"), nullable=True),
        Column("requested_at", DateTime(timezone=True), nullable=False),
        Column("ttl_seconds", Integer, nullable=False),
        Column("decision", String(16), nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=True),
        Column("decided_by", String(128), nullable=True),
        Column("decided_role", String(32), nullable=True),
        # The window: set by the approval (NULL while pending or if refused).
        Column("granted_at", DateTime(timezone=True), nullable=True),
        Column("expires_at", DateTime(timezone=True), nullable=True),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
        Column("revoked_by", String(128), nullable=True),
        Index("ix_emergency_grants_case_id_subject", "case_id", "subject"),
        Index("ix_emergency_grants_case_region", "case_region"),
        Index("ix_emergency_grants_requested_at", "requested_at"),
    )


def check_grant_id(grant_id: str, field: str = "grant_id") -> str:
    if not grant_id or len(grant_id) > 32 or not grant_id.isascii():
        raise InvalidArgument(field, "is not a grant id")
    return grant_id


def clean_note(note: str | None, field: str = "note") -> str | None:
    """The optional free-text note: at most MAX_GRANT_NOTE characters, blank is none."""
    if note is not None and len(note) > MAX_GRANT_NOTE:
        raise InvalidArgument(field, f"must be at most {MAX_GRANT_NOTE} characters")
    return note.strip() or None if note else None


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


@dataclass(frozen=True, kw_only=True)
class EmergencyGrant:
    grant_id: str
    case_id: str
    subject: str
    role: str
    org: str
    region: str
    case_region: str
    reason: GrantReason
    requested_at: datetime
    ttl: timedelta
    decision: Decision = Decision.PENDING
    decided_at: datetime | None = None
    decided_by: str | None = None
    decided_role: str | None = None
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def status(self, now: datetime) -> GrantStatus:
        if self.decision is Decision.REFUSED:
            return GrantStatus.REFUSED
        if self.revoked_at is not None:
            return GrantStatus.REVOKED
        if self.decision is Decision.PENDING:
            lapsed = now >= self.requested_at + REQUEST_TTL
            return GrantStatus.LAPSED if lapsed else GrantStatus.PENDING
        assert self.expires_at is not None
        return GrantStatus.ACTIVE if now < self.expires_at else GrantStatus.EXPIRED

    def is_active(self, now: datetime) -> bool:
        return (
            self.status(now) is GrantStatus.ACTIVE
            and self.granted_at is not None
            and self.granted_at <= now
        )

    @classmethod
    def from_row(cls, row: RowMapping | Mapping[str, Any]) -> EmergencyGrant:
        return cls(
            grant_id=row["grant_id"],
            case_id=row["case_id"],
            subject=row["subject"],
            role=row["role"],
            org=row["org"],
            region=row["region"],
            case_region=row["case_region"],
            reason=GrantReason(row["reason"]),
            requested_at=as_utc(row["requested_at"]),
            ttl=timedelta(seconds=int(row["ttl_seconds"])),
            decision=Decision(row["decision"]),
            decided_at=_utc(row["decided_at"]),
            decided_by=row["decided_by"],
            decided_role=row["decided_role"],
            granted_at=_utc(row["granted_at"]),
            expires_at=_utc(row["expires_at"]),
            revoked_at=_utc(row["revoked_at"]),
            revoked_by=row["revoked_by"],
        )


@dataclass(frozen=True)
class GrantCase:
    """What the rules need of the case a grant is for, as it is now."""

    case_id: str
    region: str
    holding_organisation_id: str | None = None


@dataclass(frozen=True)
class CaseAccess:
    """Why a caller may open a case: her own scope, or a grant."""

    caller: Caller
    case_id: str
    grant: EmergencyGrant | None = None

    @property
    def via_grant(self) -> bool:
        return self.grant is not None


@dataclass(frozen=True)
class GrantPage:
    grants: list[EmergencyGrant]
    next_page_token: str = ""


def in_regional_scope(caller: Caller, case_region: str) -> bool:
    return caller.role is Role.COORDINATOR and bool(caller.region) and caller.region == case_region


def supervises(caller: Caller, case: GrantCase) -> bool:
    """A supervisor of the organisation holding the case (services.intake.scope.holds)."""
    return (
        caller.role is Role.SUPERVISOR
        and case.holding_organisation_id is not None
        and case.holding_organisation_id == caller.org
    )


def may_decide(caller: Caller, grant: EmergencyGrant, case: GrantCase) -> bool:
    """A second person: a coordinator of the case's region (as it is now) or
    a supervisor of its holding organisation — never the requester."""
    if caller.subject == grant.subject:
        return False
    return in_regional_scope(caller, case.region) or supervises(caller, case)


def may_revoke(caller: Caller, grant: EmergencyGrant, case: GrantCase) -> bool:
    """Its holder, its approver, or a supervisor of the holding organisation."""
    if caller.subject == grant.subject and caller.role.value == grant.role:
        return True
    if grant.decision is Decision.APPROVED and caller.subject == grant.decided_by:
        return caller.role.value == grant.decided_role
    return supervises(caller, case)


class EmergencyAccess:
    def __init__(
        self,
        grants: Table,
        *,
        keyring: Keyring | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._grants = grants
        self._keyring = keyring  # for the audit head; None: the process's ring
        self._clock = clock or utcnow

    def now(self) -> datetime:
        return as_utc(self._clock())

    _now = now

    def _audit(
        self,
        session: Session,
        caller: Caller,
        action: str,
        grant: EmergencyGrant,
        *,
        reason: str | None = None,
        now: datetime,
    ) -> None:
        audit.append(
            session,
            actor=caller,
            action=action,
            case_id=grant.case_id,
            target=grant.grant_id,
            reason=reason,
            keyring=self._keyring,
            now=now,
        )

    # --- the four eyes --------------------------------------------------------------------

    def open_grant(
        self,
        session: Session,
        caller: Caller,
        *,
        case_id: str,
        case_region: str,
        reason: GrantReason | str,
        note: str | None = None,
        ttl: timedelta = DEFAULT_GRANT_TTL,
    ) -> EmergencyGrant:
        """Ask for access to one case outside the caller's region: a PENDING
        request, audited, that opens nothing until a second person approves it."""
        if caller.role is not Role.COORDINATOR:
            raise PermissionDenied("only a coordinator may ask for an emergency grant")
        try:
            reason = GrantReason(reason)
        except ValueError:
            raise InvalidArgument(
                "reason", f"must be one of {', '.join(r.value for r in GrantReason)}"
            ) from None
        if not timedelta(0) < ttl <= MAX_GRANT_TTL:
            raise InvalidArgument("ttl", f"must be positive and at most {MAX_GRANT_TTL}")
        if ttl.microseconds:
            raise InvalidArgument("ttl", "must be whole seconds")
        if in_regional_scope(caller, case_region):
            raise FailedPrecondition("the case is in the caller's region: no grant is needed")
        now = self._now()
        grant = EmergencyGrant(
            grant_id=f"egr-{secrets.token_hex(8)}",
            case_id=case_id,
            subject=caller.subject,
            role=caller.role.value,
            org=caller.org,
            region=caller.region,
            case_region=case_region,
            reason=reason,
            requested_at=now,
            ttl=ttl,
        )
        session.execute(
            self._grants.insert().values(
                grant_id=grant.grant_id,
                case_id=case_id,
                subject=grant.subject,
                role=grant.role,
                org=grant.org,
                region=grant.region,
                case_region=case_region,
                reason=reason.value,
                note=note or None,
                requested_at=now,
                ttl_seconds=int(ttl.total_seconds()),
                decision=Decision.PENDING.value,
            )
        )
        self._audit(session, caller, ACTION_REQUESTED, grant, reason=reason.value, now=now)
        return grant

    def get(self, session: Session, grant_id: str, *, for_update: bool = False) -> EmergencyGrant:
        query = select(self._grants).where(self._grants.c.grant_id == grant_id)
        if for_update:
            query = query.with_for_update()
        row = session.execute(query).mappings().one_or_none()
        if row is None:
            raise NotFound("emergency grant not found")
        return EmergencyGrant.from_row(row)

    def approve(
        self, session: Session, caller: Caller, grant: EmergencyGrant, case: GrantCase
    ) -> EmergencyGrant:
        """A second person opens the window: from now, for the grant's ttl."""
        self._require(Step.APPROVE, caller, grant, case)
        now = self._pending(grant)
        approved = replace(
            grant,
            decision=Decision.APPROVED,
            decided_at=now,
            decided_by=caller.subject,
            decided_role=caller.role.value,
            granted_at=now,
            expires_at=now + grant.ttl,
        )
        self._decide(session, approved)
        self._audit(session, caller, ACTION_APPROVED, grant, reason=grant.reason.value, now=now)
        return approved

    def refuse(
        self, session: Session, caller: Caller, grant: EmergencyGrant, case: GrantCase
    ) -> EmergencyGrant:
        self._require(Step.REFUSE, caller, grant, case)
        now = self._pending(grant)
        refused = replace(
            grant,
            decision=Decision.REFUSED,
            decided_at=now,
            decided_by=caller.subject,
            decided_role=caller.role.value,
        )
        self._decide(session, refused)
        self._audit(session, caller, ACTION_REFUSED, grant, reason=grant.reason.value, now=now)
        return refused

    def revoke(
        self, session: Session, caller: Caller, grant: EmergencyGrant, case: GrantCase
    ) -> EmergencyGrant:
        """Its holder, its approver or a supervisor of the holding
        organisation ends it (a pending request too); a second revocation
        changes nothing."""
        self._require(Step.REVOKE, caller, grant, case)
        if grant.revoked_at is not None:
            return grant
        if grant.decision is Decision.REFUSED:
            raise FailedPrecondition("a refused request opens nothing: there is nothing to revoke")
        now = self._now()
        g = self._grants.c
        done = session.execute(
            update(self._grants)
            .where(g.grant_id == grant.grant_id, g.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=caller.subject)
        )
        if getattr(done, "rowcount", 1) != 1:  # revoked meanwhile
            return self.get(session, grant.grant_id)
        self._audit(session, caller, ACTION_REVOKED, grant, now=now)
        return replace(grant, revoked_at=now, revoked_by=caller.subject)

    def record_denied(self, session: Session, caller: Caller, grant_id: str, step: Step) -> None:
        """Audit a step the rules refused (in a unit of work of its own: the
        refused one rolled back)."""
        row = (
            session.execute(
                select(self._grants.c.case_id).where(self._grants.c.grant_id == grant_id)
            )
            .scalars()
            .one_or_none()
        )
        if row is None:
            return
        audit.append(
            session,
            actor=caller,
            action=ACTION_DENIED,
            case_id=row,
            target=grant_id,
            reason=step.value,
            keyring=self._keyring,
            now=self._now(),
        )

    def _require(self, step: Step, caller: Caller, grant: EmergencyGrant, case: GrantCase) -> None:
        if step is Step.REVOKE:
            if not may_revoke(caller, grant, case):
                raise PermissionDenied(
                    "an emergency grant is revoked by its holder, its approver or a "
                    "supervisor of the organisation holding the case"
                )
            return
        if caller.subject == grant.subject:
            raise PermissionDenied(
                "an emergency grant is decided by a second person, never by its requester"
            )
        if not may_decide(caller, grant, case):
            raise PermissionDenied(
                "an emergency grant is decided by a coordinator of the case's region "
                "or a supervisor of the organisation holding it"
            )

    def _pending(self, grant: EmergencyGrant) -> datetime:
        now = self._now()
        status = grant.status(now)
        if status is not GrantStatus.PENDING:
            raise FailedPrecondition(f"the request is {status.value}: it cannot be decided")
        return now

    def _decide(self, session: Session, grant: EmergencyGrant) -> None:
        g = self._grants.c
        done = session.execute(
            update(self._grants)
            .where(
                g.grant_id == grant.grant_id,
                g.decision == Decision.PENDING.value,
                g.revoked_at.is_(None),
            )
            .values(
                decision=grant.decision.value,
                decided_at=grant.decided_at,
                decided_by=grant.decided_by,
                decided_role=grant.decided_role,
                granted_at=grant.granted_at,
                expires_at=grant.expires_at,
            )
        )
        if getattr(done, "rowcount", 1) != 1:
            raise FailedPrecondition("the request was decided or withdrawn meanwhile")

    # --- reading ----------------------------------------------------------------------------

    def list_grants(
        self,
        session: Session,
        caller: Caller,
        *,
        held_cases: Select[Any] | None = None,
        case_id: str | None = None,
        status: GrantStatus | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> GrantPage:
        """A coordinator's: those she asked for and those on her region's
        cases; a supervisor's: those on `held_cases` (the ids of the cases
        her organisation holds). Newest request first."""
        g = self._grants.c
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        limit = page_size or DEFAULT_PAGE_SIZE
        scope: ColumnElement[bool]
        if caller.role is Role.COORDINATOR:
            scope = or_(g.subject == caller.subject, g.case_region == caller.region)
            if not caller.region:
                scope = g.subject == caller.subject
        elif caller.role is Role.SUPERVISOR and held_cases is not None:
            scope = g.case_id.in_(held_cases)
        else:
            raise PermissionDenied("this role lists no emergency grants")
        query = select(self._grants).where(scope)
        if case_id:
            query = query.where(g.case_id == case_id)
        if status is not None:
            query = query.where(self._in_status(status, self._now()))
        if page_token:
            at, last = decode_page_token(page_token)
            query = query.where(
                or_(g.requested_at < at, and_(g.requested_at == at, g.grant_id < last))
            )
        rows = session.execute(
            query.order_by(g.requested_at.desc(), g.grant_id.desc()).limit(limit + 1)
        ).mappings()
        grants = [EmergencyGrant.from_row(row) for row in rows]
        token = ""
        if len(grants) > limit:
            grants = grants[:limit]
            token = encode_page_token(grants[-1].requested_at, grants[-1].grant_id)
        return GrantPage(grants, token)

    def _in_status(self, status: GrantStatus, now: datetime) -> ColumnElement[bool]:
        g = self._grants.c
        live = g.revoked_at.is_(None)
        pending = g.decision == Decision.PENDING.value
        approved = g.decision == Decision.APPROVED.value
        conditions: dict[GrantStatus, ColumnElement[bool]] = {
            GrantStatus.PENDING: and_(pending, live, g.requested_at > now - REQUEST_TTL),
            GrantStatus.LAPSED: and_(pending, live, g.requested_at <= now - REQUEST_TTL),
            GrantStatus.ACTIVE: and_(approved, live, g.expires_at > now),
            GrantStatus.EXPIRED: and_(approved, live, g.expires_at <= now),
            GrantStatus.REFUSED: g.decision == Decision.REFUSED.value,
            GrantStatus.REVOKED: and_(
                g.decision != Decision.REFUSED.value, g.revoked_at.isnot(None)
            ),
        }
        return conditions.get(status, false())

    def active_grant(self, session: Session, caller: Caller, case_id: str) -> EmergencyGrant | None:
        now = self._now()
        g = self._grants.c
        rows = session.execute(
            select(self._grants)
            .where(
                g.case_id == case_id,
                g.subject == caller.subject,
                g.decision == Decision.APPROVED.value,
                g.revoked_at.is_(None),
            )
            .order_by(g.expires_at.desc())
        ).mappings()
        for row in rows:
            grant = EmergencyGrant.from_row(row)
            # Same subject but another role (a new token) does not inherit it.
            if grant.role == caller.role.value and grant.is_active(now):
                return grant
        return None

    def check_case_access(
        self,
        session: Session,
        caller: Caller,
        *,
        case_id: str,
        case_region: str,
        audit_action: str | None = None,
    ) -> CaseAccess:
        """May a coordinator open this case? Her region, or an active
        (approved, unexpired, unrevoked) grant; otherwise PermissionDenied.
        With `audit_action` (e.g. "case.read") the access is recorded, with
        the grant id when it was made under one."""
        if caller.role is not Role.COORDINATOR:
            raise PermissionDenied("only a coordinator's regional scope is decided here")
        access: CaseAccess | None = None
        if in_regional_scope(caller, case_region):
            access = CaseAccess(caller, case_id)
        else:
            grant = self.active_grant(session, caller, case_id)
            if grant is not None:
                access = CaseAccess(caller, case_id, grant)
        if access is None:
            raise PermissionDenied(
                "case is outside the caller's region: an approved emergency grant is needed"
            )
        if audit_action is not None:
            audit.append(
                session,
                actor=caller,
                action=audit_action,
                case_id=case_id,
                target=access.grant.grant_id if access.grant else None,
                reason=REASON_UNDER_GRANT if access.grant else None,
                keyring=self._keyring,
                now=self._now(),
            )
        return access


# --- the use cases: one unit of work each ---------------------------------------------------

CaseOf = Callable[[Session, str], GrantCase]
HeldBy = Callable[[str], Select[Any]]


class EmergencyGrants:
    """Intake's emergency-grant use cases, each one unit of work, as the
    current caller. `case_of` reads the case as it is now (its region, its
    holder; NotFound if none); `held_by(org)` selects the ids of the cases an
    organisation holds (a supervisor's list)."""

    def __init__(
        self, database: Database, access: EmergencyAccess, *, case_of: CaseOf, held_by: HeldBy
    ) -> None:
        self._db = database
        self._access = access
        self._case_of = case_of
        self._held_by = held_by

    def now(self) -> datetime:
        """Intake's clock (where a grant stands depends on it)."""
        return self._access.now()

    async def open(
        self,
        case_id: str,
        *,
        reason: GrantReason,
        note: str | None,
        ttl: timedelta | None,
    ) -> EmergencyGrant:
        note = clean_note(note)
        caller = current_caller()

        def ask(s: Session) -> EmergencyGrant:
            case = self._case_of(s, case_id)
            return self._access.open_grant(
                s,
                caller,
                case_id=case_id,
                case_region=case.region,
                reason=reason,
                note=note,
                ttl=ttl or DEFAULT_GRANT_TTL,
            )

        return await self._db.run(ask)

    async def approve(self, grant_id: str) -> EmergencyGrant:
        return await self._step(Step.APPROVE, grant_id, self._access.approve)

    async def refuse(self, grant_id: str) -> EmergencyGrant:
        return await self._step(Step.REFUSE, grant_id, self._access.refuse)

    async def revoke(self, grant_id: str) -> EmergencyGrant:
        return await self._step(Step.REVOKE, grant_id, self._access.revoke)

    async def list(
        self,
        *,
        case_id: str | None,
        status: GrantStatus | None,
        page_size: int,
        page_token: str,
    ) -> GrantPage:
        caller = current_caller()
        if caller.role not in DECIDER_ROLES:
            raise PermissionDenied("this role lists no emergency grants")
        held = self._held_by(caller.org) if caller.role is Role.SUPERVISOR else None
        if page_token:
            decode_page_token(page_token)  # a bad token is refused before any query
        return await self._db.run(
            lambda s: self._access.list_grants(
                s,
                caller,
                held_cases=held,
                case_id=case_id,
                status=status,
                page_size=page_size,
                page_token=page_token,
            )
        )

    async def _step(
        self,
        step: Step,
        grant_id: str,
        act: Callable[[Session, Caller, EmergencyGrant, GrantCase], EmergencyGrant],
    ) -> EmergencyGrant:
        check_grant_id(grant_id)
        caller = current_caller()
        if caller.role not in DECIDER_ROLES:
            raise PermissionDenied("only coordinators and supervisors decide emergency grants")

        def work(s: Session) -> EmergencyGrant:
            grant = self._access.get(s, grant_id, for_update=True)
            return act(s, caller, grant, self._case_of(s, grant.case_id))

        return await _audited_denial(
            self._db.run(work),
            lambda: self._db.run(lambda s: self._access.record_denied(s, caller, grant_id, step)),
        )


async def _audited_denial(work: Awaitable[R], record: Callable[[], Awaitable[None]]) -> R:
    try:
        return await work
    except PermissionDenied:
        await record()
        raise
