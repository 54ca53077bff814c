"""Server-side sessions: the cookie holds a random id and nothing else.

A session keeps the person's access and refresh tokens (never written to
disk, never sent to the browser), her role, organisation, region and
language, and the CSRF token every form carries. It ends when she signs out,
when her refresh token expires, or after `idle_seconds` without a request
(shared computers are common in associations). Sessions live in this
process's memory: restarting the console signs everyone out, which is the
safe failure; several replicas need sticky sessions (deploy/)."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

COOKIE = "masar_session"
# A sign-in in progress that still needs a first password change.
PENDING_TTL = 10 * 60


@dataclass
class Session:
    sid: str
    csrf: str
    last_seen: float
    # Before sign-in, a session carries only its CSRF token and language.
    language: str = ""
    account_id: str = ""
    username: str = ""
    role: str = ""  # intake_officer, shelter_staff, coordinator, ... (AccountRole, lower case)
    organisation_id: str = ""
    region: str = ""
    access_token: str = field(default="", repr=False)
    access_expires_at: datetime | None = None
    refresh_token: str = field(default="", repr=False)
    refresh_expires_at: datetime | None = None
    # One-line notices shown once on the next page ("Referral accepted").
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return bool(self.access_token)

    def access_fresh(self, now: datetime | None = None) -> bool:
        moment = now or datetime.now(UTC)
        return self.access_expires_at is not None and self.access_expires_at.timestamp() > (
            moment.timestamp() + 30
        )

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented or "")

    def flash(self, message: str, kind: str = "ok") -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    """Sessions by id, each ended after `idle_seconds` without a request."""

    def __init__(self, idle_seconds: int) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}

    def new(self, language: str = "") -> Session:
        self._sweep()
        session = Session(
            sid=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            last_seen=time.monotonic(),
            language=language,
        )
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> tuple[Session | None, bool]:
        """The live session of `sid`, touched; and whether one had just idled out."""
        if not sid:
            return None, False
        session = self._sessions.get(sid)
        if session is None:
            return None, False
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[sid]
            return None, session.signed_in
        session.last_seen = now
        return session, False

    def peek(self, sid: str) -> Session | None:
        """The live session of `sid`, not touched (a live refresh is not activity)."""
        session = self._sessions.get(sid)
        if session is None or time.monotonic() - session.last_seen > self.idle_seconds:
            return None
        return session

    def end(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def renew(self, session: Session) -> Session:
        """A new id for the same person (at sign-in: no fixation)."""
        self._sessions.pop(session.sid, None)
        session.sid = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._sessions[session.sid] = session
        return session

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        for sid in [s for s, v in self._sessions.items() if v.last_seen < cutoff]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)
