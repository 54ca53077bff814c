"""Employment's business rules, between the servicer (protobuf) and the
repository (SQL): registering programmes, requesting enrolments, the start,
the end of training and the job placement. The referral handshake itself is
the kit's `SectorHandshake` (`self.referrals`), which this service delegates to.

A certified training leaves the referral open for the job search (a local
step); dropping out or a job placement completes it (COMPLETED, with a
structured detail). A programme's officers (its organisation's) and its
region's coordinator keep its seats up to date (audited). Every read of an
enrolment (personal data) is audited.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from masar.contract import EmploymentNeeds, Milestone, ReferralStatus
from masar.platform.clock import utcnow
from masar.platform.errors import FailedPrecondition
from masar.platform.idempotency import fingerprint, run_retrying_conflicts
from masar.platform.identity import current_caller
from masar.platform.outbox import DeliveryOutcome
from masar.referral import ReferralDraft, ReferralRecord, SectorHandshake
from services.employment.domain import (
    DETAIL_DROPPED_OUT,
    DETAIL_JOB_PLACED,
    ContractType,
    EmployerType,
    Enrolment,
    Programme,
    ProgrammeSpec,
    TrainingOutcome,
    check_manager,
    resize,
)
from services.employment.models import EnrolmentRow
from services.employment.repository import ProgrammeRepository, to_enrolment

SET_SEATS = "employment.set_programme_seats"


class EmploymentService:
    def __init__(
        self,
        *,
        referrals: SectorHandshake[EnrolmentRow, EmploymentNeeds],
        programmes: ProgrammeRepository,
    ) -> None:
        self.referrals = referrals
        self.programmes = programmes
        self.database = referrals.database

    # -- programmes --

    async def create_programme(
        self, spec: ProgrammeSpec, *, idempotency_key: str, request_print: str
    ) -> Programme:
        """Register a programme, once per key."""
        return await self.referrals.register(
            "employment.create_programme",
            self.programmes,
            spec,
            idempotency_key=idempotency_key,
            request_print=request_print,
        )

    async def list_programmes(self, *, region: str | None, kind: str | None) -> list[Programme]:
        return await self.database.run(lambda s: self.programmes.list(s, region=region, kind=kind))

    async def authorise_programme(self, programme_id: str) -> Programme:
        """The programme, if the current caller may change its seats
        (`check_manager`); NotFound or PermissionDenied otherwise. Called
        before the rest of the request is read."""
        programme = await self.database.run(lambda s: self.programmes.get(s, programme_id))
        check_manager(current_caller(), programme)
        return programme

    async def set_seats(
        self, programme_id: str, seats: int, *, idempotency_key: str | None
    ) -> Programme:
        """The programme's seats set to `seats` (`resize`: never below the
        seats taken), its row locked; audited, in one unit of work. A retry
        with the same key changes nothing again."""
        referrals = self.referrals
        print_ = fingerprint(programme_id, seats)

        def work(session: Session) -> Programme:
            if idempotency_key and referrals.ledger.lookup(
                session, scope=SET_SEATS, key=idempotency_key, fingerprint=print_
            ):
                return self.programmes.get(session, programme_id)
            programme = resize(self.programmes.locked(session, programme_id), seats)
            stored = self.programmes.store_seats(session, programme)
            if idempotency_key:
                referrals.ledger.record(
                    session,
                    scope=SET_SEATS,
                    key=idempotency_key,
                    fingerprint=print_,
                    subject_id=programme_id,
                )
            referrals.record_audit(
                session,
                "programme.seats_set",
                case_id="",
                target=programme_id,
                reason=f"seats:{seats}",
            )
            return stored

        return await run_retrying_conflicts(self.database, work)

    # -- enrolments --

    async def request_enrolment(
        self, draft: ReferralDraft[EmploymentNeeds], *, consent_proof: str
    ) -> ReferralRecord:
        """A PENDING enrolment in a programme that fits (or the one a
        coordinator named)."""
        return await self.referrals.create(draft, consent_proof=consent_proof)

    async def start(
        self, referral_id: str, *, idempotency_key: str
    ) -> tuple[Enrolment, DeliveryOutcome]:
        """Training started (STARTED)."""

        def start(session: Session, row: EnrolmentRow) -> None:
            row.started_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id, milestone=Milestone.STARTED, idempotency_key=idempotency_key, apply=start
        )
        return await self._enrolment(referral_id), result.delivery

    async def complete_training(
        self, referral_id: str, outcome: TrainingOutcome, *, idempotency_key: str
    ) -> tuple[Enrolment, DeliveryOutcome | None]:
        """Certified: a local step, the job search goes on (no delivery).
        Dropped out: the referral completes, which the journey hears of."""

        def finish(session: Session, row: EnrolmentRow) -> None:
            if row.training_outcome is not None:
                raise FailedPrecondition("the training outcome is already recorded")
            row.training_outcome = outcome.value
            row.training_completed_at = utcnow()

        delivery = None
        if outcome is TrainingOutcome.CERTIFIED:
            await self.referrals.update_local(
                referral_id,
                step="training_completed",
                idempotency_key=idempotency_key,
                allowed={ReferralStatus.IN_SERVICE},
                apply=finish,
                request_print=outcome.value,
                wrong_state="the enrolment has not started",
            )
        else:
            result = await self.referrals.record_milestone(
                referral_id,
                milestone=Milestone.COMPLETED,
                idempotency_key=idempotency_key,
                detail=DETAIL_DROPPED_OUT,
                apply=finish,
            )
            delivery = result.delivery
        return await self._enrolment(referral_id), delivery

    async def record_job_placement(
        self,
        referral_id: str,
        *,
        employer: EmployerType,
        contract_type: ContractType,
        idempotency_key: str,
    ) -> tuple[Enrolment, DeliveryOutcome]:
        """She found work: the referral completes (COMPLETED, job_placed)."""

        def place(session: Session, row: EnrolmentRow) -> None:
            row.employer_type = employer.value
            row.contract_type = contract_type.value
            row.placed_at = utcnow()

        result = await self.referrals.record_milestone(
            referral_id,
            milestone=Milestone.COMPLETED,
            idempotency_key=idempotency_key,
            detail=DETAIL_JOB_PLACED,
            apply=place,
            request_print=fingerprint(employer, contract_type),
        )
        return await self._enrolment(referral_id), result.delivery

    async def enrolment(self, referral_id: str) -> Enrolment:
        """The enrolment (personal data): an audited read."""
        return await self.referrals.read_file(referral_id, to_enrolment)

    async def _enrolment(self, referral_id: str) -> Enrolment:
        return await self.referrals.read(referral_id, to_enrolment)
