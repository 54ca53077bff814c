"""Every network query, inside a caller's unit of work; never commits.

Rows a change guards are locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite
units of work are BEGIN IMMEDIATE).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from masar.platform.clock import as_utc
from masar.platform.errors import NotFound
from masar.platform.paging import decode_page_token, encode_page_token
from services.network.domain import (
    Account,
    AccountRole,
    AccountStatus,
    FailureCount,
    Organisation,
    OrganisationKind,
    OrganisationSpec,
    OrganisationStatus,
    PreferredLanguage,
    ServedSector,
    SpokenLanguage,
)
from services.network.models import (
    AccountRow,
    OrganisationRow,
    RefreshSessionRow,
    SignInFailureRow,
)

R = TypeVar("R")


def new_organisation_id() -> str:
    return f"org-{secrets.token_hex(6)}"


def new_account_id() -> str:
    return f"acc-{secrets.token_hex(6)}"


def _join(codes: Iterable[str]) -> str:
    return ",".join(sorted(codes))


def _split(value: str) -> list[str]:
    return [c for c in value.split(",") if c]


@dataclass(frozen=True)
class Page:
    size: int
    token: str = ""


def _paged(
    query: Select[tuple[R]],
    created: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[str],
    page: Page,
) -> Select[tuple[R]]:
    """Keyset paging on (created_at, id), oldest first."""
    if page.token:
        at, last_id = decode_page_token(page.token)
        query = query.where(or_(created > at, and_(created == at, ident > last_id)))
    return query.order_by(created, ident).limit(page.size + 1)


def _next_token(rows: list[tuple[datetime, str]], size: int) -> str:
    if len(rows) <= size:
        return ""
    created_at, ident = rows[size - 1]
    return encode_page_token(as_utc(created_at), ident)


# --- organisations -----------------------------------------------------------------------


def to_organisation(row: OrganisationRow) -> Organisation:
    return Organisation(
        organisation_id=row.organisation_id,
        name=row.name,
        kind=OrganisationKind(row.kind),
        region=row.region,
        languages=frozenset(SpokenLanguage(c) for c in _split(row.languages)),
        sectors=frozenset(ServedSector(c) for c in _split(row.sectors)),
        status=OrganisationStatus(row.status),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class OrganisationRepository:
    def insert(self, session: Session, spec: OrganisationSpec, *, now: datetime) -> str:
        row = OrganisationRow(
            organisation_id=new_organisation_id(),
            name=spec.name,
            kind=spec.kind.value,
            region=spec.region,
            languages=_join(spec.languages),
            sectors=_join(spec.sectors),
            status=OrganisationStatus.ACTIVE.value,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row.organisation_id

    def get(self, session: Session, organisation_id: str) -> Organisation:
        row = session.get(OrganisationRow, organisation_id)
        if row is None:
            raise NotFound("organisation not found")
        return to_organisation(row)

    def find(self, session: Session, organisation_id: str) -> Organisation | None:
        row = session.get(OrganisationRow, organisation_id)
        return to_organisation(row) if row is not None else None

    def set_status(
        self, session: Session, organisation_id: str, status: OrganisationStatus, *, now: datetime
    ) -> Organisation:
        row = session.execute(
            select(OrganisationRow)
            .where(OrganisationRow.organisation_id == organisation_id)
            .with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("organisation not found")
        if row.status != status.value:
            row.status = status.value
            row.updated_at = now
        return to_organisation(row)

    def list(
        self,
        session: Session,
        *,
        region: str | None,
        kind: OrganisationKind | None,
        status: OrganisationStatus | None,
        page: Page,
    ) -> tuple[list[Organisation], str]:
        query = select(OrganisationRow)
        if region:
            query = query.where(OrganisationRow.region == region)
        if kind is not None:
            query = query.where(OrganisationRow.kind == kind.value)
        if status is not None:
            query = query.where(OrganisationRow.status == status.value)
        paged = _paged(query, OrganisationRow.created_at, OrganisationRow.organisation_id, page)
        rows = list(session.execute(paged).scalars())
        token = _next_token([(r.created_at, r.organisation_id) for r in rows], page.size)
        return [to_organisation(r) for r in rows[: page.size]], token


# --- accounts ------------------------------------------------------------------------------


def to_account(row: AccountRow) -> Account:
    return Account(
        account_id=row.account_id,
        username=row.username,
        display_name=row.display_name,
        role=AccountRole(row.role),
        organisation_id=row.organisation_id,
        region=row.region,
        email=row.email,
        mobile=row.mobile,
        language=PreferredLanguage(row.language),
        status=AccountStatus(row.status),
        password_change_required=row.password_change_required,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


@dataclass(frozen=True, kw_only=True)
class NewAccount:
    username: str
    username_index: str
    email: str
    email_index: str
    index_key_id: str
    display_name: str
    mobile: str
    role: AccountRole
    organisation_id: str
    region: str
    language: PreferredLanguage
    password_hash: str
    totp_secret: str | None


@dataclass(frozen=True, kw_only=True)
class AccountFilter:
    organisation_id: str | None = None
    region: str | None = None
    role: AccountRole | None = None
    status: AccountStatus | None = None
    # Roles the caller may see (None: any).
    roles_within: frozenset[AccountRole] | None = None


class AccountRepository:
    def insert(self, session: Session, new: NewAccount, *, now: datetime) -> str:
        row = AccountRow(
            account_id=new_account_id(),
            username=new.username,
            username_index=new.username_index,
            email=new.email,
            email_index=new.email_index,
            index_key_id=new.index_key_id,
            display_name=new.display_name,
            mobile=new.mobile,
            role=new.role.value,
            organisation_id=new.organisation_id,
            region=new.region,
            language=new.language.value,
            status=AccountStatus.ACTIVE.value,
            disable_reason=None,
            password_hash=new.password_hash,
            password_change_required=True,
            totp_secret=new.totp_secret,
            totp_last_step=None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row.account_id

    def get(self, session: Session, account_id: str) -> Account:
        return to_account(self.row(session, account_id))

    def row(self, session: Session, account_id: str) -> AccountRow:
        row = session.get(AccountRow, account_id)
        if row is None:
            raise NotFound("account not found")
        return row

    def lock(self, session: Session, account_id: str) -> AccountRow:
        row = session.execute(
            select(AccountRow).where(AccountRow.account_id == account_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("account not found")
        return row

    def by_login(self, session: Session, digests: list[str]) -> AccountRow | None:
        """The account whose username or e-mail has one of these keyed hashes (locked)."""
        return session.execute(
            select(AccountRow)
            .where(or_(AccountRow.username_index.in_(digests), AccountRow.email_index.in_(digests)))
            .with_for_update()
        ).scalar_one_or_none()

    def login_taken(self, session: Session, digests: list[str]) -> bool:
        found = session.execute(
            select(AccountRow.account_id)
            .where(or_(AccountRow.username_index.in_(digests), AccountRow.email_index.in_(digests)))
            .limit(1)
        ).first()
        return found is not None

    def list(
        self, session: Session, filters: AccountFilter, page: Page
    ) -> tuple[list[Account], str]:
        query = select(AccountRow)
        if filters.organisation_id:
            query = query.where(AccountRow.organisation_id == filters.organisation_id)
        if filters.region:
            query = query.where(AccountRow.region == filters.region)
        if filters.role is not None:
            query = query.where(AccountRow.role == filters.role.value)
        if filters.status is not None:
            query = query.where(AccountRow.status == filters.status.value)
        if filters.roles_within is not None:
            query = query.where(AccountRow.role.in_([r.value for r in filters.roles_within]))
        paged = _paged(query, AccountRow.created_at, AccountRow.account_id, page)
        rows = list(session.execute(paged).scalars())
        token = _next_token([(r.created_at, r.account_id) for r in rows], page.size)
        return [to_account(r) for r in rows[: page.size]], token


# --- refresh sessions ----------------------------------------------------------------------


class RefreshSessionRepository:
    def insert(
        self,
        session: Session,
        *,
        session_id: str,
        account_id: str,
        secret_hash: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        session.add(
            RefreshSessionRow(
                session_id=session_id,
                account_id=account_id,
                secret_hash=secret_hash,
                previous_secret_hash=None,
                created_at=now,
                refreshed_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
        )
        session.flush()

    def lock(self, session: Session, session_id: str) -> RefreshSessionRow | None:
        return session.execute(
            select(RefreshSessionRow)
            .where(RefreshSessionRow.session_id == session_id)
            .with_for_update()
        ).scalar_one_or_none()

    def revoke_all(self, session: Session, account_id: str, *, now: datetime) -> int:
        result = session.execute(
            update(RefreshSessionRow)
            .where(
                RefreshSessionRow.account_id == account_id,
                RefreshSessionRow.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)


# --- sign-in failures ----------------------------------------------------------------------


class FailureRepository:
    def lock(self, session: Session, key: str) -> SignInFailureRow:
        """The key's row, created empty if missing, locked for this unit of work."""
        dialect = session.get_bind().dialect.name
        values = {"key": key, "failures": 0, "last_failure_at": None, "next_attempt_at": None}
        if dialect == "postgresql":
            session.execute(
                postgresql.insert(SignInFailureRow).values(**values).on_conflict_do_nothing()
            )
        else:
            session.execute(
                sqlite.insert(SignInFailureRow).values(**values).on_conflict_do_nothing()
            )
        return session.execute(
            select(SignInFailureRow).where(SignInFailureRow.key == key).with_for_update()
        ).scalar_one()

    @staticmethod
    def count(row: SignInFailureRow) -> FailureCount:
        return FailureCount(
            failures=row.failures,
            last_failure_at=as_utc(row.last_failure_at) if row.last_failure_at else None,
            next_attempt_at=as_utc(row.next_attempt_at) if row.next_attempt_at else None,
        )

    @staticmethod
    def store(row: SignInFailureRow, count: FailureCount) -> None:
        row.failures = count.failures
        row.last_failure_at = count.last_failure_at
        row.next_attempt_at = count.next_attempt_at
