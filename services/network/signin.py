"""Signing in: password (argon2id) and, for the roles that need one, a TOTP
code; then Masar's signed token for the person and a refresh token.

One pipeline authenticates SignIn and ChangePassword:
1. a short unit of work claims the caller's slot (services/network/domain.py
   ThrottlePolicy: per source address and per account) and reads the
   account, if any;
2. the attempt waits what the throttle says;
3. the password is checked outside any transaction (argon2 is slow on
   purpose), against a dummy hash when there is no account, so an unknown
   account and a wrong password cost the same time;
4. a second unit of work records the outcome: failures counted, success
   recorded, every attempt audited.
Every credential failure raises the same UNAUTHENTICATED message.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition, ResourceExhausted, Unauthenticated
from masar.platform.identity import Role, TokenIssuer
from services.network.credentials import (
    LookupHashes,
    Passwords,
    RefreshToken,
    accepted_totp_step,
    secret_hash,
)
from services.network.domain import (
    TOTP_ROLES,
    Account,
    AccountRole,
    AccountStatus,
    FailureCount,
    OrganisationStatus,
    ThrottlePolicy,
    account_wait,
    claim_address_slot,
    normalise_login,
)
from services.network.models import AccountRow, OrganisationRow
from services.network.repository import (
    AccountRepository,
    FailureRepository,
    RefreshSessionRepository,
    to_account,
)

SIGN_IN_FAILED = (
    "sign-in failed: check the login, the password and, if your role needs one, the code"
)
SESSION_ENDED = "the session has ended: sign in again"
TOO_MANY = "too many sign-in attempts from this address: try again later"


@dataclass(frozen=True, kw_only=True)
class SignInPolicy:
    """Token lifetimes and the throttle. Access tokens are short-lived: a
    disabled account loses access at its next refresh."""

    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(hours=12)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)


@dataclass(frozen=True)
class AuditActor:
    subject: str
    role: str
    org: str = ""


# Whoever tries to sign in, before she has proven who she is.
ANONYMOUS = AuditActor("anonymous", "anonymous")


@dataclass(frozen=True)
class SignedIn:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    account: Account


@dataclass(frozen=True)
class _Attempt:
    """What the first unit of work learnt: the wait, and the account if any."""

    wait: timedelta
    refused: bool
    account_id: str | None
    password_hash: str | None
    candidates: list[str]
    address_key: str
    account_key: str


class _Refusal(Exception):
    """An outcome recorded (and committed) before the caller is refused."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class SignInDesk:
    def __init__(
        self,
        database: Database,
        *,
        issuer: TokenIssuer,
        lookups: LookupHashes,
        passwords: Passwords,
        policy: SignInPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.lookups = lookups
        self.passwords = passwords
        self.policy = policy or SignInPolicy()
        self.clock = clock
        self.sleep = sleep
        self.accounts = AccountRepository()
        self.failures = FailureRepository()
        self.sessions = RefreshSessionRepository()

    # --- the public calls ---------------------------------------------------------------

    async def sign_in(self, login: str, password: str, totp_code: str, *, source: str) -> SignedIn:
        def succeed(session: Session, row: AccountRow, now: datetime, _: str) -> SignedIn:
            if row.password_change_required:
                audit.append(
                    session,
                    actor=_actor(row),
                    action="network.sign_in_refused",
                    target=row.account_id,
                    reason="password_change_required",
                    now=now,
                )
                raise _Refusal(
                    FailedPrecondition("a one-time password must be changed first (ChangePassword)")
                )
            signed_in = self._open_session(session, row, now)
            audit.append(
                session, actor=_actor(row), action="network.sign_in", target=row.account_id, now=now
            )
            return signed_in

        return await self._authenticated(login, password, totp_code, source=source, then=succeed)

    async def change_password(
        self,
        login: str,
        current_password: str,
        new_password: str,
        totp_code: str,
        *,
        source: str,
        check_new: Callable[[AccountRow], None],
    ) -> SignedIn:
        def succeed(session: Session, row: AccountRow, now: datetime, new_hash: str) -> SignedIn:
            row.password_hash = new_hash
            row.password_change_required = False
            row.updated_at = now
            # Other sign-ins of hers end: whoever knew the old password is out.
            self.sessions.revoke_all(session, row.account_id, now=now)
            signed_in = self._open_session(session, row, now)
            audit.append(
                session,
                actor=_actor(row),
                action="network.password_changed",
                target=row.account_id,
                now=now,
            )
            return signed_in

        return await self._authenticated(
            login,
            current_password,
            totp_code,
            source=source,
            then=succeed,
            check=check_new,
            new_password=new_password,
        )

    async def refresh(self, token: str) -> SignedIn:
        parsed = RefreshToken.parse(token)
        if parsed is None:
            raise Unauthenticated(SESSION_ENDED)

        def work(session: Session) -> SignedIn:
            now = self.clock()
            row = self.sessions.lock(session, parsed.session_id)
            if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now:
                raise _Refusal(Unauthenticated(SESSION_ENDED))
            presented = secret_hash(parsed.secret)
            account = self.accounts.lock(session, row.account_id)
            if not hmac.compare_digest(presented, row.secret_hash):
                if row.previous_secret_hash and hmac.compare_digest(
                    presented, row.previous_secret_hash
                ):
                    # A rotated-out token came back: someone else holds a copy.
                    row.revoked_at = now
                    self._refuse_refresh(session, account, "refresh_token_reused", now)
                raise _Refusal(Unauthenticated(SESSION_ENDED))
            reason = self._inactive_reason(session, account)
            if reason is not None:
                row.revoked_at = now
                self._refuse_refresh(session, account, reason, now)
                raise _Refusal(Unauthenticated(SESSION_ENDED))
            fresh = RefreshToken.new(row.session_id)
            row.previous_secret_hash = row.secret_hash
            row.secret_hash = fresh.secret_hash
            row.refreshed_at = now
            audit.append(
                session,
                actor=_actor(account),
                action="network.token_refreshed",
                target=account.account_id,
                now=now,
            )
            return self._signed_in(account, fresh, as_utc(row.expires_at), now)

        return await self._run_recording_refusals(work)

    # --- the pipeline -------------------------------------------------------------------

    async def _authenticated(
        self,
        login: str,
        password: str,
        totp_code: str,
        *,
        source: str,
        then: Callable[[Session, AccountRow, datetime, str], SignedIn],
        check: Callable[[AccountRow], None] | None = None,
        new_password: str | None = None,
    ) -> SignedIn:
        """`then` runs once she has proven who she is, with the hash of
        `new_password` (computed only then: no one makes the service hash
        for free)."""
        login = normalise_login(login)
        attempt = await self.database.run(lambda s: self._claim(s, login, source))
        if attempt.refused:
            raise ResourceExhausted(TOO_MANY)
        if attempt.wait > timedelta(0):
            await self.sleep(attempt.wait.total_seconds())
        password_ok = await asyncio.to_thread(
            self.passwords.verify_or_dummy, attempt.password_hash, password
        )
        new_hash = ""
        if password_ok and new_password is not None:
            new_hash = await asyncio.to_thread(self.passwords.hash, new_password)

        def record(session: Session) -> SignedIn:
            now = self.clock()
            # The same query whether or not the account exists (timing).
            row = self.accounts.by_login(session, attempt.candidates)
            if row is not None and row.account_id != attempt.account_id:
                row = None  # changed in between: treat as unknown
            reason = self._failure_reason(session, row, password_ok, totp_code, now)
            if reason is not None or row is None:
                self._count_failure(session, attempt, now)
                audit.append(
                    session,
                    actor=ANONYMOUS,
                    action="network.sign_in_failed",
                    target=attempt.account_id,
                    reason=reason or "unknown_account",
                    now=now,
                )
                raise _Refusal(Unauthenticated(SIGN_IN_FAILED))
            if check is not None:
                check(row)
            # She proved who she is: her account's failures are forgotten (not
            # her address's, or one account could clear an address's record).
            self.failures.store(self.failures.lock(session, attempt.account_key), FailureCount())
            return then(session, row, now, new_hash)

        return await self._run_recording_refusals(record)

    def _claim(self, session: Session, login: str, source: str) -> _Attempt:
        now = self.clock()
        throttle = self.policy.throttle
        candidates = self.lookups.login_candidates(login)
        row = self.accounts.by_login(session, candidates)
        address_key = self.lookups.throttle_key("addr", source)
        account_key = self.lookups.throttle_key(
            "acct", row.account_id if row is not None else f"login/{login}"
        )
        address_row = self.failures.lock(session, address_key)
        address = self.failures.count(address_row).current(throttle, now)
        slot = claim_address_slot(address, throttle, now)
        account = self.failures.count(self.failures.lock(session, account_key)).current(
            throttle, now
        )
        wait = max(slot.wait, account_wait(account, throttle))
        if not slot.refused:
            self.failures.store(
                address_row,
                FailureCount(
                    failures=address.failures,
                    last_failure_at=address.last_failure_at,
                    next_attempt_at=slot.next_attempt_at,
                ),
            )
        if slot.refused or wait > timedelta(0):
            audit.append(
                session,
                actor=ANONYMOUS,
                action="network.sign_in_throttled",
                target=row.account_id if row is not None else None,
                reason="refused" if slot.refused else "delayed",
                now=now,
            )
        return _Attempt(
            wait=wait,
            refused=slot.refused,
            account_id=row.account_id if row is not None else None,
            password_hash=row.password_hash if row is not None else None,
            candidates=candidates,
            address_key=address_key,
            account_key=account_key,
        )

    def _failure_reason(
        self,
        session: Session,
        row: AccountRow | None,
        password_ok: bool,
        totp_code: str,
        now: datetime,
    ) -> str | None:
        """Why the attempt fails (an audit code), or None when it succeeds."""
        if row is None:
            return "unknown_account"
        if not password_ok:
            return "wrong_password"
        if AccountRole(row.role) in TOTP_ROLES:
            if not row.totp_secret:
                return "totp_not_enrolled"
            step = accepted_totp_step(
                row.totp_secret, totp_code, now=now, last_step=row.totp_last_step
            )
            if step is None:
                return "wrong_totp"
            row.totp_last_step = step
        return self._inactive_reason(session, row)

    def _inactive_reason(self, session: Session, row: AccountRow) -> str | None:
        if row.status != AccountStatus.ACTIVE.value:
            return "account_disabled"
        organisation = session.get(OrganisationRow, row.organisation_id)
        if organisation is None or organisation.status != OrganisationStatus.ACTIVE.value:
            return "organisation_suspended"
        return None

    def _count_failure(self, session: Session, attempt: _Attempt, now: datetime) -> None:
        throttle = self.policy.throttle
        for key in (attempt.address_key, attempt.account_key):
            row = self.failures.lock(session, key)
            count = self.failures.count(row).current(throttle, now)
            self.failures.store(
                row,
                FailureCount(
                    failures=count.failures + 1,
                    last_failure_at=now,
                    next_attempt_at=count.next_attempt_at,
                ),
            )

    def _refuse_refresh(
        self, session: Session, row: AccountRow, reason: str, now: datetime
    ) -> None:
        audit.append(
            session,
            actor=_actor(row),
            action="network.refresh_refused",
            target=row.account_id,
            reason=reason,
            now=now,
        )

    # --- tokens ---------------------------------------------------------------------------

    def _open_session(self, session: Session, row: AccountRow, now: datetime) -> SignedIn:
        refresh = RefreshToken.new()
        expires_at = now + self.policy.refresh_ttl
        self.sessions.insert(
            session,
            session_id=refresh.session_id,
            account_id=row.account_id,
            secret_hash=refresh.secret_hash,
            now=now,
            expires_at=expires_at,
        )
        return self._signed_in(row, refresh, expires_at, now)

    def _signed_in(
        self, row: AccountRow, refresh: RefreshToken, refresh_expires_at: datetime, now: datetime
    ) -> SignedIn:
        ttl = min(self.policy.access_ttl, refresh_expires_at - now)
        token = self.issuer.issue(
            role=Role(row.role),
            subject=row.account_id,
            org=row.organisation_id,
            region=row.region,
            ttl=ttl,
            now=now,
        )
        issued = now.replace(microsecond=0)
        return SignedIn(
            access_token=token,
            access_expires_at=issued + ttl,
            refresh_token=str(refresh),
            refresh_expires_at=refresh_expires_at,
            account=to_account(row),
        )

    async def _run_recording_refusals(self, work: Callable[[Session], SignedIn]) -> SignedIn:
        """Run `work`; a `_Refusal` commits what was recorded, then refuses."""
        refusal: list[Exception] = []

        def guarded(session: Session) -> SignedIn | None:
            try:
                return work(session)
            except _Refusal as exc:
                refusal.append(exc.error)
                return None

        result = await self.database.run(guarded)
        if result is None:
            raise refusal[0]
        return result


def _actor(row: AccountRow) -> AuditActor:
    return AuditActor(row.account_id, row.role, row.organisation_id)
