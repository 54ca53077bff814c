"""The sector side of the referral handshake, written once for every sector.

Shelter, legal aid and employment all receive referrals from the journey and
answer them the same way (DESIGN.md, "Referral handshake"): a PENDING referral
to a chosen provider, then the provider's decision (ACCEPTED, or DECLINED with
a structured reason), then the sector's milestones (STARTED, COMPLETED); the
journey may close a referral (REROUTED, EXPIRED, WITHDRAWN), remind its
provider, or purge a case whose consent was withdrawn. This module holds all of
that; a sector supplies only its own data and rules.

How a sector uses it
--------------------
1. ``models.py`` — the referral table and the handshake's own tables::

       class Base(DeclarativeBase):
           metadata = new_metadata()

       TABLES = handshake_tables(Base.metadata)  # outbox + idempotency_keys

       class ShelterReferral(ReferralColumns, Base):
           __tablename__ = "referrals"
           # only what the sector needs, nullable so a purge can erase it
           household_size: Mapped[int | None] = mapped_column(Integer)

   The sector's ``migrations/versions/0001_initial.py`` creates ``referrals``,
   ``outbox`` and ``idempotency_keys`` (and its own tables).

2. ``domain.py`` / ``repository.py`` — a ``SectorHooks`` subclass: choose a
   provider (``choose_provider``), vet a provider a coordinator named
   (``check_provider``), store the needs on a new referral (``store_needs``),
   hold and release capacity when a referral changes status
   (``on_transition``: e.g. PENDING -> ACCEPTED reserves beds, ACCEPTED ->
   IN_SERVICE turns them into occupied beds, anything -> WITHDRAWN frees
   them), and erase what a purge must erase (``purge_needs``). Every hook runs
   inside the caller's unit of work; a hook that raises rolls everything back.
   On PostgreSQL a capacity hook locks the provider row (``with_for_update()``);
   on SQLite every unit of work is already ``BEGIN IMMEDIATE``.

3. ``app.py`` — wire it::

       outbox = Outbox(database, TABLES.outbox, connector)
       handshake = ReferralHandshake(
           sector=Sector.SHELTER, model=ShelterReferral, database=database,
           outbox=outbox, ledger=IdempotencyLedger(TABLES.idempotency),
           hooks=ShelterHooks(),
       )
       SectorComponents(..., outbox=outbox)

4. ``servicer.py`` — inherit ``ReferralRpcs`` first, so DecideReferral,
   GetReferral, ListReferrals, RemindProvider, CloseReferral and PurgeCase (the
   shapes in common.proto) are implemented once; build the sector's request
   RPC with ``parse_draft(...)`` + ``handshake.create(draft)``, and its
   milestone RPCs with ``handshake.record_milestone(...)``; convert with
   ``referral_to_pb`` and ``delivery_to_pb``.

5. ``activities.py`` — subclass ``ReferralActivities`` (set ``sector``,
   implement ``submit_request``) and give ``definitions()`` to the worker: the
   four contract activities "<sector>.request_referral", ".remind_provider",
   ".close_referral" and ".purge_case" call the sector's own gRPC API.

Idempotency
-----------
Every create and every staff action carries an idempotency key. The ledger
(``idempotency_keys``) remembers (scope, key) with a fingerprint of the
request: a retry returns the first result and writes nothing; the same key
with a different request is INVALID_ARGUMENT on ``idempotency_key``. Referral
rows also keep their creating key under a unique constraint. Concurrent
first attempts with one key on PostgreSQL meet a unique violation; the unit of
work is then retried and finds the first result.

Staff actions reach the journey synchronously
---------------------------------------------
A decision or a milestone is written together with its outbox entry (a
``ReferralDecision`` / ``ReferralMilestone`` whose ``event_id`` is derived from
the referral id and the idempotency key) in ONE unit of work; then
``Outbox.deliver`` is tried at once. The answer is DELIVERED, or QUEUED when
Temporal is unreachable (the outbox dispatcher delivers it later; the journey
deduplicates by event id). If the journey REJECTS the update (its validator
says the referral is unknown or stale), the local change is reverted in a
second unit of work (status, the row's columns and the capacity it held) and
``FailedPrecondition`` is raised, so staff get a synchronous "no". A retry
with the same key then gets the same answer. A QUEUED entry that the journey
rejects later, when the dispatcher delivers it, is only marked REJECTED in the
outbox; it is not reverted.

Who may call what
-----------------
``class ShelterServicer(ReferralRpcs, ..., sector=Sector.SHELTER)`` declares
the common RPCs' roles for that sector (see ``common_rpc_roles``): the
sector's staff decide on and read the referrals addressed to their own
organisation (token ``org`` == the referral's ``provider_id``); a coordinator
reads the referrals of her own region; the sector's service identity (its
activities, on behalf of the journey) reminds, closes and purges. Sector RPCs
check the same scope with ``ReferralHandshake.authorise`` before acting.

A referral request must carry intake's consent proof (``masar.referral.consent``):
``ReferralHandshake.require_consent`` refuses it otherwise.

Audit
-----
With ``audited=True`` (the sector's database has ``masar.platform.audit`` tables) every
referral created, every staff decision, milestone and local step, every
closure, every purge and every read of a sector's case file is an audit entry
in the same unit of work as the change it records.

Nothing here logs, raises or returns personal data: errors name the field.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import DateTime, Integer, MetaData, String, Table, and_, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapped, Session, mapped_column
from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    CasePurge,
    DeclineReason,
    Milestone,
    ProviderReminder,
    PurgeResult,
    ReferralClosure,
    ReferralCreated,
    ReferralDecision,
    ReferralMilestone,
    ReferralRequest,
    ReferralStatus,
    Risk,
    Sector,
)
from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from masar.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from masar.platform.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyLedger,
    fingerprint,
    idempotency_table,
    request_fingerprint,
    run_retrying_conflicts,
)
from masar.platform.identity import (
    Caller,
    Role,
    TokenVerifier,
    authorised_channel,
    caller_or_none,
    current_caller,
    requires,
    service_role,
    service_token_source,
)
from masar.platform.outbox import DeliveryOutcome, Outbox, outbox_table
from masar.platform.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
)
from masar.platform.process import SectorComponents, identity_environ
from masar.platform.rpc import GrpcService
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.platform.validation import (
    check_provider_id,
    require_case_id,
    require_idempotency_key,
    require_region,
    require_text,
)
from masar.referral.consent import ConsentVerifier
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
N = TypeVar("N")  # the sector's needs (contract.ShelterNeeds, LegalNeeds, ...)

OPEN_STATUSES = frozenset(
    {ReferralStatus.PENDING, ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE}
)
CLOSING_STATUSES = frozenset(
    {ReferralStatus.REROUTED, ReferralStatus.EXPIRED, ReferralStatus.WITHDRAWN}
)
# Which status a milestone leaves, by default, and which it enters.
MILESTONE_FROM: dict[Milestone, frozenset[ReferralStatus]] = {
    Milestone.STARTED: frozenset({ReferralStatus.ACCEPTED}),
    Milestone.COMPLETED: frozenset({ReferralStatus.IN_SERVICE}),
}
MILESTONE_TO: dict[Milestone, ReferralStatus] = {
    Milestone.STARTED: ReferralStatus.IN_SERVICE,
    Milestone.COMPLETED: ReferralStatus.COMPLETED,
}


class NoEligibleProvider(ResourceExhausted):
    """No provider can take this referral (none eligible, none with capacity)."""

    def __init__(self, message: str = "no eligible provider with free capacity") -> None:
        super().__init__(message)


# --- tables ----------------------------------------------------------------------


class ReferralColumns:
    """Columns every sector's referral table has. Mix into the sector's model::

    class ShelterReferral(ReferralColumns, Base):
        __tablename__ = "referrals"
    """

    referral_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    provider_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    risk: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decline_reason: Mapped[str | None] = mapped_column(String(32))
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a purge erased what the sector received for the case.
    needs_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


M = TypeVar("M", bound=ReferralColumns)


@dataclass(frozen=True)
class HandshakeTables:
    outbox: Table
    idempotency: Table


def handshake_tables(metadata: MetaData) -> HandshakeTables:
    """Add the outbox and the idempotency ledger to a sector's metadata."""
    return HandshakeTables(outbox=outbox_table(metadata), idempotency=idempotency_table(metadata))


# --- idempotency ---------------------------------------------------------------------


# --- domain values -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReferralRecord:
    """A referral as the sector sees it: ids, status and codes, nothing personal."""

    referral_id: str
    case_id: str
    sector: Sector
    provider_id: str
    status: ReferralStatus
    risk: Risk
    region: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None = None
    decline_reason: DeclineReason | None = None
    reminders: int = 0


@dataclass(frozen=True, kw_only=True)
class ReferralDraft(Generic[N]):
    """A validated request for a new referral."""

    case_id: str
    region: str
    risk: Risk
    idempotency_key: str
    needs: N
    exclude_provider_ids: frozenset[str] = frozenset()
    # Set when a coordinator reassigns the referral to a named provider.
    provider_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReferralFilter:
    provider_id: str | None = None
    status: ReferralStatus | None = None
    case_id: str | None = None
    region: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None


@dataclass(frozen=True)
class ReferralPage:
    referrals: list[ReferralRecord]
    next_page_token: str | None


@dataclass(frozen=True)
class StaffActionResult:
    """A decision or milestone recorded, and whether the journey has it yet."""

    referral: ReferralRecord
    delivery: DeliveryOutcome  # DELIVERED or QUEUED


def stable_event_id(referral_id: str, kind: str, idempotency_key: str) -> str:
    """The journey deduplicates on this: same referral, action and key -> same id."""
    digest = hashlib.sha256(f"{kind}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return f"{referral_id}-{kind[:1]}{digest}"


# --- scope ----------------------------------------------------------------------------------

# The staff role of each sector: their token's `org` names their provider.
STAFF_ROLES: dict[Sector, Role] = {
    Sector.SHELTER: Role.SHELTER_STAFF,
    Sector.LEGAL: Role.LEGAL_AID,
    Sector.EMPLOYMENT: Role.EMPLOYMENT_OFFICER,
}


@dataclass(frozen=True)
class SystemActor:
    """The audit actor of a change made outside any RPC (tests, tools)."""

    subject: str = "system"
    role: str = "system"
    org: str = ""


SYSTEM_ACTOR = SystemActor()


def check_referral_scope(caller: Caller, sector: Sector, *, provider_id: str, region: str) -> None:
    """May `caller` act on a referral of `sector` addressed to `provider_id`
    in `region`? Its sector's staff of that provider, a coordinator of that
    region, or the sector's own service identity; PermissionDenied otherwise
    (the method's roles were already checked by the AuthInterceptor)."""
    if caller.role is STAFF_ROLES[sector]:
        if not caller.org or caller.org != provider_id:
            raise PermissionDenied("the referral is not addressed to the caller's organisation")
        return
    if caller.role is Role.COORDINATOR:
        if not caller.region or caller.region != region:
            raise PermissionDenied("the referral is outside the caller's region")
        return
    if caller.role is service_role(sector.value):
        return
    raise PermissionDenied(f"role {caller.role.value} may not act on this referral")


def common_rpc_roles(sector: Sector) -> dict[str, tuple[Role, ...]]:
    """Who may call the handshake RPCs every sector shares (before the
    per-referral scope checks)."""
    staff, service = STAFF_ROLES[sector], service_role(sector.value)
    return {
        "DecideReferral": (staff,),
        "GetReferral": (staff, Role.COORDINATOR, service),
        "ListReferrals": (staff, Role.COORDINATOR),
        "RemindProvider": (service,),
        "CloseReferral": (service,),
        "PurgeCase": (service,),
    }


# --- sector hooks --------------------------------------------------------------------------


class SectorHooks(Generic[M, N]):
    """What a sector plugs into the handshake. Every method runs inside the
    caller's unit of work; raising a MasarError rolls the whole unit back."""

    def choose_provider(self, session: Session, draft: ReferralDraft[N]) -> str:
        """An eligible provider with free capacity, not in
        `draft.exclude_provider_ids` (same region first). Raise
        NoEligibleProvider when there is none."""
        raise NoEligibleProvider()

    def check_provider(self, session: Session, draft: ReferralDraft[N], provider_id: str) -> None:
        """A coordinator named `provider_id`: raise NoEligibleProvider if it
        does not exist or cannot take the referral."""

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


# --- repository level ------------------------------------------------------------------------


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
        )

    def snapshot(self, referral: M) -> dict[str, Any]:
        mapper = sa_inspect(self.model)
        assert mapper is not None
        return {attr.key: getattr(referral, attr.key) for attr in mapper.column_attrs}


# --- unit-of-work level (what servicers call) ------------------------------------------------


class ReferralHandshake(Generic[M, N]):
    """The handshake operations, each one unit of work (plus journey delivery
    for staff actions). See the module docstring."""

    def __init__(
        self,
        *,
        sector: Sector,
        model: type[M],
        database: Database,
        outbox: Outbox,
        ledger: IdempotencyLedger,
        hooks: SectorHooks[M, N],
        consent: ConsentVerifier | None = None,
        audited: bool = False,
    ) -> None:
        self.sector = sector
        self.database = database
        self.outbox = outbox
        self.ledger = ledger
        self.hooks = hooks
        self.consent = consent
        self.audited = audited
        self.repository: ReferralRepository[M, N] = ReferralRepository(
            sector=sector, model=model, hooks=hooks
        )
        self._id_pattern = re.compile(
            rf"^{re.escape(contract.REFERRAL_ID_PREFIX[sector])}-[0-9a-f]{{16}}$"
        )

    # -- validation --

    def check_referral_id(self, value: str, field: str = "referral_id") -> str:
        if not value:
            raise InvalidArgument(field, "is required")
        if not self._id_pattern.match(value):
            raise InvalidArgument(field, f"is not a {self.sector.value} referral id")
        return value

    # -- access and audit --

    def require_consent(self, proof: str, case_id: str) -> None:
        """Refuse a referral request without intake's proof of consent."""
        if self.consent is None:
            raise FailedPrecondition("consent_proof: this service cannot verify consent")
        self.consent.check(proof, case_id)

    async def authorise(self, referral_id: str) -> ReferralRecord:
        """The referral, if the current caller may act on it (see
        `check_referral_scope`); NotFound or PermissionDenied otherwise."""
        caller = current_caller()
        record = await self.get(referral_id)
        check_referral_scope(
            caller, self.sector, provider_id=record.provider_id, region=record.region
        )
        return record

    def record_audit(
        self,
        session: Session,
        action: str,
        *,
        case_id: str,
        target: str | None = None,
        reason: str | None = None,
    ) -> None:
        """An audit entry by the current caller, in the caller's unit of work."""
        if self.audited:
            audit.append(
                session,
                actor=caller_or_none() or SYSTEM_ACTOR,
                action=action,
                case_id=case_id,
                target=target,
                reason=reason,
            )

    async def read_file(self, referral_id: str, read: Callable[[Session, M], T]) -> T:
        """Read a referral's sector file (personal data): audited."""

        def work(session: Session) -> T:
            referral = self.repository.load(session, referral_id)
            result = read(session, referral)
            self.record_audit(
                session, "referral.file_read", case_id=referral.case_id, target=referral_id
            )
            return result

        return await self.database.run(work)

    # -- reads --

    async def get(self, referral_id: str) -> ReferralRecord:
        repo = self.repository
        return await self.database.run(lambda s: repo.to_record(repo.load(s, referral_id)))

    async def list(self, filters: ReferralFilter) -> ReferralPage:
        return await self.database.run(lambda s: self.repository.query(s, filters))

    # -- create --

    async def create(self, draft: ReferralDraft[N]) -> ReferralRecord:
        """A PENDING referral to a chosen (or the named) provider; a retry with
        the same key returns the first referral."""
        repo = self.repository
        scope = f"{self.sector.value}.referral.create"
        print_ = fingerprint(
            draft.case_id,
            draft.region,
            draft.risk,
            draft.needs,
            draft.exclude_provider_ids,
            draft.provider_id,
        )

        def work(session: Session) -> ReferralRecord:
            referral_id, created = self.ledger.once(
                session,
                scope=scope,
                key=draft.idempotency_key,
                fingerprint=print_,
                create=lambda: repo.insert(session, draft).referral_id,
            )
            if created:
                self.record_audit(
                    session, "referral.created", case_id=draft.case_id, target=referral_id
                )
            return repo.to_record(repo.load(session, referral_id))

        return await run_retrying_conflicts(self.database, work)

    # -- staff actions, delivered to the journey --

    async def decide(
        self,
        referral_id: str,
        *,
        accept: bool,
        decline_reason: DeclineReason | None,
        idempotency_key: str,
    ) -> StaffActionResult:
        """Accept (the sector's hook reserves capacity) or decline a PENDING
        referral, and deliver the decision to the journey."""
        if not accept and decline_reason is None:
            raise InvalidArgument("decline_reason", "is required to decline")
        new_status = ReferralStatus.ACCEPTED if accept else ReferralStatus.DECLINED
        reason = None if accept else decline_reason
        kind = "decision"
        event_id = stable_event_id(referral_id, kind, idempotency_key)

        def apply(session: Session, referral: M) -> Any:
            now = utcnow()
            referral.decided_at = now
            referral.decline_reason = reason.value if reason else None
            return ReferralDecision(
                event_id=event_id,
                referral_id=referral_id,
                sector=self.sector,
                accepted=accept,
                decided_at=now,
                decline_reason=reason.value if reason else None,
            )

        return await self._staff_action(
            referral_id,
            kind=kind,
            idempotency_key=idempotency_key,
            request_print=fingerprint(referral_id, accept, reason),
            allowed=frozenset({ReferralStatus.PENDING}),
            new_status=new_status,
            update_name=contract.UPDATE_REFERRAL_DECISION,
            apply=apply,
            wrong_state="referral is not pending",
        )

    async def record_milestone(
        self,
        referral_id: str,
        *,
        milestone: Milestone,
        idempotency_key: str,
        detail: str | None = None,
        apply: Callable[[Session, M], None] | None = None,
        from_statuses: Collection[ReferralStatus] | None = None,
        request_print: str = "",
    ) -> StaffActionResult:
        """STARTED (ACCEPTED -> IN_SERVICE) or COMPLETED (IN_SERVICE ->
        COMPLETED), delivered to the journey. `apply` writes the sector's own
        columns on the referral row (they are restored if the journey rejects
        the milestone); `detail` is a structured code, never free text;
        `request_print` fingerprints the sector's extra request fields."""
        kind = f"milestone:{milestone.value}"
        event_id = stable_event_id(referral_id, kind, idempotency_key)
        allowed = frozenset(from_statuses or MILESTONE_FROM[milestone])

        def write(session: Session, referral: M) -> Any:
            if apply is not None:
                apply(session, referral)
            return ReferralMilestone(
                event_id=event_id,
                referral_id=referral_id,
                sector=self.sector,
                milestone=milestone,
                at=utcnow(),
                detail=detail,
            )

        return await self._staff_action(
            referral_id,
            kind=kind,
            idempotency_key=idempotency_key,
            request_print=fingerprint(referral_id, milestone, detail, request_print),
            allowed=allowed,
            new_status=MILESTONE_TO[milestone],
            update_name=contract.UPDATE_REFERRAL_MILESTONE,
            apply=write,
            wrong_state="referral is not in a state for this step",
        )

    async def _staff_action(
        self,
        referral_id: str,
        *,
        kind: str,
        idempotency_key: str,
        request_print: str,
        allowed: frozenset[ReferralStatus],
        new_status: ReferralStatus,
        update_name: str,
        apply: Callable[[Session, M], Any],
        wrong_state: str,
    ) -> StaffActionResult:
        repo = self.repository
        scope = f"{self.sector.value}.{kind}"
        event_id = stable_event_id(referral_id, kind, idempotency_key)

        @dataclass
        class Done:
            record: ReferralRecord
            snapshot: dict[str, Any] | None  # None: a replay, nothing written now
            refused: str | None = None  # a replay of an update the journey refused

        def work(session: Session) -> Done:
            referral = repo.load(session, referral_id, for_update=True)
            entry = self.ledger.lookup(
                session, scope=scope, key=idempotency_key, fingerprint=request_print
            )
            if entry is not None:
                refused = (entry.result or {}).get("refused")
                return Done(repo.to_record(referral), None, refused)
            old = ReferralStatus(referral.status)
            if old not in allowed:
                raise FailedPrecondition(wrong_state)
            snapshot = repo.snapshot(referral)
            repo.transition(session, referral, new_status)
            event = apply(session, referral)
            session.flush()
            self.outbox.enqueue(
                session, case_id=referral.case_id, update_name=update_name, event=event
            )
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=request_print,
                subject_id=referral_id,
                result={"event_id": event_id},
            )
            self.record_audit(
                session,
                f"referral.{kind}",
                case_id=referral.case_id,
                target=referral_id,
                reason=referral.decline_reason or new_status.value,
            )
            return Done(repo.to_record(referral), snapshot)

        done = await run_retrying_conflicts(self.database, work)
        if done.refused is not None:
            raise FailedPrecondition(f"the journey refused this update ({done.refused})")
        outcome, rejected = await self.outbox.deliver(event_id)
        if outcome is DeliveryOutcome.REJECTED:
            # An error type from the journey's validator: a code, never data.
            error_type = rejected.error_type if rejected and rejected.error_type else "Rejected"
            if done.snapshot is not None:
                await self._revert(
                    referral_id,
                    new_status,
                    done.snapshot,
                    scope=scope,
                    idempotency_key=idempotency_key,
                    ledger_result={"event_id": event_id, "refused": error_type},
                )
            raise FailedPrecondition(f"the journey refused this update ({error_type})")
        if done.snapshot is None:
            done = Done(await self.get(referral_id), None)
        return StaffActionResult(done.record, outcome)

    async def _revert(
        self,
        referral_id: str,
        applied: ReferralStatus,
        snapshot: dict[str, Any],
        *,
        scope: str,
        idempotency_key: str,
        ledger_result: dict[str, Any],
    ) -> None:
        """Undo a staff action the journey refused, and remember the refusal
        so a retry with the same key gets the same answer."""
        repo = self.repository

        def work(session: Session) -> None:
            self.ledger.set_result(session, scope=scope, key=idempotency_key, result=ledger_result)
            referral = repo.load(session, referral_id, for_update=True)
            if ReferralStatus(referral.status) is not applied:
                return  # changed again since: leave it
            repo.transition(session, referral, ReferralStatus(snapshot["status"]))
            for key, value in snapshot.items():
                if key != "updated_at":
                    setattr(referral, key, value)
            self.record_audit(
                session,
                "referral.reverted",
                case_id=referral.case_id,
                target=referral_id,
                reason=str(ledger_result.get("refused") or "Rejected"),
            )

        try:
            await self.database.run(work)
        except Exception as exc:
            log.warning(
                "could not revert a rejected staff action",
                extra={"referral_id": referral_id, "error": type(exc).__name__},
            )

    # -- sector-local steps (no journey update) --

    async def update_local(
        self,
        referral_id: str,
        *,
        step: str,
        idempotency_key: str,
        allowed: Collection[ReferralStatus],
        apply: Callable[[Session, M], None],
        request_print: str = "",
        wrong_state: str = "referral is not in a state for this step",
    ) -> ReferralRecord:
        """A sector step the journey does not need (e.g. training certified):
        writes once per key, in one unit of work."""
        repo = self.repository
        scope = f"{self.sector.value}.{step}"
        print_ = fingerprint(referral_id, step, request_print)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) not in allowed:
                raise FailedPrecondition(wrong_state)
            apply(session, referral)
            referral.updated_at = utcnow()
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            self.record_audit(
                session, f"referral.{step}", case_id=referral.case_id, target=referral_id
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    # -- the journey's requests --

    async def remind(self, referral_id: str, *, idempotency_key: str) -> ReferralRecord:
        """Count a reminder for an open referral (once per key); a closed
        referral is returned unchanged."""
        repo = self.repository
        scope = f"{self.sector.value}.remind"
        print_ = fingerprint(referral_id)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) in OPEN_STATUSES:
                referral.reminders = (referral.reminders or 0) + 1
                referral.updated_at = utcnow()
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    async def close(
        self, referral_id: str, *, status: ReferralStatus, idempotency_key: str
    ) -> ReferralRecord:
        """REROUTED, EXPIRED or WITHDRAWN: an open referral closes and releases
        what it held; one already closed is returned unchanged (the journey
        reads its status)."""
        if status not in CLOSING_STATUSES:
            raise InvalidArgument("status", "must be REROUTED, EXPIRED or WITHDRAWN")
        repo = self.repository
        scope = f"{self.sector.value}.close"
        print_ = fingerprint(referral_id, status)

        def work(session: Session) -> ReferralRecord:
            referral = repo.load(session, referral_id, for_update=True)
            if self.ledger.lookup(session, scope=scope, key=idempotency_key, fingerprint=print_):
                return repo.to_record(referral)
            if ReferralStatus(referral.status) in OPEN_STATUSES:
                repo.transition(session, referral, status)
                self.record_audit(
                    session,
                    "referral.closed",
                    case_id=referral.case_id,
                    target=referral_id,
                    reason=status.value,
                )
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return repo.to_record(referral)

        return await run_retrying_conflicts(self.database, work)

    async def purge_case(self, case_id: str, *, idempotency_key: str) -> PurgeResult:
        """Consent withdrawn: open referrals of the case become WITHDRAWN
        (releasing capacity) and the sector erases what it received. Referral
        ids and statuses stay. A retry returns the first counts."""
        repo = self.repository
        scope = f"{self.sector.value}.purge"
        print_ = fingerprint(case_id)

        def work(session: Session) -> PurgeResult:
            entry = self.ledger.lookup(
                session, scope=scope, key=idempotency_key, fingerprint=print_
            )
            if entry is not None and entry.result is not None:
                return PurgeResult(
                    referrals_withdrawn=int(entry.result["referrals_withdrawn"]),
                    records_purged=int(entry.result["records_purged"]),
                )
            withdrawn = purged = 0
            now = utcnow()
            for referral in repo.of_case(session, case_id, for_update=True):
                if ReferralStatus(referral.status) in OPEN_STATUSES:
                    repo.transition(session, referral, ReferralStatus.WITHDRAWN)
                    withdrawn += 1
                purged += self.hooks.purge_needs(session, referral)
                if referral.needs_purged_at is None:
                    referral.needs_purged_at = now
                    referral.updated_at = now
            result = PurgeResult(referrals_withdrawn=withdrawn, records_purged=purged)
            # Consent withdrawn: what the sector received is gone, and the log says so.
            self.record_audit(session, "case.purged", case_id=case_id, reason="consent_withdrawn")
            self.ledger.record(
                session,
                scope=scope,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=case_id,
                result=dataclasses.asdict(result),
            )
            return result

        return await run_retrying_conflicts(self.database, work)


# --- validation helpers (servicers) -----------------------------------------------------------


def parse_draft(
    *,
    case_id: str,
    region: str,
    risk: int,
    idempotency_key: str,
    needs: N,
    exclude_provider_ids: Iterable[str] = (),
    provider_id: str = "",
    prefix: str = "",
) -> ReferralDraft[N]:
    """Validate the fields every sector's request RPC carries; `prefix` is put
    before field names in errors (e.g. "request.")."""
    excluded = frozenset(exclude_provider_ids)
    for value in excluded:
        check_provider_id(value, f"{prefix}exclude_provider_ids")
    return ReferralDraft(
        case_id=require_case_id(case_id, f"{prefix}case_id"),
        region=require_region(region, f"{prefix}region"),
        risk=risk_from_pb(risk, f"{prefix}risk"),
        idempotency_key=require_idempotency_key(idempotency_key, f"{prefix}idempotency_key"),
        needs=needs,
        exclude_provider_ids=excluded,
        provider_id=check_provider_id(provider_id, f"{prefix}provider_id") if provider_id else None,
    )


# --- protobuf conversions ------------------------------------------------------------------


def timestamp_pb(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(as_utc(value))
    return ts


def from_timestamp_pb(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def code_from_pb(enum_type: Any, value: int, *, prefix: str, field: str) -> str:
    """A sector enum value (e.g. EXIT_REASON_TRANSFERRED) as its lowercase code
    ("transferred"); UNSPECIFIED or unknown numbers are INVALID_ARGUMENT."""
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name: str = enum_type.Name(value)
    except ValueError:
        raise InvalidArgument(field, "is not a known value") from None
    return name.removeprefix(prefix).lower()


def code_to_pb(enum_type: Any, code: str | None, *, prefix: str) -> Any:
    """The inverse of `code_from_pb`; None is the UNSPECIFIED value (0)."""
    if code is None:
        return 0
    return enum_type.Value(f"{prefix}{code.upper()}")


def sector_to_pb(sector: Sector) -> common_pb2.Sector.ValueType:
    return common_pb2.Sector.Value(f"SECTOR_{sector.name}")


def status_to_pb(status: ReferralStatus) -> common_pb2.ReferralStatus.ValueType:
    return common_pb2.ReferralStatus.Value(f"REFERRAL_STATUS_{status.name}")


def status_from_pb(value: int, field: str = "status") -> ReferralStatus | None:
    """None for UNSPECIFIED; INVALID_ARGUMENT for a number this build does not know."""
    if value == 0:
        return None
    try:
        name = common_pb2.ReferralStatus.Name(common_pb2.ReferralStatus.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known referral status") from None
    return ReferralStatus(name.removeprefix("REFERRAL_STATUS_"))


def risk_to_pb(risk: Risk) -> common_pb2.RiskLevel.ValueType:
    return common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.name}")


def risk_from_pb(value: int, field: str = "risk") -> Risk:
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name = common_pb2.RiskLevel.Name(common_pb2.RiskLevel.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known risk level") from None
    return Risk(name.removeprefix("RISK_LEVEL_").lower())


def decline_reason_to_pb(reason: DeclineReason | None) -> common_pb2.DeclineReason.ValueType:
    if reason is None:
        return common_pb2.DECLINE_REASON_UNSPECIFIED
    return common_pb2.DeclineReason.Value(f"DECLINE_REASON_{reason.name}")


def decline_reason_from_pb(value: int, field: str = "decline_reason") -> DeclineReason | None:
    if value == 0:
        return None
    try:
        name = common_pb2.DeclineReason.Name(common_pb2.DeclineReason.ValueType(value))
    except ValueError:
        raise InvalidArgument(field, "is not a known decline reason") from None
    return DeclineReason(name.removeprefix("DECLINE_REASON_"))


def delivery_to_pb(outcome: DeliveryOutcome) -> common_pb2.DeliveryState.ValueType:
    if outcome is DeliveryOutcome.DELIVERED:
        return common_pb2.DELIVERY_STATE_DELIVERED
    if outcome is DeliveryOutcome.QUEUED:
        return common_pb2.DELIVERY_STATE_QUEUED
    return common_pb2.DELIVERY_STATE_UNSPECIFIED


def referral_to_pb(record: ReferralRecord) -> common_pb2.Referral:
    """A ReferralRecord as masar.v1.Referral."""
    message = common_pb2.Referral(
        referral_id=record.referral_id,
        case_id=record.case_id,
        sector=sector_to_pb(record.sector),
        provider_id=record.provider_id,
        status=status_to_pb(record.status),
        risk=risk_to_pb(record.risk),
        region=record.region,
        decline_reason=decline_reason_to_pb(record.decline_reason),
        reminders=record.reminders,
        created_at=timestamp_pb(record.created_at),
        updated_at=timestamp_pb(record.updated_at),
    )
    if record.decided_at is not None:
        message.decided_at.CopyFrom(timestamp_pb(record.decided_at))
    return message


def referral_from_pb(message: Any) -> ReferralRecord:
    """masar.v1.Referral as a ReferralRecord (clients and activities)."""
    sector_name = common_pb2.Sector.Name(message.sector).removeprefix("SECTOR_")
    return ReferralRecord(
        referral_id=message.referral_id,
        case_id=message.case_id,
        sector=Sector(sector_name.lower()),
        provider_id=message.provider_id,
        status=status_from_pb(message.status) or ReferralStatus.PENDING,
        risk=risk_from_pb(message.risk),
        region=message.region,
        created_at=from_timestamp_pb(message.created_at),
        updated_at=from_timestamp_pb(message.updated_at),
        decided_at=from_timestamp_pb(message.decided_at)
        if message.HasField("decided_at")
        else None,
        decline_reason=decline_reason_from_pb(message.decline_reason),
        reminders=message.reminders,
    )


# --- servicer mixin: the common RPCs ---------------------------------------------------------


class ReferralRpcs:
    """DecideReferral, GetReferral, ListReferrals, RemindProvider,
    CloseReferral and PurgeCase for any sector servicer that sets
    `self.handshake`. Put it first among the servicer's bases and name the
    sector (`class ShelterServicer(ReferralRpcs, ..., sector=Sector.SHELTER)`):
    the RPCs are then declared with that sector's roles (`common_rpc_roles`)."""

    handshake: ReferralHandshake[Any, Any]

    def __init_subclass__(cls, *, sector: Sector | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if sector is None:
            return
        for name, roles in common_rpc_roles(sector).items():
            if name in cls.__dict__:
                continue  # the sector declares its own
            setattr(cls, name, requires(*roles)(_delegate(getattr(ReferralRpcs, name))))

    async def DecideReferral(self, request: Any, context: Any) -> Any:
        hs = self.handshake
        referral_id = hs.check_referral_id(request.referral_id)
        await hs.authorise(referral_id)
        key = require_idempotency_key(request.idempotency_key)
        if request.decision == common_pb2.DECISION_ACCEPT:
            if request.decline_reason:
                raise InvalidArgument("decline_reason", "must be unset to accept")
            result = await hs.decide(
                referral_id, accept=True, decline_reason=None, idempotency_key=key
            )
        elif request.decision == common_pb2.DECISION_DECLINE:
            reason = decline_reason_from_pb(request.decline_reason)
            if reason is None:
                raise InvalidArgument("decline_reason", "is required to decline")
            result = await hs.decide(
                referral_id, accept=False, decline_reason=reason, idempotency_key=key
            )
        else:
            raise InvalidArgument("decision", "must be DECISION_ACCEPT or DECISION_DECLINE")
        return common_pb2.DecideReferralResponse(
            referral=referral_to_pb(result.referral), delivery=delivery_to_pb(result.delivery)
        )

    async def GetReferral(self, request: Any, context: Any) -> Any:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        record = await self.handshake.authorise(referral_id)
        return common_pb2.GetReferralResponse(referral=referral_to_pb(record))

    async def ListReferrals(self, request: Any, context: Any) -> Any:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        provider_id = check_provider_id(request.provider_id) if request.provider_id else None
        region = require_region(request.region) if request.region else None
        # Staff see their own organisation's referrals, a coordinator her region's.
        caller = current_caller()
        if caller.role is STAFF_ROLES[self.handshake.sector]:
            if provider_id is not None and provider_id != caller.org:
                raise PermissionDenied("staff list only their own organisation's referrals")
            provider_id = caller.org
        elif caller.role is Role.COORDINATOR:
            if region is not None and region != caller.region:
                raise PermissionDenied("a coordinator lists only her own region's referrals")
            region = caller.region
        else:
            raise PermissionDenied(f"role {caller.role.value} may not list referrals")
        filters = ReferralFilter(
            provider_id=provider_id,
            status=status_from_pb(request.status),
            case_id=require_case_id(request.case_id) if request.case_id else None,
            region=region,
            page_size=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token or None,
        )
        if filters.page_token:
            decode_page_token(filters.page_token)
        page = await self.handshake.list(filters)
        return common_pb2.ListReferralsResponse(
            referrals=[referral_to_pb(r) for r in page.referrals],
            next_page_token=page.next_page_token or "",
        )

    async def RemindProvider(self, request: Any, context: Any) -> Any:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        key = require_idempotency_key(request.idempotency_key)
        record = await self.handshake.remind(referral_id, idempotency_key=key)
        return common_pb2.RemindProviderResponse(referral=referral_to_pb(record))

    async def CloseReferral(self, request: Any, context: Any) -> Any:
        referral_id = self.handshake.check_referral_id(request.referral_id)
        status = status_from_pb(request.status)
        if status is None or status not in CLOSING_STATUSES:
            raise InvalidArgument("status", "must be REROUTED, EXPIRED or WITHDRAWN")
        key = require_idempotency_key(request.idempotency_key)
        record = await self.handshake.close(referral_id, status=status, idempotency_key=key)
        return common_pb2.CloseReferralResponse(referral=referral_to_pb(record))

    async def PurgeCase(self, request: Any, context: Any) -> Any:
        case_id = require_case_id(request.case_id)
        key = require_idempotency_key(request.idempotency_key)
        result = await self.handshake.purge_case(case_id, idempotency_key=key)
        return common_pb2.PurgeCaseResponse(
            referrals_withdrawn=result.referrals_withdrawn, records_purged=result.records_purged
        )


def _delegate(rpc: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A per-sector copy of a common RPC, so that each sector's servicer
    carries its own role declaration."""

    @functools.wraps(rpc)
    async def call(self: Any, request: Any, context: Any) -> Any:
        return await rpc(self, request, context)

    return call


# --- activities ----------------------------------------------------------------------------


def dial_address(listen_address: str) -> str:
    """Where a process reaches its own gRPC server: a wildcard listen host
    ("0.0.0.0", "[::]") becomes the loopback address."""
    host, _, port = listen_address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        return f"127.0.0.1:{port}"
    return listen_address


@dataclass
class SectorClients:
    """What a sector's components need to act as its own service identity:
    a channel to its own API (its activities) and one to intake (consent
    proofs), both carrying the identity's tokens, and the verifier of the
    consent proofs its request RPC receives."""

    own: grpc.aio.Channel
    intake: grpc.aio.Channel
    consent_verifier: ConsentVerifier

    @property
    def closers(self) -> list[Callable[[], Any]]:
        return [self.own.close, self.intake.close]


def sector_clients(settings: ServiceSettings, sector: Sector) -> SectorClients:
    """Built from the sector's settings (token keys: `masar.platform.identity`, read from
    `masar.platform.process.identity_environ(settings)`)."""
    environ = identity_environ(settings)
    identity = service_token_source(sector.value, environ)
    return SectorClients(
        own=authorised_channel(dial_address(settings.addr), identity),
        intake=authorised_channel(dial_address(settings.common.service_addrs["intake"]), identity),
        consent_verifier=ConsentVerifier(TokenVerifier.from_env(environ), sector),
    )


# gRPC refusals that retrying cannot fix, as the contract's ApplicationError types.
_REFUSALS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: contract.ERR_INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: contract.ERR_INVALID,
    grpc.StatusCode.OUT_OF_RANGE: contract.ERR_INVALID,
    grpc.StatusCode.ALREADY_EXISTS: contract.ERR_INVALID,
    grpc.StatusCode.NOT_FOUND: contract.ERR_UNKNOWN_REFERRAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED: contract.ERR_NO_PROVIDER,
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
}


def activity_error(rpc: str, error: grpc.aio.AioRpcError) -> ApplicationError:
    """A sector RPC failure as an activity failure: business refusals are
    non-retryable with a contract type; anything else (UNAVAILABLE,
    DEADLINE_EXCEEDED, INTERNAL, ...) is retried by the caller's policy. The
    message carries the RPC and the code only."""
    code = error.code()
    refusal = _REFUSALS.get(code)
    name = code.name if code is not None else "UNKNOWN"
    if refusal is not None:
        # The server's detail names a field or a state, never a value.
        return ApplicationError(
            f"{rpc}: {name}: {error.details() or ''}", type=refusal, non_retryable=True
        )
    return ApplicationError(f"{rpc}: {name}", type=name, non_retryable=False)


class ConsentSource(Protocol):
    """Where a sector's activity gets intake's proof of consent for a case."""

    async def proof(self, case_id: str, sector: Sector) -> str: ...


class IntakeConsent:
    """Asks intake (`IssueConsentProof`) over a channel that carries the
    sector's service identity. No consent is a non-retryable NoConsent."""

    def __init__(self, stub: Any, *, rpc_timeout: float = 10.0) -> None:
        self.stub = stub
        self.rpc_timeout = rpc_timeout

    async def proof(self, case_id: str, sector: Sector) -> str:
        try:
            reply = await self.stub.IssueConsentProof(
                intake_pb2.IssueConsentProofRequest(case_id=case_id, sector=sector_to_pb(sector)),
                timeout=self.rpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise ApplicationError(
                    "request_referral: no consent for this sector",
                    type=contract.ERR_NO_CONSENT,
                    non_retryable=True,
                ) from None
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ApplicationError(
                    "request_referral: unknown case",
                    type=contract.ERR_UNKNOWN_CASE,
                    non_retryable=True,
                ) from None
            raise activity_error("issue_consent_proof", exc) from None
        return str(reply.proof)


class ReferralActivities(abc.ABC):
    """The four contract activities of a sector, calling its own gRPC API.

    Subclasses set `sector` and implement `submit_request` (the sector's own
    request RPC, e.g. RequestPlacement, with the consent proof it is given).
    The stub must also have the common RemindProvider, CloseReferral and
    PurgeCase RPCs. `consent` obtains intake's proof of consent before each
    request (without one the sector refuses the request). Register
    `definitions()` with the sector's worker.
    """

    sector: ClassVar[Sector]
    rpc_timeout: ClassVar[float] = 10.0

    def __init__(self, stub: Any, consent: ConsentSource | None = None) -> None:
        self.stub = stub
        self.consent = consent

    @abc.abstractmethod
    async def submit_request(
        self, request: ReferralRequest, *, rpc_timeout: float, consent_proof: str = ""
    ) -> Any:
        """Call the sector's request RPC; return the masar.v1.Referral it created."""

    async def _call(self, rpc: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise activity_error(rpc, exc) from None

    async def request_referral(self, request: ReferralRequest) -> ReferralCreated:
        proof = ""
        if self.consent is not None:
            proof = await self.consent.proof(request.case_id, self.sector)
        referral = await self._call(
            "request_referral",
            self.submit_request(request, rpc_timeout=self.rpc_timeout, consent_proof=proof),
        )
        return ReferralCreated(
            referral_id=referral.referral_id,
            provider_id=referral.provider_id,
            region=referral.region,
        )

    async def remind_provider(self, reminder: ProviderReminder) -> None:
        await self._call(
            "remind_provider",
            self.stub.RemindProvider(
                common_pb2.RemindProviderRequest(
                    referral_id=reminder.referral_id, idempotency_key=reminder.idempotency_key
                ),
                timeout=self.rpc_timeout,
            ),
        )

    async def close_referral(self, closure: ReferralClosure) -> None:
        await self._call(
            "close_referral",
            self.stub.CloseReferral(
                common_pb2.CloseReferralRequest(
                    referral_id=closure.referral_id,
                    status=status_to_pb(ReferralStatus(closure.status)),
                    idempotency_key=closure.idempotency_key,
                ),
                timeout=self.rpc_timeout,
            ),
        )

    async def purge_case(self, purge: CasePurge) -> PurgeResult:
        reply = await self._call(
            "purge_case",
            self.stub.PurgeCase(
                common_pb2.PurgeCaseRequest(
                    case_id=purge.case_id, idempotency_key=purge.idempotency_key
                ),
                timeout=self.rpc_timeout,
            ),
        )
        return PurgeResult(
            referrals_withdrawn=reply.referrals_withdrawn, records_purged=reply.records_purged
        )

    def definitions(self) -> list[Callable[..., Awaitable[Any]]]:
        """The activity functions, named "<sector>.<verb>" as the contract says."""
        sector = self.sector

        async def request_referral(request: ReferralRequest) -> ReferralCreated:
            return await self.request_referral(request)

        async def remind_provider(reminder: ProviderReminder) -> None:
            await self.remind_provider(reminder)

        async def close_referral(closure: ReferralClosure) -> None:
            await self.close_referral(closure)

        async def purge_case(purge: CasePurge) -> PurgeResult:
            return await self.purge_case(purge)

        named: Sequence[tuple[str, Callable[..., Awaitable[Any]]]] = (
            (contract.ACT_REQUEST_REFERRAL, request_referral),
            (contract.ACT_REMIND_PROVIDER, remind_provider),
            (contract.ACT_CLOSE_REFERRAL, close_referral),
            (contract.ACT_PURGE_CASE, purge_case),
        )
        return [activity.defn(name=contract.activity_name(sector, verb))(fn) for verb, fn in named]


__all__ = [
    "CLOSING_STATUSES",
    "OPEN_STATUSES",
    "STAFF_ROLES",
    "SYSTEM_ACTOR",
    "ConsentSource",
    "HandshakeTables",
    "IdempotencyLedger",
    "IntakeConsent",
    "NoEligibleProvider",
    "ReferralActivities",
    "ReferralColumns",
    "ReferralDraft",
    "ReferralFilter",
    "ReferralHandshake",
    "ReferralPage",
    "ReferralRecord",
    "ReferralRepository",
    "ReferralRpcs",
    "SectorClients",
    "SectorHooks",
    "StaffActionResult",
    "activity_error",
    "check_referral_scope",
    "code_from_pb",
    "code_to_pb",
    "common_rpc_roles",
    "decline_reason_from_pb",
    "decline_reason_to_pb",
    "delivery_to_pb",
    "dial_address",
    "fingerprint",
    "handshake_tables",
    "parse_draft",
    "referral_from_pb",
    "referral_to_pb",
    "request_fingerprint",
    "require_case_id",
    "require_idempotency_key",
    "require_region",
    "require_text",
    "risk_from_pb",
    "risk_to_pb",
    "run_retrying_conflicts",
    "sector_clients",
    "stable_event_id",
    "status_from_pb",
    "status_to_pb",
    "timestamp_pb",
]


def assemble_sector(
    *,
    sector: Sector,
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    model: type[M],
    tables: HandshakeTables,
    hooks: SectorHooks[M, N],
    servicer: Callable[[ReferralHandshake[M, N]], Any],
    service: tuple[str, Callable[[Any, grpc.aio.Server], None]],
    activities: Callable[[grpc.aio.Channel, ConsentSource], ReferralActivities],
    consent: ConsentSource | None = None,
) -> SectorComponents:
    """The wiring every referral-receiving sector shares: its handshake on its
    own tables and outbox, its servicer, and its activities calling its own API
    as the sector's service identity, with intake proving each request's
    consent (`consent` replaces intake in tests only)."""
    clients = sector_clients(settings, sector)
    outbox = Outbox(database, tables.outbox, connector)
    handshake: ReferralHandshake[M, N] = ReferralHandshake(
        sector=sector,
        model=model,
        database=database,
        outbox=outbox,
        ledger=IdempotencyLedger(tables.idempotency),
        consent=clients.consent_verifier,
        audited=True,
        hooks=hooks,
    )
    name, register = service
    steps = activities(
        clients.own,
        consent or IntakeConsent(intake_pb2_grpc.IntakeServiceStub(clients.intake)),
    )
    return SectorComponents(
        grpc_services=[GrpcService(name, servicer(handshake), register)],
        activities=steps.definitions(),
        outbox=outbox,
        closers=clients.closers,
    )
