"""The identity provider's own work: issuing tokens beyond sign-in, and the
revocations every service polls.

Revocations are read from the network's audit log, where every one of them
is already written in the unit of work that causes it (an append-only,
hash-chained record: nothing to keep in step, nothing a re-enabled account
erases): a disabled account or a password reset revokes every token of the
account issued until then, a suspended organisation every token naming it,
and `network.token_revoked` one token by its id (signed out, or revoked by an
administrator). The cursor is the audit sequence number.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from masar.platform.errors import InvalidArgument, PermissionDenied, Unauthenticated
from masar.platform.identity import (
    DEFAULT_TTL,
    MAX_TTL,
    SERVICE_TOKEN_TTL,
    Caller,
    Role,
    TokenIssuer,
    check_claims,
    check_subject,
)
from masar.platform.revocation import Revocation, expiry_after
from masar.platform.settings import BOOTSTRAP_CLIENT
from services.network.credentials import RefreshToken, secret_hash
from services.network.models import AUDIT
from services.network.repository import RefreshSessionRepository

# Audit actions that revoke, and what they revoke (the entry's target).
REVOKE_SUBJECT = frozenset({"network.account_disabled", "network.password_reset"})
REVOKE_ORGANISATION = frozenset({"network.organisation_suspended"})
TOKEN_REVOKED = "network.token_revoked"
REVOKING = REVOKE_SUBJECT | REVOKE_ORGANISATION | {TOKEN_REVOKED}
PAGE = 500
# Services that get a service identity from the network service.
CLIENT_SERVICES = frozenset({"intake", "shelter", "legal", "employment", "health", "psychosocial"})


@dataclass(frozen=True)
class AuditActor:
    subject: str
    role: str
    org: str = ""


@dataclass(frozen=True, kw_only=True)
class Issued:
    token: str
    caller: Caller


@dataclass(frozen=True, kw_only=True)
class Spec:
    role: str
    org: str = ""
    region: str = ""
    subject: str = ""
    ttl: timedelta | None = None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidArgument("spec.role", "is not a role") from None


class TokenDesk:
    """Issues tokens (administrators, the clients it trusts) and revokes them."""

    def __init__(
        self,
        database: Database,
        issuer: TokenIssuer,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.clock = clock
        self.sessions = RefreshSessionRepository()

    # --- issuing ---------------------------------------------------------------------------

    async def issue_for_admin(self, admin: Caller, spec: Spec) -> Issued:
        """A person's token, issued by a network administrator."""
        role = _role(spec.role)
        if role.is_service:
            raise PermissionDenied("a service gets its identity with its own client key")
        return await self._issue(
            AuditActor(admin.subject, admin.role.value, admin.org), spec, role, DEFAULT_TTL
        )

    async def issue_for_client(self, client: str, spec: Spec) -> Issued:
        """A token for a trusted client: a service its own identity only, the
        local stack's bootstrap client any role and scope."""
        actor = AuditActor(f"client:{client}", "client")
        if client == BOOTSTRAP_CLIENT:
            role = _role(spec.role)
            default = SERVICE_TOKEN_TTL if role.is_service else DEFAULT_TTL
            return await self._issue(actor, spec, role, default)
        if client not in CLIENT_SERVICES:
            raise PermissionDenied("this client may not ask for tokens")
        own = Role(f"service:{client}")
        if spec.role not in ("", own.value) or spec.org or spec.region or spec.subject:
            raise PermissionDenied("a service may ask only for its own identity")
        ttl = min(spec.ttl or SERVICE_TOKEN_TTL, SERVICE_TOKEN_TTL)
        return await self._issue(actor, Spec(role=own.value, ttl=ttl), own, SERVICE_TOKEN_TTL)

    async def _issue(self, actor: AuditActor, spec: Spec, role: Role, default: timedelta) -> Issued:
        ttl = spec.ttl or default
        try:
            check_claims(role=role, org=spec.org, region=spec.region, ttl=ttl, scoped=True)
            if spec.subject:
                check_subject(spec.subject)
        except ValueError as exc:
            raise InvalidArgument("spec", str(exc)) from None

        def work(session: Session) -> Issued:
            now = self.clock()
            try:
                token = self.issuer.issue(
                    role=role,
                    subject=spec.subject or None,
                    org=spec.org,
                    region=spec.region,
                    ttl=ttl,
                    now=now,
                )
            except ValueError as exc:
                raise InvalidArgument("spec", str(exc)) from None
            caller = self.issuer.verifier().verify(token, now=now)
            audit.append(
                session,
                actor=actor,
                action="network.token_issued",
                target=caller.token_id,
                reason=role.value,
                now=now,
            )
            return Issued(token=token, caller=caller)

        return await self.database.run(work)

    # --- revoking --------------------------------------------------------------------------

    async def sign_out(self, caller: Caller, refresh_token: str) -> None:
        """End the caller's session: her token now, her refresh token too."""
        parsed = RefreshToken.parse(refresh_token) if refresh_token else None

        def work(session: Session) -> None:
            now = self.clock()
            if parsed is not None:
                row = self.sessions.lock(session, parsed.session_id)
                if (
                    row is None
                    or row.account_id != caller.subject
                    or not hmac.compare_digest(secret_hash(parsed.secret), row.secret_hash)
                ):
                    raise Unauthenticated("the refresh token is not the caller's")
                if row.revoked_at is None:
                    row.revoked_at = now
            self._revoke(session, caller, caller.token_id, "signed_out", now)

        await self.database.run(work)

    async def revoke(self, admin: Caller, token_id: str) -> None:
        def work(session: Session) -> None:
            self._revoke(session, admin, token_id, "revoked", self.clock())

        await self.database.run(work)

    @staticmethod
    def _revoke(session: Session, actor: Caller, token_id: str, reason: str, now: datetime) -> None:
        audit.append(
            session,
            actor=AuditActor(actor.subject, actor.role.value, actor.org),
            action=TOKEN_REVOKED,
            target=token_id,
            reason=reason,
            now=now,
        )


class RevocationSource:
    """The revocations in the network's audit log after a cursor."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock

    def list(self, session: Session, since: int) -> tuple[list[Revocation], int]:
        log = AUDIT.log
        # Up to the head read first: an entry committed meanwhile waits for
        # the next poll instead of being jumped over.
        head = audit.read_head(session)
        if head is None:
            return [], since
        top = int(head[0])
        # Older entries cover only tokens that have expired since.
        oldest = self.clock() - MAX_TTL - timedelta(minutes=1)
        rows = session.execute(
            select(log.c.seq, log.c.at, log.c.action, log.c.target)
            .where(
                log.c.seq > since,
                log.c.seq <= top,
                log.c.at >= oldest,
                log.c.action.in_(sorted(REVOKING)),
            )
            .order_by(log.c.seq)
            .limit(PAGE)
        ).all()
        found: list[Revocation] = []
        cursor = since
        for seq, at, action, target in rows:
            cursor = max(cursor, int(seq))
            if not target:
                continue
            moment = as_utc(at)
            if action == TOKEN_REVOKED:
                found.append(Revocation(token_id=target, expires_at=expiry_after(moment)))
            elif action in REVOKE_SUBJECT:
                found.append(
                    Revocation(
                        subject=target, issued_before=moment, expires_at=expiry_after(moment)
                    )
                )
            else:
                found.append(
                    Revocation(
                        organisation_id=target,
                        issued_before=moment,
                        expires_at=expiry_after(moment),
                    )
                )
        if len(rows) < PAGE:
            # Nothing else up to the head revokes: the cursor moves there.
            cursor = max(cursor, top)
        return found, cursor


class LocalRevocationFeed:
    """The network service's own feed: its database, no RPC."""

    def __init__(self, database: Database, source: RevocationSource | None = None) -> None:
        self.database = database
        self.source = source or RevocationSource()

    async def fetch(self, since: int) -> tuple[list[Revocation], int]:
        return await self.database.run(lambda s: self.source.list(s, since))

    async def aclose(self) -> None:
        return None
