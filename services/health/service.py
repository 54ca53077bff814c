"""Health's business rules, between the servicer (protobuf) and the
repository (SQL): registering care units, requesting medical care, and the
care health staff record. The referral handshake itself is the kit's
`SectorHandshake` (`self.referrals`), which this service delegates to.

She was seen (STARTED) and care ended (COMPLETED, with a structured detail)
are milestones; every clinical record (PEP, emergency contraception,
forensic examination, certificate, follow-up visit) is the contract's
`ClinicalCareRecorded`, delivered to the journey like a decision
(`SectorHandshake.record_event`): the fact and its outbox entry in one unit
of work, undone if the journey refuses it. Every read of a care record
(personal data) is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from masar import contract
from masar.contract import (
    CareEvent,
    ClinicalCareRecorded,
    FollowUpVisit,
    HealthNeeds,
    Milestone,
    ReferralStatus,
    Sector,
)
from masar.platform.clock import as_utc, utcnow
from masar.platform.errors import FailedPrecondition
from masar.platform.idempotency import fingerprint
from masar.platform.outbox import DeliveryOutcome
from masar.referral import ReferralDraft, ReferralRecord, SectorHandshake
from services.health.domain import (
    CARE_DETAILS,
    STEP_EVENTS,
    CareOutcome,
    CareRecord,
    CareUnit,
    CareUnitSpec,
    ClinicalStep,
    StepOutcome,
    check_itt_days,
    check_step_change,
    check_time,
)
from services.health.models import CareReferralRow
from services.health.repository import (
    CareUnitRepository,
    set_step,
    set_visit,
    step_of,
    to_care_record,
    visit_of,
)

# Care is recorded while the unit has the referral in hand.
RECORDING = frozenset({ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE})
NOT_IN_HAND = "the referral is not accepted or in care"


class HealthService:
    def __init__(
        self,
        *,
        referrals: SectorHandshake[CareReferralRow, HealthNeeds],
        units: CareUnitRepository,
    ) -> None:
        self.referrals = referrals
        self.units = units
        self.database = referrals.database

    # -- care units --

    async def create_care_unit(
        self, spec: CareUnitSpec, *, idempotency_key: str, request_print: str
    ) -> CareUnit:
        """Register a care unit, once per key."""
        return await self.referrals.register(
            "health.create_care_unit",
            self.units,
            spec,
            idempotency_key=idempotency_key,
            request_print=request_print,
        )

    async def list_care_units(self, *, region: str | None, service: str | None) -> list[CareUnit]:
        return await self.database.run(lambda s: self.units.list(s, region=region, service=service))

    # -- referrals --

    async def request_care(
        self, draft: ReferralDraft[HealthNeeds], *, consent_proof: str
    ) -> ReferralRecord:
        """A PENDING medical referral to a unit that fits (or the one a
        coordinator named)."""
        return await self.referrals.create(draft, consent_proof=consent_proof)

    async def start(
        self, referral_id: str, *, idempotency_key: str
    ) -> tuple[CareRecord, DeliveryOutcome]:
        """She was seen at the unit (STARTED)."""

        def start(session: Session, row: CareReferralRow) -> None:
            row.started_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id, milestone=Milestone.STARTED, idempotency_key=idempotency_key, apply=start
        )
        return await self._record(referral_id), result.delivery

    async def complete(
        self, referral_id: str, outcome: CareOutcome, *, idempotency_key: str
    ) -> tuple[CareRecord, DeliveryOutcome]:
        """Care ended (COMPLETED, with the outcome's detail)."""

        def finish(session: Session, row: CareReferralRow) -> None:
            row.care_outcome = outcome.value
            row.completed_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=idempotency_key,
            detail=CARE_DETAILS[outcome],
            apply=finish,
        )
        return await self._record(referral_id), result.delivery

    # -- clinical care, each delivered to the journey --

    async def record_step(
        self,
        referral_id: str,
        step: ClinicalStep,
        outcome: StepOutcome,
        *,
        at: datetime,
        idempotency_key: str,
    ) -> tuple[CareRecord, DeliveryOutcome]:
        """PEP started or declined, emergency contraception given or
        declined, the forensic examination done or declined, at `at`."""
        event = STEP_EVENTS[step].get(outcome)

        def write(session: Session, row: CareReferralRow, now: datetime) -> CareEvent:
            before = step_of(row, step)
            check_step_change(step, before[0] if before else None, outcome)
            set_step(row, step, outcome, at)
            assert event is not None  # checked by check_step_change
            return event

        return await self._record_care(
            referral_id,
            kind=f"care:{step.value}",
            idempotency_key=idempotency_key,
            at=at,
            write=write,
            request_print=fingerprint(step, outcome),
            audit_reason=f"{step.value}:{outcome.value}",
        )

    async def issue_certificate(
        self, referral_id: str, *, issued_at: datetime, itt_days: int, idempotency_key: str
    ) -> tuple[CareRecord, DeliveryOutcome]:
        """The medico-legal certificate with its ITT days (replacing any
        earlier one)."""
        check_itt_days(itt_days)

        def write(session: Session, row: CareReferralRow, now: datetime) -> CareEvent:
            row.certificate_issued_at = issued_at
            row.certificate_itt_days = itt_days
            return CareEvent.CERTIFICATE_ISSUED

        return await self._record_care(
            referral_id,
            kind="care:certificate",
            idempotency_key=idempotency_key,
            at=issued_at,
            at_field="issued_at",
            write=write,
            itt_days=itt_days,
            request_print=fingerprint(itt_days),
            audit_reason="certificate_issued",
        )

    async def record_follow_up_visit(
        self, referral_id: str, visit: FollowUpVisit, *, at: datetime, idempotency_key: str
    ) -> tuple[CareRecord, DeliveryOutcome]:
        """A medical follow-up visit, once each."""

        def write(session: Session, row: CareReferralRow, now: datetime) -> CareEvent:
            if visit_of(row, visit) is not None:
                raise FailedPrecondition(f"the {visit.value} visit is already recorded")
            set_visit(row, visit, at)
            return CareEvent.FOLLOW_UP_VISIT_DONE

        return await self._record_care(
            referral_id,
            kind=f"care:visit:{visit.value}",
            idempotency_key=idempotency_key,
            at=at,
            write=write,
            visit=visit,
            request_print=fingerprint(visit),
            audit_reason=f"follow_up_visit:{visit.value}",
        )

    async def _record_care(
        self,
        referral_id: str,
        *,
        kind: str,
        idempotency_key: str,
        at: datetime,
        write: Callable[[Session, CareReferralRow, datetime], CareEvent],
        request_print: str,
        audit_reason: str,
        at_field: str = "at",
        itt_days: int | None = None,
        visit: FollowUpVisit | None = None,
    ) -> tuple[CareRecord, DeliveryOutcome]:
        when = as_utc(at)

        def build(session: Session, row: CareReferralRow, event_id: str) -> ClinicalCareRecorded:
            now = utcnow()
            incident = as_utc(row.incident_at) if row.incident_at else None
            check_time(when, at_field, now=now, incident_at=incident)
            event = write(session, row, now)
            return ClinicalCareRecorded(
                event_id=event_id,
                referral_id=row.referral_id,
                sector=Sector.HEALTH,
                event=event,
                at=when,
                recorded_at=now,
                itt_days=itt_days,
                visit=visit,
            )

        result = await self.referrals.record_event(
            referral_id,
            kind=kind,
            idempotency_key=idempotency_key,
            update_name=contract.UPDATE_CLINICAL_CARE,
            build=build,
            allowed=RECORDING,
            request_print=fingerprint(when, request_print),
            audit_reason=audit_reason,
            wrong_state=NOT_IN_HAND,
        )
        return await self._record(referral_id), result.delivery

    # -- reads --

    async def care_record(self, referral_id: str) -> CareRecord:
        """The care record (personal data): an audited read."""
        return await self.referrals.read_file(referral_id, to_care_record)

    async def _record(self, referral_id: str) -> CareRecord:
        return await self.referrals.read(referral_id, to_care_record)
