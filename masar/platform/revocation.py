"""Revoked tokens: what every service refuses although its signature holds.

The network service keeps the revocations — a token by its id (`jti`:
signed out, revoked by an administrator), or every token of a subject or of
an organisation issued at or before a moment (the account disabled, the
organisation suspended) — and serves them with `IdentityService
.ListRevocations(since)`. Each service polls it with its service identity
every `POLL_INTERVAL` (20 s; the network service reads its own database),
keeps the entries in a `RevocationList` until no token they cover can still
be valid, and its interceptor (masar.platform.access.AuthInterceptor)
refuses a token the list names: a disabled account or a signed-out session
stops working within a minute.

If the network service cannot be reached, the list keeps what it knew and
the poller retries (a warning each time): tokens live at most 12 hours, and
people's sign-in tokens 15 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc

from masar.platform.channels import TokenSource, authorised_channel
from masar.platform.identity import MAX_TTL, Caller
from masar.platform.settings import TlsSettings
from masar.v1 import identity_pb2, identity_pb2_grpc

log = logging.getLogger(__name__)

POLL_INTERVAL = 20.0
RETRY_INTERVAL = 5.0


@dataclass(frozen=True, kw_only=True)
class Revocation:
    """One token (`token_id`), or every token of `subject` / `organisation_id`
    issued at or before `issued_before`; forgotten after `expires_at`."""

    token_id: str = ""
    subject: str = ""
    organisation_id: str = ""
    issued_before: datetime | None = None
    expires_at: datetime

    def covers(self, caller: Caller) -> bool:
        if self.token_id:
            return caller.token_id == self.token_id
        if self.issued_before is None or caller.issued_at > self.issued_before:
            return False
        if self.subject:
            return caller.subject == self.subject
        if self.organisation_id:
            return caller.org == self.organisation_id
        return False


class RevocationList:
    """The revocations a process knows (thread-safe)."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tokens: dict[str, datetime] = {}
        self._others: dict[tuple[str, str], Revocation] = {}
        self._lock = threading.Lock()
        self.updated_at: datetime | None = None

    def add(self, revocations: Iterable[Revocation]) -> None:
        now = self._clock()
        with self._lock:
            for item in revocations:
                if item.expires_at <= now:
                    continue
                if item.token_id:
                    self._tokens[item.token_id] = max(
                        item.expires_at, self._tokens.get(item.token_id, item.expires_at)
                    )
                    continue
                key = ("sub", item.subject) if item.subject else ("org", item.organisation_id)
                if not key[1] or item.issued_before is None:
                    continue
                known = self._others.get(key)
                if (
                    known is None
                    or known.issued_before is None
                    or known.issued_before < item.issued_before
                ):
                    self._others[key] = item
            self._prune(now)
            self.updated_at = now

    def _prune(self, now: datetime) -> None:
        for token_id in [t for t, until in self._tokens.items() if until <= now]:
            del self._tokens[token_id]
        for key in [k for k, r in self._others.items() if r.expires_at <= now]:
            del self._others[key]

    def revoked(self, caller: Caller) -> bool:
        with self._lock:
            if caller.token_id and caller.token_id in self._tokens:
                return True
            for key in (("sub", caller.subject), ("org", caller.org)):
                if key[1] and (entry := self._others.get(key)) and entry.covers(caller):
                    return True
        return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens) + len(self._others)


class RevocationFeed(Protocol):
    async def fetch(self, since: int) -> tuple[list[Revocation], int]:
        """The revocations after cursor `since`, and the next cursor."""
        ...

    async def aclose(self) -> None: ...


class RevocationPoller:
    """Keeps a `RevocationList` current from a feed, every `interval` seconds."""

    def __init__(
        self,
        feed: RevocationFeed,
        revocations: RevocationList,
        *,
        interval: float = POLL_INTERVAL,
        retry: float = RETRY_INTERVAL,
    ) -> None:
        self.feed = feed
        self.revocations = revocations
        self.interval = interval
        self.retry = min(retry, interval)
        self.cursor = 0

    async def poll_once(self) -> int:
        """One fetch; how many revocations it brought."""
        found, cursor = await self.feed.fetch(self.cursor)
        self.revocations.add(found)
        self.cursor = max(self.cursor, cursor)
        return len(found)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                wait = self.interval
                try:
                    await self.poll_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # unreachable, refused, ...: keep what we know
                    log.warning(
                        "revocations not refreshed, retrying",
                        extra={"error": type(exc).__name__},
                    )
                    wait = self.retry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            await self.feed.aclose()


def _moment(stamp: object) -> datetime | None:
    if stamp is None or not getattr(stamp, "seconds", 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined, no-any-return]


def from_message(message: identity_pb2.Revocation) -> Revocation:
    issued_before = _moment(message.issued_before) if message.HasField("issued_before") else None
    expires_at = (
        _moment(message.expires_at) if message.HasField("expires_at") else None
    ) or datetime.now(UTC) + MAX_TTL
    return Revocation(
        token_id=message.token_id,
        subject=message.subject,
        organisation_id=message.organisation_id,
        issued_before=issued_before,
        expires_at=expires_at,
    )


class NetworkRevocationFeed:
    """ListRevocations on the network service, as the service's identity."""

    def __init__(
        self,
        address: str,
        tokens: TokenSource,
        *,
        tls: TlsSettings | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._address = address
        self._tokens = tokens
        self._tls = tls
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    async def fetch(self, since: int) -> tuple[list[Revocation], int]:
        if self._channel is None:
            self._channel = authorised_channel(self._address, self._tokens, tls=self._tls)
        stub = identity_pb2_grpc.IdentityServiceStub(self._channel)
        reply: identity_pb2.ListRevocationsResponse = await stub.ListRevocations(
            identity_pb2.ListRevocationsRequest(since=since), timeout=self._timeout
        )
        return [from_message(r) for r in reply.revocations], int(reply.cursor)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def expiry_after(moment: datetime) -> datetime:
    """When no token issued at or before `moment` can still be valid."""
    return moment + MAX_TTL + timedelta(minutes=1)
