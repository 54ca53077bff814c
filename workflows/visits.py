"""Medical follow-up visits: 2 weeks, 3 months and 6 months after the incident.

When a hospital care unit accepts the medical referral (runs with the care
patch), the journey schedules the follow-up visits WHO's clinical management
of rape asks for (`FOLLOW_UP_VISIT_AFTER`, counted from the incident — from
intake when its time is not known); a visit already due by then is not
scheduled. Each visit is a wait under the escalation ladder, placed so that:

- its first rung (the reminder) falls on the day the visit is due: the care
  unit is reminded (`health.remind_provider` and a notification to its staff)
  and so is the case worker (intake's inbox);
- its second rung falls the policy's `health_visit` later: the visit counts
  as missed and the region's coordinators are told;
- its last rung is the regional escalation.

The unit records the visit (`ClinicalCareRecorded`, event
`follow_up_visit_done`): the wait ends. Withdrawing consent to health care or
closing the case cancels the visits still open. A visit's due day is
clinical: a change of risk does not move it.

Like the other rule objects: state changes, owed actions and timeline events
only; time comes in as `now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from masar.contract import (
    FOLLOW_UP_VISIT_AFTER,
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    LEVEL_REMINDER,
    FollowUpVisit,
    ReferralStatus,
    Sector,
)
from workflows.ladder import RUNG_EVENTS, EscalationLadder, SlaTerms
from workflows.lanes import ActionLanes, Timeline
from workflows.notices import Notices
from workflows.policy import CARE_DEFAULT_SECONDS
from workflows.state import (
    HEALTH_VISIT_WAIT,
    ActionKind,
    HealthVisit,
    JourneyState,
    LadderWait,
    ReferralState,
    VisitStatus,
    visit_wait_name,
)

# The statuses in which the care unit still follows her (reminders go to it).
FOLLOWING = (ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE, ReferralStatus.COMPLETED)
# A visit's rungs: due, missed (the region's coordinators), regional.
VISIT_EVENTS = {
    LEVEL_REMINDER: "health_visit_due",
    LEVEL_COORDINATOR: "health_visit_missed",
    LEVEL_REGIONAL: RUNG_EVENTS[LEVEL_REGIONAL],
}


def grace(terms: SlaTerms) -> timedelta:
    """How long after a visit falls due before it counts as missed."""
    configured = terms.deadline(HEALTH_VISIT_WAIT)
    if configured is not None:
        return configured
    return timedelta(seconds=CARE_DEFAULT_SECONDS[HEALTH_VISIT_WAIT][terms.risk.value])


def visit_wait(name: str, due_at: datetime, terms: SlaTerms) -> LadderWait:
    """A wait whose reminder falls on `due_at` and whose escalation falls
    `grace` after it, whatever the ladder's fractions."""
    ladder = terms.ladder
    span = grace(terms) / (ladder.escalate - ladder.reminder)
    started = due_at - span * ladder.reminder
    return ladder.wait(name, started, span)


class HealthVisits:
    """The case's follow-up visits (state.visits) and their ladder."""

    def __init__(
        self, state: JourneyState, lanes: ActionLanes, timeline: Timeline, notices: Notices
    ) -> None:
        self._state = state
        self._lanes = lanes
        self._timeline = timeline
        self._notices = notices

    def find(self, visit: FollowUpVisit) -> HealthVisit | None:
        for scheduled in self._state.visits:
            if scheduled.visit is visit:
                return scheduled
        return None

    def by_wait(self, name: str) -> HealthVisit | None:
        """The visit whose wait is named `name` (`health_visit:two_weeks`, ...)."""
        for scheduled in self._state.visits:
            if visit_wait_name(scheduled.visit) == name:
                return scheduled
        return None

    def waits(self) -> list[tuple[HealthVisit, LadderWait]]:
        return [(v, v.wait) for v in self._state.visits if v.wait is not None]

    def schedule(self, ref: ReferralState, now: datetime, terms: SlaTerms) -> None:
        """The care unit accepted her: the visits still ahead, once per case."""
        state = self._state
        if state.visits:
            return
        anchor = state.incident_at or state.opened_at
        scheduled = []
        for visit, after in FOLLOW_UP_VISIT_AFTER.items():
            due_at = anchor + after
            if due_at <= now:
                continue
            state.visits.append(
                HealthVisit(
                    visit=visit,
                    due_at=due_at,
                    status=VisitStatus.OPEN,
                    referral_id=ref.referral_id,
                    wait=visit_wait(visit_wait_name(visit), due_at, terms),
                )
            )
            scheduled.append(visit.value)
        if scheduled:
            self._timeline.note(
                now,
                "health_visits_scheduled",
                sector=Sector.HEALTH,
                referral_id=ref.referral_id,
                detail=",".join(scheduled),
            )

    def climb(
        self,
        visit: HealthVisit,
        level: int,
        now: datetime,
        ladder: EscalationLadder,
        ref: ReferralState | None,
    ) -> None:
        """Rung `level` of the visit's wait is due: the visit is due (the unit
        and the case worker reminded), missed (coordinators), regional."""
        wait = visit.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        deadline = ladder.deadline(wait)
        self._timeline.note(
            now,
            VISIT_EVENTS[level],
            sector=Sector.HEALTH,
            referral_id=visit.referral_id,
            level=level,
            detail=wait.name,
        )
        following = ref is not None and ref.status in FOLLOWING
        if level == LEVEL_REMINDER and following:
            self._lanes.owe(
                Sector.HEALTH.value,
                ActionKind.REMIND,
                referral_id=visit.referral_id,
                wait=wait.name,
            )
        self._lanes.owe_escalation(
            level, wait.name, deadline, sector=Sector.HEALTH, referral_id=visit.referral_id
        )
        if ref is not None:
            self._notices.referral_rung(ref, wait, level, now, deadline)

    def record(self, visit: FollowUpVisit, at: datetime, now: datetime) -> None:
        """The care unit saw her for the visit."""
        scheduled = self.find(visit)
        if scheduled is not None and scheduled.status is VisitStatus.OPEN:
            scheduled.status = VisitStatus.DONE
            scheduled.wait = None
            scheduled.closed_at = min(at, now)

    def cancel(self, now: datetime) -> None:
        """Consent to health care withdrawn, or the case closed."""
        cancelled = False
        for visit in self._state.visits:
            if visit.status is VisitStatus.OPEN:
                visit.status = VisitStatus.CANCELLED
                visit.wait = None
                visit.closed_at = now
                cancelled = True
        if cancelled:
            self._timeline.note(now, "health_visits_cancelled", sector=Sector.HEALTH)
