"""Legal aid's business rules, between the servicer (protobuf) and the
repositories (SQL): registering providers, requesting legal aid, the first
meeting, protection orders, hearings and closing matters. The referral
handshake itself is the kit's `SectorHandshake` (`self.referrals`), which this
service delegates to.

A referral completes when its last open matter closes: that is the COMPLETED
milestone the journey hears of; closing any other matter is a local step.
Every read of the legal file (personal data) is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from masar.contract import (
    UPDATE_BREACH,
    Milestone,
    ProtectionOrderBreach,
    ReferralStatus,
    Sector,
)
from masar.platform.clock import utcnow
from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from masar.platform.idempotency import fingerprint, run_retrying_conflicts
from masar.platform.outbox import DeliveryOutcome
from masar.referral import OPEN_STATUSES, ReferralDraft, ReferralRecord, SectorHandshake
from services.legal import domain as d
from services.legal.models import LegalReferralRow
from services.legal.repository import (
    FileRepository,
    ProviderRepository,
    matters_of,
    set_matters,
)

CLOSE_MATTER_SCOPE = "legal.close_matter"


class LegalAidService:
    def __init__(
        self,
        *,
        referrals: SectorHandshake[LegalReferralRow, d.AidNeeds],
        providers: ProviderRepository,
        files: FileRepository,
    ) -> None:
        self.referrals = referrals
        self.providers = providers
        self.files = files
        self.database = referrals.database

    # -- providers --

    async def create_provider(
        self, spec: d.NewProvider, *, idempotency_key: str, request_print: str
    ) -> d.Provider:
        """Register a provider, once per key."""
        return await self.referrals.register(
            "legal.create_provider",
            self.providers,
            spec,
            idempotency_key=idempotency_key,
            request_print=request_print,
        )

    async def list_providers(
        self,
        *,
        region: str | None,
        matter: d.LegalMatter | None,
        language: str | None,
        kind: d.ProviderKind | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[d.Provider]:
        def work(session: Session) -> list[d.Provider]:
            return self.providers.list(
                session,
                region=region,
                matters=[matter] if matter else [],
                language=language,
                kind=kind,
                after=after,
                limit=limit,
            )

        return await self.database.run(work)

    # -- the referral --

    async def request_legal_aid(
        self, draft: ReferralDraft[d.AidNeeds], *, consent_proof: str
    ) -> d.LegalFile:
        """A PENDING referral to a provider who takes every matter (or the
        one a coordinator named); its matters open."""
        record = await self.referrals.create(draft, consent_proof=consent_proof)
        return await self._file(record.referral_id)

    async def record_first_meeting(
        self, referral_id: str, met_at: datetime, *, idempotency_key: str
    ) -> tuple[ReferralRecord, DeliveryOutcome]:
        """The provider met her (STARTED)."""

        def meet(session: Session, row: LegalReferralRow) -> None:
            row.first_meeting_at = met_at

        result = await self.referrals.record_milestone(
            referral_id,
            milestone=Milestone.STARTED,
            idempotency_key=idempotency_key,
            apply=meet,
            request_print=fingerprint(met_at),
        )
        return result.referral, result.delivery

    async def record_protection_order(
        self,
        referral_id: str,
        *,
        order_id: str,
        new: bool,
        measure: d.ProtectionMeasure | None,
        status: d.ProtectionOrderStatus,
        at: datetime,
        effective_until: datetime | None,
        idempotency_key: str,
        request_print: str,
    ) -> d.ProtectionOrder:
        """A new order (requested or granted at once) while the referral is
        worked on, or the next status of an existing one (also once the
        referral is completed: a ban outlives the matter). A breach is told
        to the journey (the contract's ProtectionOrderBreach, which raises the
        risk); one the journey refuses is undone."""

        def apply(session: Session, row: LegalReferralRow) -> None:
            now = utcnow()
            if new:
                assert measure is not None
                order = d.open_protection_order(
                    order_id=order_id,
                    referral_id=referral_id,
                    measure=measure,
                    status=status,
                    at=at,
                    effective_until=effective_until,
                    now=now,
                )
            else:
                found = self.files.find_order(session, referral_id, order_id)
                if found is None:
                    raise NotFound("protection order not found")
                if measure is not None and measure is not found.measure:
                    raise InvalidArgument("measure", "cannot change on an existing order")
                order = d.advance_protection_order(
                    found, status=status, at=at, effective_until=effective_until, now=now
                )
            self.files.save_order(session, order)

        if not new and status is d.ProtectionOrderStatus.BREACHED:
            # A breach is told to the journey (it raises the risk): the order
            # and its outbox entry in one unit of work, once per key.
            def breach(session: Session, row: LegalReferralRow, event_id: str) -> object:
                apply(session, row)
                return ProtectionOrderBreach(
                    event_id=event_id,
                    referral_id=referral_id,
                    sector=Sector.LEGAL,
                    at=at,
                    recorded_at=utcnow(),
                )

            before = await self.database.run(
                lambda s: self.files.find_order(s, referral_id, order_id)
            )
            try:
                await self.referrals.record_event(
                    referral_id,
                    kind="protection_order_breached",
                    idempotency_key=idempotency_key,
                    update_name=UPDATE_BREACH,
                    build=breach,
                    allowed=d.ORDER_FOLLOW_UP,
                    request_print=request_print,
                    audit_reason="breached",
                    wrong_state="the referral is not accepted, in service or completed",
                )
            except FailedPrecondition:
                # The journey refused it: the kit restores the referral's
                # columns; the order is restored here (unless it moved since).
                if before is not None:
                    await self.database.run(lambda s: self._undo_breach(s, before))
                raise
        else:
            await self.referrals.update_local(
                referral_id,
                step="protection_order",
                idempotency_key=idempotency_key,
                allowed=d.WORKING if new else d.ORDER_FOLLOW_UP,
                apply=apply,
                request_print=request_print,
                wrong_state="the referral is not accepted or in service",
            )
        order = await self.database.run(lambda s: self.files.find_order(s, referral_id, order_id))
        if order is None:  # erased by a purge since
            raise NotFound("protection order not found")
        return order

    def _undo_breach(self, session: Session, before: d.ProtectionOrder) -> None:
        now = self.files.find_order(session, before.referral_id, before.order_id)
        if now is not None and now.breaches == before.breaches + 1:
            self.files.save_order(session, before)

    async def record_hearing(
        self,
        referral_id: str,
        *,
        hearing_id: str,
        new: bool,
        matter: d.LegalMatter | None,
        court: d.CourtLevel | None,
        kind: d.HearingKind | None,
        status: d.HearingStatus,
        scheduled_at: datetime | None,
        note: str | None,
        idempotency_key: str,
        request_print: str,
    ) -> d.Hearing:
        """A new hearing on one of the referral's matters, or the next status
        of an existing one (matter, court and kind never change)."""

        def apply(session: Session, row: LegalReferralRow) -> None:
            now = utcnow()
            if new:
                assert matter is not None and court is not None and kind is not None
                assert scheduled_at is not None
                if matter not in {m.matter for m in matters_of(row)}:
                    raise InvalidArgument("matter", "is not one of the referral's matters")
                hearing = d.Hearing(
                    hearing_id=hearing_id,
                    referral_id=referral_id,
                    matter=matter,
                    court=court,
                    kind=kind,
                    status=status,
                    scheduled_at=scheduled_at,
                    updated_at=now,
                    note=note,
                )
            else:
                found = self.files.find_hearing(session, referral_id, hearing_id)
                if found is None:
                    raise NotFound("hearing not found")
                for name, value in (("matter", matter), ("court", court), ("kind", kind)):
                    if value is not None and value is not getattr(found, name):
                        raise InvalidArgument(name, "cannot change on an existing hearing")
                hearing = d.advance_hearing(
                    found, status=status, scheduled_at=scheduled_at, note=note, now=now
                )
            self.files.save_hearing(session, hearing)

        await self.referrals.update_local(
            referral_id,
            step="hearing",
            idempotency_key=idempotency_key,
            allowed=d.WORKING,
            apply=apply,
            request_print=request_print,
            wrong_state="the referral is not accepted or in service",
        )
        hearing = await self.database.run(
            lambda s: self.files.find_hearing(s, referral_id, hearing_id)
        )
        if hearing is None:  # erased by a purge since
            raise NotFound("hearing not found")
        return hearing

    async def close_matter(
        self,
        referral_id: str,
        matter: d.LegalMatter,
        *,
        outcome: d.MatterOutcome,
        closed_at: datetime,
        idempotency_key: str,
        request_print: str,
    ) -> tuple[d.LegalFile, DeliveryOutcome | None]:
        """Close one matter; closing the last open one completes the referral
        (COMPLETED, the outcome as detail), which the journey hears of — the
        delivery is then returned, else None."""
        print_ = fingerprint(referral_id, request_print)
        referrals = self.referrals
        ledger = referrals.ledger

        def close(row: LegalReferralRow) -> bool:
            matters = matters_of(row)
            _, last = d.close_matter(matters, matter, outcome=outcome, closed_at=closed_at)
            set_matters(row, matters)
            return last

        def local(session: Session) -> bool:
            """Close the matter here unless it is the last open one: then the
            referral completes, which the journey must hear about (True)."""
            row = referrals.repository.load(session, referral_id, for_update=True)
            if ledger.lookup(
                session, scope=CLOSE_MATTER_SCOPE, key=idempotency_key, fingerprint=print_
            ):
                return False  # this key closed it here already
            if ReferralStatus(row.status) is not ReferralStatus.IN_SERVICE:
                # Not ours to judge: the milestone step replays or refuses.
                return True
            matters = matters_of(row)
            _, last = d.close_matter(matters, matter, outcome=outcome, closed_at=closed_at)
            if last:
                return True
            set_matters(row, matters)
            row.updated_at = utcnow()
            ledger.record(
                session,
                scope=CLOSE_MATTER_SCOPE,
                key=idempotency_key,
                fingerprint=print_,
                subject_id=referral_id,
            )
            return False

        delivery = None
        if await run_retrying_conflicts(self.database, local):

            def complete(session: Session, row: LegalReferralRow) -> None:
                if not close(row):
                    raise FailedPrecondition("other matters of the referral are still open")

            result = await referrals.record_milestone(
                referral_id,
                milestone=Milestone.COMPLETED,
                idempotency_key=idempotency_key,
                detail=outcome.value,
                apply=complete,
                request_print=print_,
            )
            delivery = result.delivery
        return await self._file(referral_id), delivery

    async def note_certificate(
        self, referral_id: str, *, issued_at: datetime, itt_days: int, idempotency_key: str
    ) -> d.LegalFile:
        """A hospital care unit issued a medical certificate (the journey says
        so): its date and ITT days, replacing any earlier one. A local step
        on an open referral; nothing goes back to the journey."""
        certificate = d.check_certificate(issued_at, itt_days, now=utcnow())

        def note(session: Session, row: LegalReferralRow) -> None:
            row.certificate_issued_at = certificate.issued_at
            row.certificate_itt_days = certificate.itt_days

        await self.referrals.update_local(
            referral_id,
            step="certificate_noted",
            idempotency_key=idempotency_key,
            allowed=OPEN_STATUSES,
            apply=note,
            request_print=fingerprint(certificate.issued_at, certificate.itt_days),
            wrong_state="the referral is closed",
        )
        return await self._file(referral_id)

    async def legal_file(self, referral_id: str) -> d.LegalFile:
        """The whole legal file (personal data): an audited read."""
        return await self.referrals.read_file(referral_id, self.files.load)

    async def _file(self, referral_id: str) -> d.LegalFile:
        return await self.referrals.read(referral_id, self.files.load)
