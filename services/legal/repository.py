"""Every legal aid query, inside a caller's unit of work; never commits.

`LegalHooks` plugs legal aid's rules into the shared referral handshake
(masar.referral): choosing a provider, storing the matters and languages a
referral carries, and erasing them (with protection orders and hearings) when
a purge asks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from masar.platform.clock import as_utc, utcnow
from masar.referral import (
    OPEN_STATUSES,
    NoEligibleProvider,
    ProviderRows,
    ReferralDraft,
    ReferralRecord,
    SectorHooks,
    erase,
)
from services.legal import domain as d
from services.legal.models import (
    HearingRow,
    LegalReferralRow,
    ProtectionOrderRow,
    ProviderLanguageRow,
    ProviderMatterRow,
    ProviderRow,
)

_MATTER_ORDER = list(d.LegalMatter)


def new_provider_id() -> str:
    return f"lgp-{secrets.token_hex(6)}"


def derived_id(prefix: str, referral_id: str, idempotency_key: str) -> str:
    """A record id derived from the request's key, so a retry finds the record
    its first attempt created."""
    digest = hashlib.sha256(f"{referral_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"{prefix}-{digest[:16]}"


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


# --- providers ---------------------------------------------------------------------


class ProviderRepository(ProviderRows[ProviderRow]):
    def __init__(self) -> None:
        super().__init__(ProviderRow, noun="provider", long_noun="legal aid provider")

    def insert(self, session: Session, spec: d.NewProvider) -> str:
        provider_id = new_provider_id()
        row = ProviderRow(
            provider_id=provider_id,
            kind=spec.kind.value,
            name=spec.name,
            region=spec.region,
            created_at=utcnow(),
            organisation_id=spec.organisation_id,
        )
        self.add(session, row)
        session.add_all(
            ProviderLanguageRow(provider_id=provider_id, language=language)
            for language in spec.languages
        )
        session.add_all(
            ProviderMatterRow(provider_id=provider_id, matter=matter.value)
            for matter in spec.matters
        )
        session.flush()
        return provider_id

    def open_referrals(self, session: Session, provider_ids: Sequence[str]) -> dict[str, int]:
        if not provider_ids:
            return {}
        rows = session.execute(
            select(LegalReferralRow.provider_id, func.count())
            .where(
                LegalReferralRow.provider_id.in_(provider_ids),
                LegalReferralRow.status.in_([s.value for s in OPEN_STATUSES]),
            )
            .group_by(LegalReferralRow.provider_id)
        )
        return {pid: int(count) for pid, count in rows}

    def _hydrate(self, session: Session, rows: Sequence[ProviderRow]) -> list[d.Provider]:
        ids = [r.provider_id for r in rows]
        languages: dict[str, list[str]] = {i: [] for i in ids}
        matters: dict[str, list[d.LegalMatter]] = {i: [] for i in ids}
        if ids:
            for pid, language in session.execute(
                select(ProviderLanguageRow.provider_id, ProviderLanguageRow.language)
                .where(ProviderLanguageRow.provider_id.in_(ids))
                .order_by(ProviderLanguageRow.language)
            ):
                languages[pid].append(language)
            for pid, matter in session.execute(
                select(ProviderMatterRow.provider_id, ProviderMatterRow.matter).where(
                    ProviderMatterRow.provider_id.in_(ids)
                )
            ):
                matters[pid].append(d.LegalMatter(matter))
        counts = self.open_referrals(session, ids)
        return [
            d.Provider(
                provider_id=r.provider_id,
                kind=d.ProviderKind(r.kind),
                name=r.name,
                region=r.region,
                languages=languages[r.provider_id],
                matters=sorted(matters[r.provider_id], key=_MATTER_ORDER.index),
                created_at=as_utc(r.created_at),
                open_referrals=counts.get(r.provider_id, 0),
                organisation_id=r.organisation_id or None,
            )
            for r in rows
        ]

    def get(self, session: Session, provider_id: str) -> d.Provider:
        return self._hydrate(session, [self.row(session, provider_id)])[0]

    def list(
        self,
        session: Session,
        *,
        region: str | None = None,
        matters: Sequence[d.LegalMatter] = (),
        language: str | None = None,
        kind: d.ProviderKind | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[d.Provider]:
        """Providers oldest first (keyset paging after `after`, the created_at
        and id of the last one seen: `masar.platform.paging`); each of
        `matters` must be taken."""
        query = select(ProviderRow).order_by(ProviderRow.created_at, ProviderRow.provider_id)
        if region:
            query = query.where(ProviderRow.region == region)
        if kind is not None:
            query = query.where(ProviderRow.kind == kind.value)
        if language:
            query = query.where(
                exists().where(
                    ProviderLanguageRow.provider_id == ProviderRow.provider_id,
                    ProviderLanguageRow.language == language,
                )
            )
        for matter in matters:
            query = query.where(
                exists().where(
                    ProviderMatterRow.provider_id == ProviderRow.provider_id,
                    ProviderMatterRow.matter == matter.value,
                )
            )
        if after is not None:
            at, last_id = after
            query = query.where(
                or_(
                    ProviderRow.created_at > at,
                    and_(ProviderRow.created_at == at, ProviderRow.provider_id > last_id),
                )
            )
        if limit is not None:
            query = query.limit(limit)
        return self._hydrate(session, list(session.scalars(query)))


# --- what a referral carries ----------------------------------------------------------


def _matters_to_json(matters: Sequence[d.MatterRecord]) -> str:
    return json.dumps(
        [
            {
                "matter": m.matter.value,
                "status": m.status.value,
                "opened_at": m.opened_at.isoformat(),
                "closed_at": m.closed_at.isoformat() if m.closed_at else None,
                "outcome": m.outcome.value if m.outcome else None,
            }
            for m in matters
        ]
    )


def matters_of(row: LegalReferralRow) -> list[d.MatterRecord]:
    if not row.matters:
        return []
    items: list[dict[str, Any]] = json.loads(row.matters)
    return [
        d.MatterRecord(
            matter=d.LegalMatter(i["matter"]),
            status=d.MatterStatus(i["status"]),
            opened_at=as_utc(datetime.fromisoformat(i["opened_at"])),
            closed_at=as_utc(datetime.fromisoformat(i["closed_at"])) if i["closed_at"] else None,
            outcome=d.MatterOutcome(i["outcome"]) if i["outcome"] else None,
        )
        for i in items
    ]


def set_matters(row: LegalReferralRow, matters: Sequence[d.MatterRecord]) -> None:
    row.matters = _matters_to_json(matters)


def languages_of(row: LegalReferralRow) -> list[str]:
    return list(json.loads(row.languages)) if row.languages else []


class LegalHooks(SectorHooks[LegalReferralRow, d.AidNeeds]):
    def __init__(self, providers: ProviderRepository) -> None:
        self.providers = providers

    def choose_provider(self, session: Session, draft: ReferralDraft[d.AidNeeds]) -> str:
        candidates = self.providers.list(session, matters=draft.needs.matters)
        chosen = d.choose_provider(
            candidates,
            region=draft.region,
            matters=draft.needs.matters,
            languages=draft.needs.languages,
            exclude=draft.exclude_provider_ids,
        )
        if chosen is None:
            raise NoEligibleProvider(
                "no provider takes these matters in one of the survivor's languages"
            )
        return chosen.provider_id

    def provider_organisation(self, session: Session, provider_id: str) -> str | None:
        return self.providers.organisation_of(session, provider_id)

    def check_provider(
        self, session: Session, draft: ReferralDraft[d.AidNeeds], provider_id: str
    ) -> None:
        # A coordinator's choice may override region, language and earlier
        # attempts (she knows the network), but not what the provider takes.
        self.providers.check_known(session, provider_id)
        if not self.providers.get(session, provider_id).takes(draft.needs.matters):
            raise NoEligibleProvider(
                "provider_id: not eligible: the provider does not take every matter "
                "of this referral"
            )

    def store_needs(
        self, session: Session, referral: LegalReferralRow, draft: ReferralDraft[d.AidNeeds]
    ) -> None:
        now = utcnow()
        set_matters(
            referral,
            [
                d.MatterRecord(matter=m, status=d.MatterStatus.OPEN, opened_at=now)
                for m in draft.needs.matters
            ],
        )
        referral.languages = json.dumps(list(draft.needs.languages))
        referral.first_meeting_at = None

    def purge_needs(self, session: Session, referral: LegalReferralRow) -> int:
        """Erase the matters and languages received, the first meeting, and
        the protection orders and hearings recorded for the referral."""
        purged = 0
        for model in (HearingRow, ProtectionOrderRow):
            result: Any = session.execute(
                delete(model).where(model.referral_id == referral.referral_id)
            )
            purged += int(result.rowcount or 0)
        return purged + erase(
            referral,
            "matters",
            "languages",
            "first_meeting_at",
            "certificate_issued_at",
            "certificate_itt_days",
        )


# --- protection orders and hearings -------------------------------------------------------


def _order(row: ProtectionOrderRow) -> d.ProtectionOrder:
    return d.ProtectionOrder(
        order_id=row.order_id,
        referral_id=row.referral_id,
        measure=d.ProtectionMeasure(row.measure),
        status=d.ProtectionOrderStatus(row.status),
        requested_at=as_utc(row.requested_at),
        updated_at=as_utc(row.updated_at),
        decided_at=_utc_or_none(row.decided_at),
        effective_until=_utc_or_none(row.effective_until),
        breached_at=_utc_or_none(row.breached_at),
        breaches=row.breaches,
    )


def _hearing(row: HearingRow) -> d.Hearing:
    return d.Hearing(
        hearing_id=row.hearing_id,
        referral_id=row.referral_id,
        matter=d.LegalMatter(row.matter),
        court=d.CourtLevel(row.court),
        kind=d.HearingKind(row.kind),
        status=d.HearingStatus(row.status),
        scheduled_at=as_utc(row.scheduled_at),
        updated_at=as_utc(row.updated_at),
        note=row.note,
    )


class FileRepository:
    """Protection orders, hearings, and the whole legal file of a referral."""

    def find_order(
        self, session: Session, referral_id: str, order_id: str
    ) -> d.ProtectionOrder | None:
        row = session.get(ProtectionOrderRow, order_id)
        return None if row is None or row.referral_id != referral_id else _order(row)

    def save_order(self, session: Session, order: d.ProtectionOrder) -> None:
        row = session.get(ProtectionOrderRow, order.order_id)
        if row is None:
            row = ProtectionOrderRow(order_id=order.order_id, referral_id=order.referral_id)
            session.add(row)
        row.measure = order.measure.value
        row.status = order.status.value
        row.requested_at = order.requested_at
        row.decided_at = order.decided_at
        row.effective_until = order.effective_until
        row.breached_at = order.breached_at
        row.breaches = order.breaches
        row.updated_at = order.updated_at
        session.flush()

    def find_hearing(self, session: Session, referral_id: str, hearing_id: str) -> d.Hearing | None:
        row = session.get(HearingRow, hearing_id)
        return None if row is None or row.referral_id != referral_id else _hearing(row)

    def save_hearing(self, session: Session, hearing: d.Hearing) -> None:
        row = session.get(HearingRow, hearing.hearing_id)
        if row is None:
            row = HearingRow(hearing_id=hearing.hearing_id, referral_id=hearing.referral_id)
            session.add(row)
        row.matter = hearing.matter.value
        row.court = hearing.court.value
        row.kind = hearing.kind.value
        row.status = hearing.status.value
        row.scheduled_at = hearing.scheduled_at
        row.note = hearing.note
        row.updated_at = hearing.updated_at
        session.flush()

    def load(self, session: Session, record: ReferralRecord, row: LegalReferralRow) -> d.LegalFile:
        referral_id = row.referral_id
        return d.LegalFile(
            referral=record,
            languages=languages_of(row),
            matters=matters_of(row),
            first_meeting_at=_utc_or_none(row.first_meeting_at),
            certificate=(
                d.MedicalCertificate(
                    issued_at=as_utc(row.certificate_issued_at),
                    itt_days=row.certificate_itt_days,
                )
                if row.certificate_issued_at is not None and row.certificate_itt_days is not None
                else None
            ),
            protection_orders=[
                _order(r)
                for r in session.scalars(
                    select(ProtectionOrderRow)
                    .where(ProtectionOrderRow.referral_id == referral_id)
                    .order_by(ProtectionOrderRow.requested_at, ProtectionOrderRow.order_id)
                )
            ],
            hearings=[
                _hearing(r)
                for r in session.scalars(
                    select(HearingRow)
                    .where(HearingRow.referral_id == referral_id)
                    .order_by(HearingRow.scheduled_at, HearingRow.hearing_id)
                )
            ],
        )
