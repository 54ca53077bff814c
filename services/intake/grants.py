"""Emergency access: a coordinator opens a case outside her region.

A coordinator sees the cases of her own region. To open one elsewhere (a
survivor in danger who fled across regions, a colleague absent) she states a
reason code — and may add a note, stored encrypted — and receives a grant for
that one case, for a limited time (3 h by default, 12 h at most). Opening and
revoking a grant are audit entries, and so is every access made under one
when the caller asks `check_case_access` to record it. A grant needs no job
to end: past `expires_at` it no longer opens anything.

This module decides the coordinator's regional scope only; the other roles'
scopes (a shelter's staff and the referrals addressed to their shelter, ...)
are checked by the services that own those records.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    RowMapping,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.crypto import EncryptedText, Keyring
from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from masar.platform.identity import Caller, Role

DEFAULT_GRANT_TTL = timedelta(hours=3)
MAX_GRANT_TTL = timedelta(hours=12)
MAX_GRANT_NOTE = 2000
GRANTS_TABLE = "emergency_grants"

ACTION_GRANTED = "emergency_access.granted"
ACTION_REVOKED = "emergency_access.revoked"
REASON_UNDER_GRANT = "emergency_grant"


class GrantReason(StrEnum):
    IMMINENT_DANGER = "imminent_danger"
    SURVIVOR_RELOCATED = "survivor_relocated"  # she fled to or was moved to this region
    COVERING_ABSENCE = "covering_absence"  # the case's own coordinator is unavailable
    COURT_REQUEST = "court_request"
    SURVIVOR_REQUEST = "survivor_request"


def emergency_grants_table(metadata: MetaData) -> Table:
    """Add the grants table to a service's metadata (intake's), created by
    its own migrations."""
    return Table(
        GRANTS_TABLE,
        metadata,
        Column("grant_id", String(32), primary_key=True),
        Column("case_id", String(64), nullable=False),
        Column("subject", String(128), nullable=False),
        Column("role", String(32), nullable=False),
        Column("org", String(128), nullable=False),
        Column("region", String(64), nullable=False),
        Column("case_region", String(64), nullable=False),
        Column("reason", String(32), nullable=False),
        # Free text may name people: encrypted, and never in the audit log.
        Column("note", EncryptedText("access.grant_note"), nullable=True),
        Column("granted_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
        Column("revoked_by", String(128), nullable=True),
        Index("ix_emergency_grants_case_id_subject", "case_id", "subject"),
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
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.granted_at <= now < self.expires_at

    @classmethod
    def from_row(cls, row: RowMapping | Mapping[str, Any]) -> EmergencyGrant:
        revoked = row["revoked_at"]
        return cls(
            grant_id=row["grant_id"],
            case_id=row["case_id"],
            subject=row["subject"],
            role=row["role"],
            org=row["org"],
            region=row["region"],
            case_region=row["case_region"],
            reason=GrantReason(row["reason"]),
            granted_at=as_utc(row["granted_at"]),
            expires_at=as_utc(row["expires_at"]),
            revoked_at=as_utc(revoked) if revoked is not None else None,
        )


@dataclass(frozen=True)
class CaseAccess:
    """Why a caller may open a case: her own scope, or a grant."""

    caller: Caller
    case_id: str
    grant: EmergencyGrant | None = None

    @property
    def via_grant(self) -> bool:
        return self.grant is not None


def in_regional_scope(caller: Caller, case_region: str) -> bool:
    return caller.role is Role.COORDINATOR and bool(caller.region) and caller.region == case_region


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

    def _now(self) -> datetime:
        return as_utc(self._clock())

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
        """Grant `caller` access to one case outside her region, audited."""
        if caller.role is not Role.COORDINATOR:
            raise PermissionDenied("only a coordinator may open an emergency grant")
        try:
            reason = GrantReason(reason)
        except ValueError:
            raise InvalidArgument(
                "reason", f"must be one of {', '.join(r.value for r in GrantReason)}"
            ) from None
        if not timedelta(0) < ttl <= MAX_GRANT_TTL:
            raise InvalidArgument("ttl", f"must be positive and at most {MAX_GRANT_TTL}")
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
            granted_at=now,
            expires_at=now + ttl,
        )
        session.execute(
            self._grants.insert().values(
                **{k: v for k, v in grant.__dict__.items() if k != "revoked_at"},
                note=note or None,
            )
        )
        audit.append(
            session,
            actor=caller,
            action=ACTION_GRANTED,
            case_id=case_id,
            target=grant.grant_id,
            reason=reason.value,
            keyring=self._keyring,
            now=now,
        )
        return grant

    def revoke(self, session: Session, caller: Caller, grant_id: str) -> EmergencyGrant:
        if caller.role is not Role.COORDINATOR:
            raise PermissionDenied("only a coordinator may revoke an emergency grant")
        row = (
            session.execute(select(self._grants).where(self._grants.c.grant_id == grant_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise NotFound("emergency grant not found")
        grant = EmergencyGrant.from_row(row)
        now = self._now()
        if grant.revoked_at is not None:
            return grant
        session.execute(
            update(self._grants)
            .where(self._grants.c.grant_id == grant_id)
            .values(revoked_at=now, revoked_by=caller.subject)
        )
        audit.append(
            session,
            actor=caller,
            action=ACTION_REVOKED,
            case_id=grant.case_id,
            target=grant_id,
            keyring=self._keyring,
            now=now,
        )
        return EmergencyGrant(**{**grant.__dict__, "revoked_at": now})

    def active_grant(self, session: Session, caller: Caller, case_id: str) -> EmergencyGrant | None:
        now = self._now()
        g = self._grants.c
        rows = session.execute(
            select(self._grants)
            .where(g.case_id == case_id, g.subject == caller.subject, g.revoked_at.is_(None))
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
        """May a coordinator open this case? Her region, or an active grant;
        otherwise PermissionDenied. With `audit_action` (e.g. "case.read") the
        access is recorded, with the grant id when it was made under one."""
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
                "case is outside the caller's region: an emergency grant with a reason is needed"
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
