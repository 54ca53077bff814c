"""Every referral query and change, inside a caller's unit of work (never
commits), and the hooks through which a sector plugs in its own rules."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from masar import contract
from masar.contract import DeclineReason, ReferralStatus, Risk, Sector
from masar.platform.clock import as_utc, utcnow
from masar.platform.errors import NotFound
from masar.platform.paging import decode_page_token, encode_page_token
from masar.referral._domain import (
    NoEligibleProvider,
    ReferralDraft,
    ReferralFilter,
    ReferralPage,
    ReferralRecord,
)
from masar.referral._models import ReferralColumns

M = TypeVar("M", bound=ReferralColumns)
N = TypeVar("N")
R = TypeVar("R")


class ProviderRows(Generic[R]):
    """The rows of a sector's provider table (shelters, programmes, legal aid
    providers) by id, inside a caller's unit of work. `noun` names a row in
    errors ("shelter not found"); `long_noun`, when longer, in a refusal of
    an unknown provider."""

    def __init__(self, model: type[R], *, noun: str, long_noun: str | None = None) -> None:
        self.model = model
        self.noun = noun
        self.long_noun = long_noun or noun
        mapper = sa_inspect(model)
        assert mapper is not None
        self._id = mapper.primary_key[0]

    def add(self, session: Session, row: R) -> R:
        session.add(row)
        session.flush()
        return row

    def find(self, session: Session, provider_id: str) -> R | None:
        return session.get(self.model, provider_id)

    def row(self, session: Session, provider_id: str) -> R:
        row = self.find(session, provider_id)
        if row is None:
            raise NotFound(f"{self.noun} not found")
        return row

    def lock(self, session: Session, provider_id: str) -> R:
        """The row, locked until the unit of work ends (SELECT ... FOR UPDATE
        on PostgreSQL; SQLite units of work are BEGIN IMMEDIATE)."""
        row = session.execute(
            select(self.model).where(self._id == provider_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"{self.noun} not found")
        return row

    def organisation_of(self, session: Session, provider_id: str) -> str | None:
        """For `SectorHooks.provider_organisation`: the `organisation_id`
        column of the provider's row (NotFound for an unknown provider)."""
        mapper = sa_inspect(self.model)
        assert mapper is not None
        found = session.execute(
            select(mapper.columns["organisation_id"]).where(self._id == provider_id)
        ).one_or_none()
        if found is None:
            raise NotFound(f"{self.noun} not found")
        organisation: str | None = found[0]
        return organisation or None

    def exists(self, session: Session, provider_id: str) -> bool:
        return self.find(session, provider_id) is not None

    def check_known(self, session: Session, provider_id: str) -> None:
        """For `SectorHooks.check_provider`: a provider a coordinator named
        must exist."""
        if not self.exists(session, provider_id):
            raise NoEligibleProvider(
                f"provider_id: unknown {self.long_noun} (no {self.noun} has this id)"
            )


def erase(row: Any, *columns: str) -> int:
    """For `SectorHooks.purge_needs`: set `columns` of `row` to None; 1 if any
    of them held something (one record erased), else 0."""
    held = any(getattr(row, column) is not None for column in columns)
    for column in columns:
        setattr(row, column, None)
    return int(held)


class SectorHooks(Generic[M, N]):
    """What a sector plugs into the handshake. Every method runs inside the
    caller's unit of work; raising a MasarError rolls the whole unit back."""

    def choose_provider(self, session: Session, draft: ReferralDraft[N]) -> str:
        """An eligible provider with free capacity, not in
        `draft.exclude_provider_ids` (same region first). Raise
        NoEligibleProvider when there is none."""
        raise NoEligibleProvider()

    def check_provider(self, session: Session, draft: ReferralDraft[N], provider_id: str) -> None:
        """A coordinator named `provider_id`: raise NoEligibleProvider, its
        message naming `provider_id` and saying why, if the provider does not
        exist or cannot take the referral."""

    def provider_organisation(self, session: Session, provider_id: str) -> str | None:
        """The organisation of the network `provider_id` belongs to (None: a
        provider registered before providers named one). The referral keeps
        it: its staff act on the referral. `ProviderRows.organisation_of`
        answers it from the provider's row."""
        raise NotImplementedError("a sector names its providers' organisations")

    def store_needs(self, session: Session, referral: M, draft: ReferralDraft[N]) -> None:
        """Copy what the sector needs from `draft.needs` onto the new referral."""

    def on_transition(
        self, session: Session, referral: M, old: ReferralStatus, new: ReferralStatus
    ) -> None:
        """Move the capacity the referral holds from what `old` holds to what
        `new` holds (lock the provider row first); raise ResourceExhausted
        when it does not fit. Called before `referral.status` changes."""

    def purge_needs(self, session: Session, referral: M) -> int:
        """Erase the personal details and needs stored for this referral (and
        sector records hanging off it); return how many records were erased."""
        return 0


class ReferralRepository(Generic[M, N]):
    """Every referral query and change, inside a caller's unit of work; never commits."""

    def __init__(self, *, sector: Sector, model: type[M], hooks: SectorHooks[M, N]) -> None:
        self.sector = sector
        self.model = model
        self.hooks = hooks

    def find(self, session: Session, referral_id: str, *, for_update: bool = False) -> M | None:
        query = select(self.model).where(self.model.referral_id == referral_id)
        if for_update:
            query = query.with_for_update()
        return session.execute(query).scalar_one_or_none()

    def load(self, session: Session, referral_id: str, *, for_update: bool = False) -> M:
        referral = self.find(session, referral_id, for_update=for_update)
        if referral is None:
            raise NotFound("referral not found")
        return referral

    def find_by_key(self, session: Session, idempotency_key: str) -> M | None:
        return session.execute(
            select(self.model).where(self.model.idempotency_key == idempotency_key)
        ).scalar_one_or_none()

    def of_case(self, session: Session, case_id: str, *, for_update: bool = False) -> list[M]:
        query = (
            select(self.model).where(self.model.case_id == case_id).order_by(self.model.referral_id)
        )
        if for_update:
            query = query.with_for_update()
        return list(session.execute(query).scalars())

    def insert(self, session: Session, draft: ReferralDraft[N]) -> M:
        if draft.provider_id:
            self.hooks.check_provider(session, draft, draft.provider_id)
            provider_id = draft.provider_id
        else:
            provider_id = self.hooks.choose_provider(session, draft)
        now = utcnow()
        referral = self.model()
        referral.referral_id = contract.new_referral_id(self.sector)
        referral.case_id = draft.case_id
        referral.provider_id = provider_id
        referral.organisation_id = self.hooks.provider_organisation(session, provider_id)
        referral.status = ReferralStatus.PENDING.value
        referral.risk = draft.risk.value
        referral.region = draft.region
        referral.idempotency_key = draft.idempotency_key
        referral.created_at = now
        referral.updated_at = now
        referral.decided_at = None
        referral.decline_reason = None
        referral.reminders = 0
        referral.needs_purged_at = None
        self.hooks.store_needs(session, referral, draft)
        session.add(referral)
        session.flush()
        return referral

    def transition(self, session: Session, referral: M, new: ReferralStatus) -> None:
        """Change status, moving held capacity through the sector's hook."""
        old = ReferralStatus(referral.status)
        self.hooks.on_transition(session, referral, old, new)
        referral.status = new.value
        referral.updated_at = utcnow()
        session.flush()

    def query(self, session: Session, filters: ReferralFilter) -> ReferralPage:
        model = self.model
        query = select(model)
        if filters.provider_id:
            query = query.where(model.provider_id == filters.provider_id)
        if filters.organisation_id:
            query = query.where(model.organisation_id == filters.organisation_id)
        if filters.status is not None:
            query = query.where(model.status == filters.status.value)
        if filters.case_id:
            query = query.where(model.case_id == filters.case_id)
        if filters.region:
            query = query.where(model.region == filters.region)
        if filters.page_token:
            after_at, after_id = decode_page_token(filters.page_token)
            query = query.where(
                or_(
                    model.created_at < after_at,
                    and_(model.created_at == after_at, model.referral_id < after_id),
                )
            )
        size = filters.page_size
        rows = list(
            session.execute(
                query.order_by(model.created_at.desc(), model.referral_id.desc()).limit(size + 1)
            ).scalars()
        )
        token = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = encode_page_token(as_utc(last.created_at), last.referral_id)
        return ReferralPage([self.to_record(r) for r in rows], token)

    def to_record(self, referral: M) -> ReferralRecord:
        return ReferralRecord(
            referral_id=referral.referral_id,
            case_id=referral.case_id,
            sector=self.sector,
            provider_id=referral.provider_id,
            status=ReferralStatus(referral.status),
            risk=Risk(referral.risk),
            region=referral.region,
            created_at=as_utc(referral.created_at),
            updated_at=as_utc(referral.updated_at),
            decided_at=as_utc(referral.decided_at) if referral.decided_at else None,
            decline_reason=DeclineReason(referral.decline_reason)
            if referral.decline_reason
            else None,
            reminders=referral.reminders or 0,
            organisation_id=referral.organisation_id or None,
        )

    def snapshot(self, referral: M) -> dict[str, Any]:
        mapper = sa_inspect(self.model)
        assert mapper is not None
        return {attr.key: getattr(referral, attr.key) for attr in mapper.column_attrs}
