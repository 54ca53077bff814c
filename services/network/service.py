"""Organisations and staff accounts: the administration rules, each call one
unit of work that commits with its audit entry or not at all.

Who may do what is decided here (services/network/domain.py holds the
rules); the servicer has already checked the caller's role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.errors import AlreadyExists, FailedPrecondition, PermissionDenied
from masar.platform.idempotency import IdempotencyLedger, run_retrying_conflicts
from services.network.credentials import (
    LookupHashes,
    Passwords,
    new_totp_secret,
    one_time_password,
    totp_uri,
)
from services.network.domain import (
    ADMIN_MANAGED_ROLES,
    TOTP_ROLES,
    Account,
    AccountRole,
    AccountSpec,
    AccountStatus,
    DisableReason,
    Manager,
    Organisation,
    OrganisationKind,
    OrganisationSpec,
    OrganisationStatus,
    check_account_fits,
    check_may_manage_account,
    check_may_manage_organisations,
    check_may_reset_credentials,
)
from services.network.models import AccountRow
from services.network.repository import (
    AccountFilter,
    AccountRepository,
    NewAccount,
    OrganisationRepository,
    Page,
    RefreshSessionRepository,
    to_account,
)


@dataclass(frozen=True)
class IssuedAccount:
    """An account with the secrets handed out once (empty on a retry)."""

    account: Account
    one_time_password: str = ""
    totp_uri: str = ""


class NetworkDirectory:
    def __init__(
        self,
        database: Database,
        *,
        ledger: IdempotencyLedger,
        lookups: LookupHashes,
        passwords: Passwords,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.ledger = ledger
        self.lookups = lookups
        self.passwords = passwords
        self.clock = clock
        self.organisations = OrganisationRepository()
        self.accounts = AccountRepository()
        self.sessions = RefreshSessionRepository()

    # --- organisations ------------------------------------------------------------------

    async def create_organisation(
        self, manager: Manager, spec: OrganisationSpec, *, key: str, fingerprint: str
    ) -> Organisation:
        check_may_manage_organisations(manager, spec.region)

        def work(session: Session) -> Organisation:
            def create() -> str:
                now = self.clock()
                organisation_id = self.organisations.insert(session, spec, now=now)
                audit.append(
                    session,
                    actor=manager,
                    action="network.organisation_created",
                    target=organisation_id,
                    reason=spec.kind.value,
                    now=now,
                )
                return organisation_id

            organisation_id, _ = self.ledger.once(
                session,
                scope="network.create_organisation",
                key=key,
                fingerprint=fingerprint,
                create=create,
            )
            return self.organisations.get(session, organisation_id)

        return await run_retrying_conflicts(self.database, work)

    async def get_organisation(self, organisation_id: str) -> Organisation:
        return await self.database.run(lambda s: self.organisations.get(s, organisation_id))

    async def list_organisations(
        self,
        *,
        region: str | None,
        kind: OrganisationKind | None,
        status: OrganisationStatus | None,
        page: Page,
    ) -> tuple[list[Organisation], str]:
        return await self.database.run(
            lambda s: self.organisations.list(s, region=region, kind=kind, status=status, page=page)
        )

    async def set_organisation_status(
        self, manager: Manager, organisation_id: str, status: OrganisationStatus
    ) -> Organisation:
        action = {
            OrganisationStatus.SUSPENDED: "network.organisation_suspended",
            OrganisationStatus.ACTIVE: "network.organisation_reinstated",
        }[status]

        def work(session: Session) -> Organisation:
            current = self.organisations.get(session, organisation_id)
            check_may_manage_organisations(manager, current.region)
            if current.status is status:
                return current
            now = self.clock()
            changed = self.organisations.set_status(session, organisation_id, status, now=now)
            audit.append(session, actor=manager, action=action, target=organisation_id, now=now)
            return changed

        return await self.database.run(work)

    # --- accounts -------------------------------------------------------------------------

    async def create_account(
        self, manager: Manager, spec: AccountSpec, *, key: str, fingerprint: str
    ) -> IssuedAccount:
        password = one_time_password()
        secret = new_totp_secret() if spec.role in TOTP_ROLES else None
        # argon2 is slow on purpose: hash outside the unit of work (and its lock).
        password_hash = await asyncio.to_thread(self.passwords.hash, password)
        key_id, username_index = self.lookups.login_index(spec.username)
        _, email_index = self.lookups.login_index(spec.email)

        def work(session: Session) -> IssuedAccount:
            created: list[bool] = []

            def create() -> str:
                organisation = self.organisations.get(session, spec.organisation_id)
                check_may_manage_account(
                    manager,
                    role=spec.role,
                    organisation_id=organisation.organisation_id,
                    region=organisation.region,
                )
                check_account_fits(spec.role, organisation)
                candidates = [
                    *self.lookups.login_candidates(spec.username),
                    *self.lookups.login_candidates(spec.email),
                ]
                if self.accounts.login_taken(session, candidates):
                    raise AlreadyExists("an account with this username or e-mail already exists")
                now = self.clock()
                account_id = self.accounts.insert(
                    session,
                    NewAccount(
                        username=spec.username,
                        username_index=username_index,
                        email=spec.email,
                        email_index=email_index,
                        index_key_id=key_id,
                        display_name=spec.display_name,
                        mobile=spec.mobile,
                        role=spec.role,
                        organisation_id=organisation.organisation_id,
                        region=organisation.region,
                        language=spec.language,
                        password_hash=password_hash,
                        totp_secret=secret,
                    ),
                    now=now,
                )
                audit.append(
                    session,
                    actor=manager,
                    action="network.account_created",
                    target=account_id,
                    reason=spec.role.value,
                    now=now,
                )
                created.append(True)
                return account_id

            account_id, _ = self.ledger.once(
                session,
                scope="network.create_account",
                key=key,
                fingerprint=fingerprint,
                create=create,
            )
            account = self.accounts.get(session, account_id)
            if not created:
                # A retry: the secrets were handed out with the first answer.
                check_may_manage_account(
                    manager,
                    role=account.role,
                    organisation_id=account.organisation_id,
                    region=account.region,
                )
                return IssuedAccount(account)
            uri = totp_uri(secret, account.username) if secret else ""
            return IssuedAccount(account, one_time_password=password, totp_uri=uri)

        return await run_retrying_conflicts(self.database, work)

    async def get_account(self, manager: Manager, account_id: str) -> Account:
        def work(session: Session) -> Account:
            account = self.accounts.get(session, account_id)
            if account.account_id != manager.subject:
                check_may_manage_account(
                    manager,
                    role=account.role,
                    organisation_id=account.organisation_id,
                    region=account.region,
                )
            audit.append(
                session,
                actor=manager,
                action="network.account_read",
                target=account_id,
                now=self.clock(),
            )
            return account

        return await self.database.run(work)

    async def list_accounts(
        self, manager: Manager, filters: AccountFilter, page: Page
    ) -> tuple[list[Account], str]:
        scoped = scope_account_filter(manager, filters)

        def work(session: Session) -> tuple[list[Account], str]:
            accounts, token = self.accounts.list(session, scoped, page)
            audit.append(
                session,
                actor=manager,
                action="network.accounts_listed",
                target=scoped.organisation_id or scoped.region or None,
                now=self.clock(),
            )
            return accounts, token

        return await self.database.run(work)

    async def set_account_status(
        self,
        manager: Manager,
        account_id: str,
        status: AccountStatus,
        reason: DisableReason | None = None,
    ) -> Account:
        def work(session: Session) -> Account:
            row = self.accounts.lock(session, account_id)
            check_may_manage_account(
                manager,
                role=AccountRole(row.role),
                organisation_id=row.organisation_id,
                region=row.region,
            )
            if account_id == manager.subject:
                raise FailedPrecondition("an account cannot change its own status")
            if row.status == status.value:
                return to_account(row)
            now = self.clock()
            row.status = status.value
            row.disable_reason = reason.value if reason else None
            row.updated_at = now
            if status is AccountStatus.DISABLED:
                # Immediate effect: no refresh token of hers works any more.
                self.sessions.revoke_all(session, account_id, now=now)
            audit.append(
                session,
                actor=manager,
                action=(
                    "network.account_disabled"
                    if status is AccountStatus.DISABLED
                    else "network.account_enabled"
                ),
                target=account_id,
                reason=reason.value if reason else None,
                now=now,
            )
            return to_account(row)

        return await self.database.run(work)

    async def reset_password(self, manager: Manager, account_id: str) -> IssuedAccount:
        password = one_time_password()
        password_hash = await asyncio.to_thread(self.passwords.hash, password)

        def work(session: Session) -> IssuedAccount:
            row = self._resettable(session, manager, account_id)
            now = self.clock()
            row.password_hash = password_hash
            row.password_change_required = True
            row.updated_at = now
            self.sessions.revoke_all(session, account_id, now=now)
            audit.append(
                session,
                actor=manager,
                action="network.password_reset",
                target=account_id,
                now=now,
            )
            return IssuedAccount(to_account(row), one_time_password=password)

        return await self.database.run(work)

    async def reset_totp(self, manager: Manager, account_id: str) -> IssuedAccount:
        secret = new_totp_secret()

        def work(session: Session) -> IssuedAccount:
            row = self._resettable(session, manager, account_id)
            if AccountRole(row.role) not in TOTP_ROLES:
                raise FailedPrecondition("this account signs in without a second factor")
            now = self.clock()
            row.totp_secret = secret
            row.totp_last_step = None
            row.updated_at = now
            self.sessions.revoke_all(session, account_id, now=now)
            audit.append(
                session,
                actor=manager,
                action="network.totp_reset",
                target=account_id,
                now=now,
            )
            return IssuedAccount(to_account(row), totp_uri=totp_uri(secret, row.username))

        return await self.database.run(work)

    def _resettable(self, session: Session, manager: Manager, account_id: str) -> AccountRow:
        row = self.accounts.lock(session, account_id)
        check_may_reset_credentials(manager, role=AccountRole(row.role), region=row.region)
        if account_id == manager.subject:
            raise FailedPrecondition("change your own credentials with ChangePassword")
        return row


def scope_account_filter(manager: Manager, filters: AccountFilter) -> AccountFilter:
    """What a manager may list is what she manages: an administrator the
    accounts of coordinators, administrators and operators; a coordinator the
    others of her region; a supervisor the others of her organisation."""
    if manager.role == AccountRole.NETWORK_ADMIN:
        return AccountFilter(
            organisation_id=filters.organisation_id,
            region=filters.region,
            role=filters.role,
            status=filters.status,
            roles_within=ADMIN_MANAGED_ROLES,
        )
    if manager.role == AccountRole.COORDINATOR:
        if filters.region and filters.region != manager.region:
            raise PermissionDenied("a coordinator lists the accounts of her own region only")
        return AccountFilter(
            organisation_id=filters.organisation_id,
            region=manager.region,
            role=filters.role,
            status=filters.status,
            roles_within=frozenset(AccountRole) - ADMIN_MANAGED_ROLES,
        )
    if manager.role == AccountRole.SUPERVISOR:
        if filters.organisation_id and filters.organisation_id != manager.org:
            raise PermissionDenied("a supervisor lists her own organisation's accounts only")
        return AccountFilter(
            organisation_id=manager.org,
            region=filters.region,
            role=filters.role,
            status=filters.status,
            roles_within=frozenset(AccountRole) - ADMIN_MANAGED_ROLES,
        )
    raise PermissionDenied(f"role {manager.role} does not list accounts")
