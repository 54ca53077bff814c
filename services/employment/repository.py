"""Every employment query, inside a caller's unit of work; never commits.

`EmploymentHooks` plugs the programme rules into the shared referral handshake
(masar.referral): choosing a programme, and taking or giving back a seat as a
referral changes status. Seats change only with the programme row locked
(SELECT ... FOR UPDATE on PostgreSQL; SQLite units of work are BEGIN
IMMEDIATE), so concurrent accepts never over-allocate.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from masar.contract import EmploymentNeeds, ReferralStatus
from masar.platform.clock import as_utc, utcnow
from masar.platform.errors import ResourceExhausted
from masar.referral import (
    NoEligibleProvider,
    ProviderRows,
    ReferralDraft,
    ReferralRecord,
    SectorHooks,
    erase,
)
from services.employment.domain import (
    ContractType,
    EmployerType,
    Enrolment,
    Programme,
    ProgrammeSpec,
    TrainingOutcome,
    rank_programmes,
    seats_held,
)
from services.employment.models import EnrolmentRow, ProgrammeRow


def new_programme_id() -> str:
    return f"prg-{secrets.token_hex(6)}"


def _codes(value: str | None) -> list[str]:
    return [c for c in (value or "").split(",") if c]


def to_programme(row: ProgrammeRow) -> Programme:
    return Programme(
        programme_id=row.programme_id,
        name=row.name,
        kind=row.kind,
        region=row.region,
        seats=row.seats,
        seats_taken=row.seats_taken,
        start_date=as_utc(row.start_date),
        languages=frozenset(_codes(row.languages)),
        created_at=as_utc(row.created_at),
        organisation_id=row.organisation_id or None,
    )


class ProgrammeRepository(ProviderRows[ProgrammeRow]):
    def __init__(self) -> None:
        super().__init__(ProgrammeRow, noun="programme")

    def insert(self, session: Session, spec: ProgrammeSpec) -> str:
        row = ProgrammeRow(
            programme_id=new_programme_id(),
            name=spec.name,
            kind=spec.kind,
            region=spec.region,
            seats=spec.seats,
            seats_taken=0,
            start_date=spec.start_date,
            languages=",".join(sorted(spec.languages)),
            created_at=utcnow(),
            organisation_id=spec.organisation_id,
        )
        return self.add(session, row).programme_id

    def get(self, session: Session, programme_id: str) -> Programme:
        return to_programme(self.row(session, programme_id))

    def locked(self, session: Session, programme_id: str) -> Programme:
        """The programme, its row locked until the unit of work ends (its
        seats cannot move meanwhile)."""
        return to_programme(self.lock(session, programme_id))

    def store_seats(self, session: Session, programme: Programme) -> Programme:
        """Write `programme.seats` (its row locked by `locked` first); the
        database's check refuses over-allocation too."""
        row = self.lock(session, programme.programme_id)
        row.seats = programme.seats
        session.flush()
        return to_programme(row)

    def list(
        self, session: Session, *, region: str | None = None, kind: str | None = None
    ) -> list[Programme]:
        query = select(ProgrammeRow).order_by(
            ProgrammeRow.region, ProgrammeRow.start_date, ProgrammeRow.programme_id
        )
        if region:
            query = query.where(ProgrammeRow.region == region)
        if kind:
            query = query.where(ProgrammeRow.kind == kind)
        return [to_programme(r) for r in session.execute(query).scalars()]


class EmploymentHooks(SectorHooks[EnrolmentRow, EmploymentNeeds]):
    def __init__(self, programmes: ProgrammeRepository) -> None:
        self.programmes = programmes

    def choose_provider(self, session: Session, draft: ReferralDraft[EmploymentNeeds]) -> str:
        ranked = rank_programmes(
            self.programmes.list(session),
            draft.needs,
            region=draft.region,
            exclude=draft.exclude_provider_ids,
        )
        if not ranked:
            raise NoEligibleProvider("no programme with a free seat fits this request")
        return ranked[0].programme_id

    def provider_organisation(self, session: Session, provider_id: str) -> str | None:
        return self.programmes.organisation_of(session, provider_id)

    def check_provider(
        self, session: Session, draft: ReferralDraft[EmploymentNeeds], provider_id: str
    ) -> None:
        # A coordinator's choice may override region, interests, languages,
        # free seats and earlier attempts; the programme must exist.
        self.programmes.check_known(session, provider_id)

    def store_needs(
        self, session: Session, referral: EnrolmentRow, draft: ReferralDraft[EmploymentNeeds]
    ) -> None:
        referral.interests = ",".join(draft.needs.interests)
        referral.languages = ",".join(draft.needs.languages)

    def on_transition(
        self,
        session: Session,
        referral: EnrolmentRow,
        old: ReferralStatus,
        new: ReferralStatus,
    ) -> None:
        change = seats_held(new) - seats_held(old)
        if change == 0:
            return
        programme = self.programmes.lock(session, referral.provider_id)
        taken = programme.seats_taken + change
        if taken > programme.seats:
            raise ResourceExhausted("no free seat in this programme")
        programme.seats_taken = max(taken, 0)

    def purge_needs(self, session: Session, referral: EnrolmentRow) -> int:
        return erase(referral, "interests", "languages")


def _at(value: datetime | None) -> datetime | None:
    return as_utc(value) if value else None


def to_enrolment(session: Session, record: ReferralRecord, row: EnrolmentRow) -> Enrolment:
    """The referral's enrolment file (a `SectorHandshake.read_file` reader)."""
    return Enrolment(
        referral=record,
        started_at=_at(row.started_at),
        training_outcome=TrainingOutcome(row.training_outcome) if row.training_outcome else None,
        training_completed_at=_at(row.training_completed_at),
        employer_type=EmployerType(row.employer_type) if row.employer_type else None,
        contract_type=ContractType(row.contract_type) if row.contract_type else None,
        placed_at=_at(row.placed_at),
    )
