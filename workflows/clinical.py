"""Hard clinical windows: absolute deadlines counted from the incident.

After rape or sexual assault reported in time, HIV post-exposure prophylaxis
must start within 72 h of the incident and emergency contraception within
120 h (WHO/UNFPA/UNHCR). Each window is an absolute wait under the escalation
ladder: its last rung falls on the closing time, whatever the extensions.
A window is met when medical care is confirmed, missed when it closes first
(it then stays among the open escalations until care is confirmed), and
cancelled when the case closes. With a medical referral (runs with the care
patch, workflows.care) the care unit's records close it: met, or declined —
her decision, never escalated.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from masar.contract import (
    LEVEL_REGIONAL,
    ClinicalItem,
    ViolenceType,
)
from workflows.ladder import RUNG_EVENTS, EscalationLadder
from workflows.lanes import ActionLanes, Timeline
from workflows.notices import Notices
from workflows.state import ClinicalWindow, JourneyState, WindowStatus, clinical_wait_name

CLINICAL_WINDOWS: tuple[tuple[ClinicalItem, timedelta], ...] = (
    (ClinicalItem.PEP, timedelta(hours=72)),
    (ClinicalItem.EMERGENCY_CONTRACEPTION, timedelta(hours=120)),
)
CLINICAL_ELIGIBLE_AGE = timedelta(hours=120)
SEXUAL_VIOLENCE = (ViolenceType.RAPE, ViolenceType.SEXUAL_ASSAULT)


class ClinicalWindows:
    """The case's clinical windows (state.clinical) and their rules."""

    def __init__(
        self, state: JourneyState, lanes: ActionLanes, timeline: Timeline, notices: Notices
    ) -> None:
        self._state = state
        self._lanes = lanes
        self._timeline = timeline
        self._notices = notices

    @property
    def windows(self) -> list[ClinicalWindow]:
        return self._state.clinical

    def open(self, now: datetime, ladder: EscalationLadder) -> None:
        """At the first run: the windows the incident calls for, if still open."""
        state = self._state
        if state.violence_type not in SEXUAL_VIOLENCE or state.incident_at is None:
            return
        if state.opened_at - state.incident_at >= CLINICAL_ELIGIBLE_AGE:
            return
        for item, span in CLINICAL_WINDOWS:
            closes = state.incident_at + span
            name = clinical_wait_name(item)
            if closes <= state.opened_at:
                state.clinical.append(
                    ClinicalWindow(
                        item=item, deadline=closes, status=WindowStatus.MISSED, closed_at=now
                    )
                )
                self._timeline.note(now, "clinical_window_missed", detail=f"{name}:before_intake")
                continue
            wait = ladder.absolute_wait(name, state.opened_at, closes)
            state.clinical.append(
                ClinicalWindow(item=item, deadline=closes, status=WindowStatus.OPEN, wait=wait)
            )
            self._timeline.note(now, "clinical_window_opened", detail=name)

    def climb(
        self, window: ClinicalWindow, level: int, now: datetime, ladder: EscalationLadder
    ) -> None:
        """Rung `level` of the window's wait is due; the last one closes it, missed."""
        wait = window.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        window.level = level
        self._lanes.owe_escalation(level, wait.name, ladder.deadline(wait))
        self._notices.clinical_rung(wait, level, now, window.deadline)
        if level < LEVEL_REGIONAL:
            self._timeline.note(now, RUNG_EVENTS[level], level=level, detail=wait.name)
            return
        window.status = WindowStatus.MISSED
        window.wait = None
        window.escalation_open = True
        window.closed_at = now
        self._timeline.note(now, "clinical_window_missed", level=level, detail=wait.name)

    def confirm_care(self, item: ClinicalItem, now: datetime) -> None:
        """Medical care given: an open window is met; a missed one stops escalating."""
        detail = item.value
        for window in self._state.clinical:
            if window.item is not item:
                continue
            if window.status == WindowStatus.OPEN:
                window.status = WindowStatus.MET
                window.wait = None
                window.closed_at = now
                self._timeline.note(now, "clinical_window_met", detail=clinical_wait_name(item))
                return
            if window.status == WindowStatus.MISSED:
                window.escalation_open = False
                detail = f"{item.value}:after_window"
        self._timeline.note(now, "medical_care_confirmed", detail=detail)

    def record(
        self, item: ClinicalItem, at: datetime, now: datetime, *, declined: bool
    ) -> str | None:
        """The medical referral's care unit recorded the care (given at `at`)
        or that she declined it: its window closes MET or DECLINED — also a
        window closed MISSED while the record was on its way, when the care
        came before the window closed. Declining is her decision: the window
        closes without escalation, and a missed one stops escalating. A
        window she declined is MET when the care is given in time after all.
        Returns the window's new status event, or None when no window closed
        (none for this item, or the care came after it)."""
        for window in self._state.clinical:
            if window.item is not item:
                continue
            reopenable = window.status is WindowStatus.MISSED or (
                window.status is WindowStatus.DECLINED and not declined
            )
            in_time = at <= window.deadline
            if window.status is WindowStatus.OPEN or (reopenable and in_time):
                window.status = WindowStatus.DECLINED if declined else WindowStatus.MET
                window.wait = None
                window.escalation_open = False
                window.closed_at = now
                event = "clinical_window_declined" if declined else "clinical_window_met"
                self._timeline.note(now, event, detail=clinical_wait_name(item))
                return event
            if window.status is WindowStatus.MISSED:
                window.escalation_open = False
        return None

    def earliest_open(self) -> datetime | None:
        """When the first window still open closes."""
        closing = [w.deadline for w in self._state.clinical if w.status is WindowStatus.OPEN]
        return min(closing) if closing else None

    def cancel_open(self, now: datetime) -> None:
        """The case closed: windows still open no longer escalate."""
        for window in self._state.clinical:
            if window.status == WindowStatus.OPEN:
                window.status = WindowStatus.CANCELLED
                window.wait = None
                window.closed_at = now
