"""The medical referral's care, as the journey keeps it (runs with the care patch).

A hospital care unit's staff record what happened on a medical referral,
each with its time (`ClinicalCareRecorded`, Update `clinical_care_recorded`,
sent by the health service): HIV PEP started or declined, emergency
contraception given or declined, forensic examination done or declined, a
medical certificate with its days of total incapacity for work (ITT), a
follow-up visit done. The journey:

- closes the clinical window the care belongs to (workflows.clinical): met,
  or declined — her decision, never escalated;
- ends the follow-up visit's wait (workflows.visits);
- keeps the latest certificate (its date and ITT days, nothing else) and,
  when she consented to legal aid, tells each live legal aid referral of it
  once (`legal.note_certificate`, in legal's lane): the complaint needs them.

While a clinical window is open the medical referral's waits are squeezed so
that their last rung falls when the first open window closes
(`squeeze_until`, used through workflows.ladder.SlaTerms).

Like the other rule objects: state changes, owed actions and timeline events
only; time comes in as `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from masar.contract import (
    CareEvent,
    ClinicalCareRecorded,
    ReferralStatus,
    Sector,
)
from workflows.clinical import ClinicalWindows
from workflows.lanes import ActionLanes, Timeline
from workflows.state import (
    LIVE_STATUSES,
    Action,
    ActionKind,
    Certificate,
    JourneyState,
    ReferralState,
)
from workflows.visits import HealthVisits

# Runs started with it refer to the care sectors (health, psychosocial), keep
# the medical referral's care, visits and certificate, and hear of breaches;
# histories recorded before it replay without.
CARE_PATCH = "masar-care-sectors"
# A legal aid referral in these statuses learns of the certificate.
TOLD_OF_CERTIFICATE = LIVE_STATUSES


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class CareDesk:
    """What the care unit records, and what legal aid learns of it."""

    def __init__(
        self,
        state: JourneyState,
        lanes: ActionLanes,
        timeline: Timeline,
        clinical: ClinicalWindows,
        visits: HealthVisits,
    ) -> None:
        self._state = state
        self._lanes = lanes
        self._timeline = timeline
        self._clinical = clinical
        self._visits = visits

    def squeeze_until(self) -> datetime | None:
        """No rung of a medical referral's wait falls after this (the first
        open clinical window's closing time)."""
        return self._clinical.earliest_open()

    def record(self, event: ClinicalCareRecorded, ref: ReferralState, now: datetime) -> None:
        at = min(_utc(event.at), now)
        care = event.event
        detail = care.value
        item = care.item
        if item is not None and any(w.item is item for w in self._state.clinical):
            closed = self._clinical.record(item, at, now, declined=care.declined)
            if closed is None:
                detail = f"{care.value}:after_window"
        self._timeline.note(
            now,
            "clinical_care_recorded",
            sector=Sector.HEALTH,
            referral_id=ref.referral_id,
            detail=detail,
        )
        if care is CareEvent.CERTIFICATE_ISSUED and event.itt_days is not None:
            # The latest certificate replaces an earlier one (re-issued with other ITT days).
            self._state.certificate = Certificate(issued_at=at, itt_days=event.itt_days)
        elif care is CareEvent.FOLLOW_UP_VISIT_DONE and event.visit is not None:
            self._visits.record(event.visit, at, now)

    # --- legal aid learns that a certificate exists ------------------------------------

    def tell_legal_aid(self, legal: ReferralState | None, *, consented: bool) -> None:
        """Owe `legal.note_certificate` to the live legal aid referral, once
        per certificate and referral."""
        certificate = self._state.certificate
        if (
            certificate is None
            or not consented
            or legal is None
            or legal.status not in TOLD_OF_CERTIFICATE
            or legal.referral_id in certificate.noted_referral_ids
        ):
            return
        certificate.noted_referral_ids.append(legal.referral_id)
        self._lanes.owe(
            Sector.LEGAL.value,
            ActionKind.CERTIFICATE,
            referral_id=legal.referral_id,
            issued_at=certificate.issued_at,
            itt_days=certificate.itt_days,
        )

    def is_stale(self, action: Action, legal: ReferralState | None, *, consented: bool) -> bool:
        """The notice waited in legal's lane while its reason went: consent
        withdrawn, the referral over, or a newer certificate issued."""
        certificate = self._state.certificate
        return (
            not consented
            or legal is None
            or legal.referral_id != action.referral_id
            or legal.status not in TOLD_OF_CERTIFICATE
            or certificate is None
            or (certificate.issued_at, certificate.itt_days) != (action.issued_at, action.itt_days)
        )


def in_care(ref: ReferralState) -> bool:
    """A medical referral on which the care unit records care."""
    return ref.status in (ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE)
