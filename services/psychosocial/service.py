"""Psychosocial's business rules, between the servicer (protobuf) and the
repository (SQL): registering providers, requesting support, sessions, the
support plan and the end of support. The referral handshake itself is the
kit's `SectorHandshake` (`self.referrals`), which this service delegates to.

The first session she attends on an accepted referral starts the support
(STARTED, delivered to the journey); every other session, the plan and its
reviews are local steps (the journey does not hear of them). The end of
support completes the referral (COMPLETED, with a structured detail). Every
read of a support file (personal data) is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from masar.contract import Milestone, PsychosocialNeeds, ReferralStatus
from masar.platform.clock import as_utc, utcnow
from masar.platform.idempotency import fingerprint
from masar.platform.outbox import DeliveryOutcome
from masar.referral import ReferralDraft, ReferralRecord, SectorHandshake
from services.psychosocial.domain import (
    SUPPORT_DETAILS,
    Attendance,
    GoalProgress,
    ProviderSpec,
    Session,
    SupportFile,
    SupportOutcome,
    SupportProvider,
    add_session,
    check_past,
    review_plan,
    set_plan,
    starts_support,
)
from services.psychosocial.models import SupportReferralRow
from services.psychosocial.repository import (
    ProviderRepository,
    plan_of,
    sessions_of,
    store_plan,
    store_sessions,
    to_support_file,
)

IN_HAND = frozenset({ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE})
NOT_IN_HAND = "the referral is not accepted or in support"


class PsychosocialService:
    def __init__(
        self,
        *,
        referrals: SectorHandshake[SupportReferralRow, PsychosocialNeeds],
        providers: ProviderRepository,
    ) -> None:
        self.referrals = referrals
        self.providers = providers
        self.database = referrals.database

    # -- providers --

    async def create_provider(
        self, spec: ProviderSpec, *, idempotency_key: str, request_print: str
    ) -> SupportProvider:
        """Register a provider, once per key."""
        return await self.referrals.register(
            "psychosocial.create_provider",
            self.providers,
            spec,
            idempotency_key=idempotency_key,
            request_print=request_print,
        )

    async def list_providers(
        self, *, region: str | None, kind: str | None
    ) -> list[SupportProvider]:
        return await self.database.run(lambda s: self.providers.list(s, region=region, kind=kind))

    # -- referrals --

    async def request_support(
        self, draft: ReferralDraft[PsychosocialNeeds], *, consent_proof: str
    ) -> ReferralRecord:
        """A PENDING referral to a provider that fits (or the one a
        coordinator named)."""
        return await self.referrals.create(draft, consent_proof=consent_proof)

    async def record_session(
        self,
        referral_id: str,
        *,
        held_at: datetime,
        attendance: Attendance,
        idempotency_key: str,
    ) -> tuple[SupportFile, DeliveryOutcome | None]:
        """A session: the first she attends on an accepted referral starts
        the support (delivered); any other stays here."""
        session = Session(held_at=as_utc(held_at), attendance=attendance)
        check_past(session.held_at, "held_at", now=utcnow())
        # The first session attended is the STARTED milestone; a retry of it
        # (same key) is answered by the milestone again, whatever came since.
        milestone_scope = f"{self.referrals.sector.value}.milestone:{Milestone.STARTED.value}"

        def look(db: DbSession) -> tuple[ReferralRecord, list[Session], bool]:
            row = self.referrals.repository.load(db, referral_id)
            ledger = self.referrals.ledger.table
            used = db.execute(
                select(ledger.c.key).where(
                    ledger.c.scope == milestone_scope, ledger.c.key == idempotency_key
                )
            ).first()
            return self.referrals.repository.to_record(row), sessions_of(row), used is not None

        record, sessions, started_with_key = await self.database.run(look)

        def add(db: DbSession, row: SupportReferralRow) -> None:
            store_sessions(row, add_session(sessions_of(row), session))

        request_print = fingerprint(session.held_at, attendance)
        delivery = None
        if started_with_key or (
            record.status is ReferralStatus.ACCEPTED and starts_support(sessions, session)
        ):
            result = await self.referrals.record_milestone(
                referral_id,
                milestone=Milestone.STARTED,
                idempotency_key=idempotency_key,
                apply=add,
                request_print=request_print,
            )
            delivery = result.delivery
        else:
            await self.referrals.update_local(
                referral_id,
                step="session_recorded",
                idempotency_key=idempotency_key,
                allowed=IN_HAND,
                apply=add,
                request_print=request_print,
                wrong_state=NOT_IN_HAND,
            )
        return await self._file(referral_id), delivery

    async def set_support_plan(
        self, referral_id: str, goals: Sequence[str], *, idempotency_key: str
    ) -> SupportFile:
        """The plan's goals (a goal kept keeps its progress)."""

        def write(db: DbSession, row: SupportReferralRow) -> None:
            store_plan(row, set_plan(plan_of(row), goals))

        await self.referrals.update_local(
            referral_id,
            step="plan_set",
            idempotency_key=idempotency_key,
            allowed=IN_HAND,
            apply=write,
            request_print=fingerprint(list(goals)),
            wrong_state=NOT_IN_HAND,
        )
        return await self._file(referral_id)

    async def review_support_plan(
        self,
        referral_id: str,
        reviews: Sequence[tuple[str, GoalProgress]],
        *,
        reviewed_at: datetime,
        idempotency_key: str,
    ) -> SupportFile:
        """A review at a follow-up: the progress of some of the plan's goals."""
        at = check_past(as_utc(reviewed_at), "reviewed_at", now=utcnow())

        def write(db: DbSession, row: SupportReferralRow) -> None:
            store_plan(row, review_plan(plan_of(row), reviews, at))
            row.plan_reviewed_at = at

        await self.referrals.update_local(
            referral_id,
            step="plan_reviewed",
            idempotency_key=idempotency_key,
            allowed=IN_HAND,
            apply=write,
            request_print=fingerprint(at, [(g, p.value) for g, p in reviews]),
            wrong_state=NOT_IN_HAND,
        )
        return await self._file(referral_id)

    async def complete(
        self, referral_id: str, outcome: SupportOutcome, *, idempotency_key: str
    ) -> tuple[SupportFile, DeliveryOutcome]:
        """Support ended (COMPLETED, with the outcome's detail)."""

        def finish(db: DbSession, row: SupportReferralRow) -> None:
            row.support_outcome = outcome.value
            row.completed_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=idempotency_key,
            detail=SUPPORT_DETAILS[outcome],
            apply=finish,
        )
        return await self._file(referral_id), result.delivery

    # -- reads --

    async def support_file(self, referral_id: str) -> SupportFile:
        """The support file (personal data): an audited read."""
        return await self.referrals.read_file(referral_id, to_support_file)

    async def _file(self, referral_id: str) -> SupportFile:
        return await self.referrals.read(referral_id, to_support_file)
