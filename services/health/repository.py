"""Every health query, inside a caller's unit of work; never commits.

`HealthHooks` plugs the care-unit rules into the shared referral handshake
(masar.referral): choosing a unit and storing what the referral may know. A
care unit holds no capacity, so a referral's status changes move nothing.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from masar.contract import FollowUpVisit, HealthNeeds
from masar.platform.clock import as_utc, utcnow
from masar.referral import (
    NoEligibleProvider,
    ProviderRows,
    ReferralDraft,
    ReferralRecord,
    SectorHooks,
    erase,
)
from services.health.domain import (
    CareOutcome,
    CareRecord,
    CareUnit,
    CareUnitSpec,
    ClinicalStep,
    StepOutcome,
    rank_units,
)
from services.health.models import CareReferralRow, CareUnitRow

# Where each clinical step and each follow-up visit is kept on the referral row.
STEP_COLUMNS: dict[ClinicalStep, tuple[str, str]] = {
    step: (f"{step.value}_outcome", f"{step.value}_at") for step in ClinicalStep
}
VISIT_COLUMNS: dict[FollowUpVisit, str] = {
    visit: f"{visit.value}_visit_at" for visit in FollowUpVisit
}


def new_care_unit_id() -> str:
    return f"hcu-{secrets.token_hex(6)}"


def _codes(value: str | None) -> list[str]:
    return [c for c in (value or "").split(",") if c]


def _at(value: datetime | None) -> datetime | None:
    return as_utc(value) if value else None


def to_care_unit(row: CareUnitRow) -> CareUnit:
    return CareUnit(
        care_unit_id=row.care_unit_id,
        name=row.name,
        region=row.region,
        services=frozenset(_codes(row.services)),
        languages=frozenset(_codes(row.languages)),
        created_at=as_utc(row.created_at),
        organisation_id=row.organisation_id or None,
    )


class CareUnitRepository(ProviderRows[CareUnitRow]):
    def __init__(self) -> None:
        super().__init__(CareUnitRow, noun="care unit")

    def insert(self, session: Session, spec: CareUnitSpec) -> str:
        row = CareUnitRow(
            care_unit_id=new_care_unit_id(),
            name=spec.name,
            region=spec.region,
            services=",".join(sorted(spec.services)),
            languages=",".join(sorted(spec.languages)),
            created_at=utcnow(),
            organisation_id=spec.organisation_id,
        )
        return self.add(session, row).care_unit_id

    def get(self, session: Session, care_unit_id: str) -> CareUnit:
        return to_care_unit(self.row(session, care_unit_id))

    def list(
        self, session: Session, *, region: str | None = None, service: str | None = None
    ) -> list[CareUnit]:
        query = select(CareUnitRow).order_by(CareUnitRow.region, CareUnitRow.care_unit_id)
        if region:
            query = query.where(CareUnitRow.region == region)
        units = [to_care_unit(r) for r in session.execute(query).scalars()]
        return [u for u in units if service is None or service in u.services]


class HealthHooks(SectorHooks[CareReferralRow, HealthNeeds]):
    def __init__(self, units: CareUnitRepository) -> None:
        self.units = units

    def choose_provider(self, session: Session, draft: ReferralDraft[HealthNeeds]) -> str:
        ranked = rank_units(
            self.units.list(session),
            draft.needs,
            region=draft.region,
            exclude=draft.exclude_provider_ids,
        )
        if not ranked:
            raise NoEligibleProvider("no care unit offering this care fits this request")
        return ranked[0].care_unit_id

    def provider_organisation(self, session: Session, provider_id: str) -> str | None:
        return self.units.organisation_of(session, provider_id)

    def check_provider(
        self, session: Session, draft: ReferralDraft[HealthNeeds], provider_id: str
    ) -> None:
        # A coordinator's choice may override region, care and languages;
        # the unit must exist.
        self.units.check_known(session, provider_id)

    def store_needs(
        self, session: Session, referral: CareReferralRow, draft: ReferralDraft[HealthNeeds]
    ) -> None:
        referral.care = ",".join(draft.needs.care)
        referral.languages = ",".join(draft.needs.languages)
        referral.incident_at = draft.needs.incident_at

    def purge_needs(self, session: Session, referral: CareReferralRow) -> int:
        return erase(referral, "care", "languages", "incident_at")


def step_of(row: CareReferralRow, step: ClinicalStep) -> tuple[StepOutcome, datetime] | None:
    outcome_column, at_column = STEP_COLUMNS[step]
    outcome, at = getattr(row, outcome_column), getattr(row, at_column)
    if outcome is None or at is None:
        return None
    return StepOutcome(outcome), as_utc(at)


def set_step(row: CareReferralRow, step: ClinicalStep, outcome: StepOutcome, at: datetime) -> None:
    outcome_column, at_column = STEP_COLUMNS[step]
    setattr(row, outcome_column, outcome.value)
    setattr(row, at_column, at)


def visit_of(row: CareReferralRow, visit: FollowUpVisit) -> datetime | None:
    return _at(getattr(row, VISIT_COLUMNS[visit]))


def set_visit(row: CareReferralRow, visit: FollowUpVisit, at: datetime) -> None:
    setattr(row, VISIT_COLUMNS[visit], at)


def to_care_record(session: Session, record: ReferralRecord, row: CareReferralRow) -> CareRecord:
    """The referral's care record (a `SectorHandshake.read_file` reader)."""
    steps = {step: found for step in ClinicalStep if (found := step_of(row, step)) is not None}
    certificate = None
    if row.certificate_issued_at is not None and row.certificate_itt_days is not None:
        certificate = (as_utc(row.certificate_issued_at), row.certificate_itt_days)
    visits = [(visit, at) for visit in FollowUpVisit if (at := visit_of(row, visit)) is not None]
    return CareRecord(
        referral=record,
        care=_codes(row.care),
        incident_at=_at(row.incident_at),
        started_at=_at(row.started_at),
        steps=steps,
        certificate=certificate,
        follow_up_visits=sorted(visits, key=lambda v: v[1]),
        outcome=CareOutcome(row.care_outcome) if row.care_outcome else None,
        completed_at=_at(row.completed_at),
    )
