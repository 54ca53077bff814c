"""Every psychosocial query, inside a caller's unit of work; never commits.

`PsychosocialHooks` plugs the provider rules into the shared referral
handshake (masar.referral): choosing a provider and storing what the
referral may know. A provider holds no capacity, so status changes move
nothing. Sessions and the plan live on the referral row (JSON), so a
milestone the journey refuses is undone with the row.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from masar.contract import PsychosocialNeeds
from masar.platform.clock import as_utc, utcnow
from masar.referral import (
    NoEligibleProvider,
    ProviderRows,
    ReferralDraft,
    ReferralRecord,
    SectorHooks,
    erase,
)
from services.psychosocial.domain import (
    Attendance,
    GoalProgress,
    PlanGoal,
    ProviderSpec,
    Session,
    SupportFile,
    SupportOutcome,
    SupportProvider,
    rank_providers,
)
from services.psychosocial.models import SupportProviderRow, SupportReferralRow


def new_provider_id() -> str:
    return f"psp-{secrets.token_hex(6)}"


def _codes(value: str | None) -> list[str]:
    return [c for c in (value or "").split(",") if c]


def _at(value: datetime | None) -> datetime | None:
    return as_utc(value) if value else None


def _time(text: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(text)) if text else None


def to_provider(row: SupportProviderRow) -> SupportProvider:
    return SupportProvider(
        provider_id=row.provider_id,
        name=row.name,
        region=row.region,
        kinds=frozenset(_codes(row.kinds)),
        languages=frozenset(_codes(row.languages)),
        created_at=as_utc(row.created_at),
        organisation_id=row.organisation_id or None,
    )


class ProviderRepository(ProviderRows[SupportProviderRow]):
    def __init__(self) -> None:
        super().__init__(SupportProviderRow, noun="support provider")

    def insert(self, session: DbSession, spec: ProviderSpec) -> str:
        row = SupportProviderRow(
            provider_id=new_provider_id(),
            name=spec.name,
            region=spec.region,
            kinds=",".join(sorted(spec.kinds)),
            languages=",".join(sorted(spec.languages)),
            created_at=utcnow(),
            organisation_id=spec.organisation_id,
        )
        return self.add(session, row).provider_id

    def get(self, session: DbSession, provider_id: str) -> SupportProvider:
        return to_provider(self.row(session, provider_id))

    def list(
        self, session: DbSession, *, region: str | None = None, kind: str | None = None
    ) -> list[SupportProvider]:
        query = select(SupportProviderRow).order_by(
            SupportProviderRow.region, SupportProviderRow.provider_id
        )
        if region:
            query = query.where(SupportProviderRow.region == region)
        providers = [to_provider(r) for r in session.execute(query).scalars()]
        return [p for p in providers if kind is None or kind in p.kinds]


class PsychosocialHooks(SectorHooks[SupportReferralRow, PsychosocialNeeds]):
    def __init__(self, providers: ProviderRepository) -> None:
        self.providers = providers

    def choose_provider(self, session: DbSession, draft: ReferralDraft[PsychosocialNeeds]) -> str:
        ranked = rank_providers(
            self.providers.list(session),
            draft.needs,
            region=draft.region,
            exclude=draft.exclude_provider_ids,
        )
        if not ranked:
            raise NoEligibleProvider("no support provider fits this request")
        return ranked[0].provider_id

    def provider_organisation(self, session: DbSession, provider_id: str) -> str | None:
        return self.providers.organisation_of(session, provider_id)

    def check_provider(
        self, session: DbSession, draft: ReferralDraft[PsychosocialNeeds], provider_id: str
    ) -> None:
        # A coordinator's choice may override region, kinds and languages;
        # the provider must exist.
        self.providers.check_known(session, provider_id)

    def store_needs(
        self,
        session: DbSession,
        referral: SupportReferralRow,
        draft: ReferralDraft[PsychosocialNeeds],
    ) -> None:
        referral.support = ",".join(draft.needs.support)
        referral.languages = ",".join(draft.needs.languages)

    def purge_needs(self, session: DbSession, referral: SupportReferralRow) -> int:
        return erase(referral, "support", "languages")


# --- sessions and plan on the referral row -------------------------------------------


def sessions_of(row: SupportReferralRow) -> list[Session]:
    return [
        Session(
            held_at=as_utc(datetime.fromisoformat(s["held_at"])),
            attendance=Attendance(s["attendance"]),
        )
        for s in json.loads(row.sessions or "[]")
    ]


def store_sessions(row: SupportReferralRow, sessions: list[Session]) -> None:
    row.sessions = json.dumps(
        [{"held_at": s.held_at.isoformat(), "attendance": s.attendance.value} for s in sessions]
    )


def plan_of(row: SupportReferralRow) -> list[PlanGoal]:
    return [
        PlanGoal(
            goal=g["goal"],
            progress=GoalProgress(g["progress"]),
            reviewed_at=_time(g["reviewed_at"]),
        )
        for g in json.loads(row.plan or "[]")
    ]


def store_plan(row: SupportReferralRow, plan: list[PlanGoal]) -> None:
    row.plan = json.dumps(
        [
            {
                "goal": g.goal,
                "progress": g.progress.value,
                "reviewed_at": g.reviewed_at.isoformat() if g.reviewed_at else None,
            }
            for g in plan
        ]
    )


def to_support_file(
    session: DbSession, record: ReferralRecord, row: SupportReferralRow
) -> SupportFile:
    """The referral's support file (a `SectorHandshake.read_file` reader)."""
    return SupportFile(
        referral=record,
        support=_codes(row.support),
        sessions=sessions_of(row),
        plan=plan_of(row),
        plan_reviewed_at=_at(row.plan_reviewed_at),
        outcome=SupportOutcome(row.support_outcome) if row.support_outcome else None,
        completed_at=_at(row.completed_at),
    )
