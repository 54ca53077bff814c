"""The case file: everything the journey decides, without Temporal.

`CaseFile` holds the journey's state and its rules — which sectors to refer
to, the stage, follow-ups, clinical windows, closure and reopening, the
escalation ladder's rungs, update validation and deduplication, the status
view and the search attribute values. It never calls anything: side effects
are owed as `Action`s that the workflow's lanes perform. Time comes in as
`now` (the workflow's clock), so everything here is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

from temporalio.exceptions import ApplicationError

from masar.contract import (
    ERR_CLOSURE_PENDING,
    ERR_INVALID,
    ERR_JOURNEY_CLOSED,
    ERR_NO_CLOSURE_PENDING,
    ERR_NO_CONSENT,
    ERR_NO_OPEN_WAIT,
    ERR_NOT_CLOSED,
    ERR_REFERRAL_BUSY,
    ERR_STALE_REFERRAL,
    ERR_UNKNOWN_REFERRAL,
    ERR_UNKNOWN_WAIT,
    LEVEL_COORDINATOR,
    LEVEL_NONE,
    LEVEL_REGIONAL,
    SA_ESCALATION_LEVEL,
    SA_NEXT_DEADLINE,
    SA_PENDING_SECTORS,
    SA_REGION,
    SA_RISK,
    SA_STAGE,
    ClinicalItem,
    ClinicalWindowView,
    ClosureDecision,
    ClosureRequest,
    ConsentChange,
    DeadlineExtension,
    DeclineReason,
    EscalationView,
    FollowUpContact,
    JourneyInput,
    JourneyStatus,
    MedicalCareConfirmed,
    Milestone,
    Need,
    Reassignment,
    ReferralDecision,
    ReferralMilestone,
    ReferralStatus,
    ReferralView,
    ReopenRequest,
    RiskChange,
    Sector,
    Stage,
    TimelineEvent,
    UpdateResult,
    ViolenceType,
)
from workflows.handshake import RUNG_EVENTS, ReferralHandshake
from workflows.ladder import EscalationLadder
from workflows.policy import SlaPolicy
from workflows.state import (
    ACCEPT_WAIT,
    CLINICAL_PREFIX,
    FOLLOW_UP_WAIT,
    INTAKE_LANE,
    MAX_ANSWERS,
    MAX_TIMELINE,
    Action,
    ActionKind,
    ClinicalWindow,
    JourneyState,
    LadderWait,
    ReferralState,
    SectorTrack,
    WindowStatus,
    clinical_wait_name,
)

# Hard clinical windows, counted from the incident (WHO/UNFPA/UNHCR).
CLINICAL_WINDOWS: tuple[tuple[ClinicalItem, timedelta], ...] = (
    (ClinicalItem.PEP, timedelta(hours=72)),
    (ClinicalItem.EMERGENCY_CONTRACEPTION, timedelta(hours=120)),
)
CLINICAL_ELIGIBLE_AGE = timedelta(hours=120)
SEXUAL_VIOLENCE = (ViolenceType.RAPE, ViolenceType.SEXUAL_ASSAULT)
MAX_EXTENSION = timedelta(days=365)
DECLINE_REASONS = frozenset(reason.value for reason in DeclineReason)


def utc(value: datetime) -> datetime:
    """Datetimes from outside without a zone are taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def reject(error_type: str, message: str) -> ApplicationError:
    """An update rejection: the message names the field, never a value."""
    return ApplicationError(message, type=error_type, non_retryable=True)


_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def as_code(text: str) -> str:
    """What the timeline keeps of a reason: a structured code as given, never
    free text (which might name someone or tell her story)."""
    text = text.strip()
    return text if _CODE.match(text) else "free_text"


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


class CaseFile:
    def __init__(self, state: JourneyState) -> None:
        self.state = state
        self.handshake = ReferralHandshake(self)
        self._answers = {answer.event_id: answer for answer in state.answers}

    @classmethod
    def open(cls, inp: JourneyInput, workflow_id: str) -> CaseFile:
        state = JourneyState(
            case_id=inp.case_id,
            workflow_id=workflow_id,
            region=inp.region,
            risk=inp.risk,
            needs=list(dict.fromkeys(inp.needs)),
            consents=list(dict.fromkeys(inp.consents)),
            opened_at=utc(inp.opened_at),
            incident_at=utc(inp.incident_at) if inp.incident_at else None,
            violence_type=inp.violence_type,
            shelter=inp.shelter,
            legal=inp.legal,
            employment=inp.employment,
            max_history_events=inp.max_history_events,
            tracks={sector.value: SectorTrack(sector=sector) for sector in Sector},
        )
        return cls(state)

    # --- policy -------------------------------------------------------------------

    @property
    def policy(self) -> SlaPolicy:
        if self.state.policy is None:
            raise RuntimeError("the SLA policy is not loaded yet")
        return self.state.policy

    @property
    def ladder(self) -> EscalationLadder:
        return EscalationLadder.from_policy(self.policy)

    # --- lookups ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state.closed_at is not None

    def track(self, sector: Sector) -> SectorTrack:
        return self.state.tracks[sector.value]

    def referral(self, referral_id: str | None) -> ReferralState | None:
        for ref in self.state.referrals:
            if ref.referral_id == referral_id:
                return ref
        return None

    def latest_referral(self, sector: Sector) -> ReferralState | None:
        for ref in reversed(self.state.referrals):
            if ref.sector is sector:
                return ref
        return None

    def needs(self, sector: Sector) -> bool:
        return Need(sector.value) in self.state.needs

    def consented(self, sector: Sector) -> bool:
        return sector in self.state.consents

    def wants(self, sector: Sector) -> bool:
        """The journey still has business with this sector in this cycle."""
        return self.needs(sector) and self.consented(sector) and not self.track(sector).done

    def safe(self) -> bool:
        """Placed in a shelter, or no shelter needed or consented to."""
        shelter = Sector.SHELTER
        return not self.needs(shelter) or not self.consented(shelter) or self.track(shelter).served

    def gate_open(self, sector: Sector) -> bool:
        # Recovery (employment) starts once the survivor is safe.
        return sector is not Sector.EMPLOYMENT or self.safe()

    # --- infrastructure -------------------------------------------------------------

    def note(
        self,
        now: datetime,
        event: str,
        *,
        sector: Sector | None = None,
        referral_id: str | None = None,
        level: int | None = None,
        detail: str | None = None,
        actor: str | None = None,
    ) -> None:
        self.state.timeline.append(
            TimelineEvent(
                at=now,
                event=event,
                sector=sector,
                referral_id=referral_id,
                level=level,
                detail=detail,
                actor=actor,
            )
        )
        if len(self.state.timeline) > MAX_TIMELINE:
            del self.state.timeline[: len(self.state.timeline) - MAX_TIMELINE]

    def owe(self, lane: str, kind: str, *, after: Action | None = None, **fields: object) -> Action:
        """Owe a side effect; its idempotency key is fixed now (workflow id + counter)."""
        self.state.seq += 1
        key = f"{self.state.workflow_id}/{kind}/{self.state.seq}"
        action = Action(lane=lane, kind=kind, key=key, **fields)  # type: ignore[arg-type]
        if after is not None and after in self.state.actions:
            self.state.actions.insert(self.state.actions.index(after) + 1, action)
        else:
            self.state.actions.append(action)
        return action

    def escalate(
        self,
        now: datetime,
        level: int,
        wait: LadderWait | str,
        *,
        sector: Sector | None = None,
        referral_id: str | None = None,
    ) -> None:
        """Tell intake (the coordinators' inbox, the case worker's reminders)."""
        if isinstance(wait, LadderWait):
            name, due_at = wait.name, self.ladder.deadline(wait)
        else:
            name, due_at = wait, now
        self.owe(
            INTAKE_LANE,
            ActionKind.ESCALATE,
            level=level,
            wait=name,
            due_at=due_at,
            sector=sector,
            referral_id=referral_id,
        )

    def next_action(self, lane: str, *, draining: bool) -> Action | None:
        """The next action of a lane, in order — except that one an update
        handler waits for (a coordinator's reassignment) goes first. While
        draining for continue-as-new, only those."""
        first = None
        for action in self.state.actions:
            if action.lane != lane:
                continue
            if action.awaited_by:
                return action
            first = first or action
        return None if draining else first

    def awaited_in(self, lane: str) -> bool:
        return any(a.lane == lane and a.awaited_by for a in self.state.actions)

    def done_with(self, action: Action) -> None:
        if action in self.state.actions:
            self.state.actions.remove(action)

    def is_stale(self, action: Action) -> bool:
        if action.kind == ActionKind.REQUEST:
            return self.handshake.is_stale(action)
        if action.kind == ActionKind.REMIND:
            ref = self.referral(action.referral_id)
            return ref is None or ref.status not in (
                ReferralStatus.PENDING,
                ReferralStatus.ACCEPTED,
            )
        return False

    # --- answers (deduplication) ------------------------------------------------------

    def answered(self, event_id: str) -> UpdateResult | None:
        previous = self._answers.get(event_id)
        return replace(previous, duplicate=True) if previous is not None else None

    def answer(self, event_id: str) -> UpdateResult:
        result = UpdateResult(event_id=event_id, stage=self.state.stage)
        self._answers[event_id] = result
        self.state.answers.append(result)
        if len(self.state.answers) > MAX_ANSWERS:
            dropped = self.state.answers[: len(self.state.answers) - MAX_ANSWERS]
            del self.state.answers[: len(dropped)]
            for old in dropped:
                self._answers.pop(old.event_id, None)
        return result

    # --- lifecycle -------------------------------------------------------------------

    def start(self, now: datetime) -> None:
        """The first run: open clinical windows and follow-ups, plan referrals."""
        state = self.state
        self.note(now, "journey_opened", detail=state.risk.value)
        self._open_clinical_windows(now)
        self._open_follow_up(now)
        state.started = True
        self.tick(now)

    def tick(self, now: datetime) -> None:
        """Climb every rung that is due, then plan referrals and the stage."""
        for level, _, climb in sorted(self._due_rungs(now), key=lambda due: (due[1], due[0])):
            climb(level)
        self.plan()
        self.refresh_stage(now)

    def plan(self) -> None:
        if self.closed or not self.state.started:
            return
        for sector in Sector:
            track = self.track(sector)
            if (
                self.wants(sector)
                and self.gate_open(sector)
                and track.current is None
                and track.exhausted_level == 0
                and self.handshake.owed_request(sector) is None
            ):
                self.handshake.request_new(sector)

    def computed_stage(self) -> Stage:
        if self.closed:
            return Stage.CLOSED
        if self.state.closure_requested:
            return Stage.CLOSURE_PENDING
        if not self.state.started:
            return Stage.TRIAGE
        if self.wants(Sector.SHELTER) and not self.track(Sector.SHELTER).served:
            return Stage.SAFETY
        if self.wants(Sector.EMPLOYMENT):
            return Stage.RECOVERY
        if self.wants(Sector.LEGAL):
            return Stage.JUSTICE
        return Stage.FOLLOW_UP

    def refresh_stage(self, now: datetime) -> None:
        stage = self.computed_stage()
        if stage is not self.state.stage:
            self.state.stage = stage
            self.note(now, "stage_changed", detail=stage.value)

    def next_wakeup(self) -> datetime | None:
        if self.closed:
            closed_at = self.state.closed_at
            assert closed_at is not None
            return closed_at + self.policy.closed_retention
        times = [due for _, due in self._next_rungs()]
        return min(times) if times else None

    def finished(self, now: datetime) -> bool:
        """Closed and never reopened within the retention period."""
        closed_at = self.state.closed_at
        return closed_at is not None and now >= closed_at + self.policy.closed_retention

    # --- waits and rungs -------------------------------------------------------------

    def _open_waits(self) -> Iterator[tuple[LadderWait, ReferralState | None]]:
        for ref in self.state.referrals:
            if ref.wait is not None:
                yield ref.wait, ref
        if self.state.follow_up is not None:
            yield self.state.follow_up, None
        for window in self.state.clinical:
            if window.wait is not None:
                yield window.wait, None

    def _next_rungs(self) -> list[tuple[LadderWait, datetime]]:
        found = []
        for wait, _ in self._open_waits():
            rung = self.ladder.next_rung(wait)
            if rung is not None:
                found.append((wait, rung[1]))
        return found

    def _due_rungs(self, now: datetime) -> list[tuple[int, datetime, Callable[[int], None]]]:
        ladder = self.ladder
        due: list[tuple[int, datetime, Callable[[int], None]]] = []
        for ref in self.state.referrals:
            if ref.wait is not None:
                for level in ladder.due_rungs(ref.wait, now):
                    due.append(
                        (
                            level,
                            ladder.rung_at(ref.wait, level),
                            partial(self.handshake.climb, ref, now=now),
                        )
                    )
        if self.state.follow_up is not None:
            for level in ladder.due_rungs(self.state.follow_up, now):
                due.append(
                    (
                        level,
                        ladder.rung_at(self.state.follow_up, level),
                        partial(self._climb_follow_up, now=now),
                    )
                )
        for window in self.state.clinical:
            if window.wait is not None:
                for level in ladder.due_rungs(window.wait, now):
                    due.append(
                        (
                            level,
                            ladder.rung_at(window.wait, level),
                            partial(self._climb_clinical, window, now=now),
                        )
                    )
        return due

    def _climb_follow_up(self, level: int, now: datetime) -> None:
        wait = self.state.follow_up
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        event = "follow_up_missed" if level == LEVEL_COORDINATOR else RUNG_EVENTS[level]
        self.note(now, event, level=level, detail=FOLLOW_UP_WAIT)
        self.escalate(now, level, wait)

    def _climb_clinical(self, window: ClinicalWindow, level: int, now: datetime) -> None:
        wait = window.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        window.level = level
        self.escalate(now, level, wait)
        if level < LEVEL_REGIONAL:
            self.note(now, RUNG_EVENTS[level], level=level, detail=wait.name)
            return
        window.status = WindowStatus.MISSED
        window.wait = None
        window.escalation_open = True
        window.closed_at = now
        self.note(now, "clinical_window_missed", level=level, detail=wait.name)

    def _open_follow_up(self, start: datetime) -> None:
        interval = self.policy.deadline(FOLLOW_UP_WAIT, self.state.risk)
        if interval is None:  # pragma: no cover - follow_up is a required wait
            self.state.follow_up = None
            return
        self.state.follow_up = self.ladder.wait(FOLLOW_UP_WAIT, start, interval)

    def _open_clinical_windows(self, now: datetime) -> None:
        state = self.state
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
                self.note(now, "clinical_window_missed", detail=f"{name}:before_intake")
                continue
            wait = self.ladder.absolute_wait(name, state.opened_at, closes)
            state.clinical.append(
                ClinicalWindow(item=item, deadline=closes, status=WindowStatus.OPEN, wait=wait)
            )
            self.note(now, "clinical_window_opened", detail=name)

    def _wait_for_target(self, target: str) -> LadderWait | None:
        if target == FOLLOW_UP_WAIT:
            return self.state.follow_up
        if target.startswith(CLINICAL_PREFIX):
            for window in self.state.clinical:
                if clinical_wait_name(window.item) == target:
                    return window.wait
            return None
        ref = self.referral(target)
        return ref.wait if ref is not None else None

    # --- validators: raise before anything is written ------------------------------------

    def _known_referral(self, referral_id: str, sector: Sector) -> ReferralState:
        ref = self.referral(referral_id)
        if ref is None:
            raise reject(ERR_UNKNOWN_REFERRAL, "referral_id: unknown to this journey")
        if ref.sector is not sector:
            raise reject(ERR_INVALID, "sector: does not match the referral")
        return ref

    def validate_decision(self, event: ReferralDecision) -> None:
        if event.event_id in self._answers:
            return
        ref = self._known_referral(event.referral_id, event.sector)
        if (
            ref.status is not ReferralStatus.PENDING
            or self.track(ref.sector).current != ref.referral_id
        ):
            raise reject(ERR_STALE_REFERRAL, f"referral_id: no decision pending ({ref.status})")
        if not event.accepted:
            if _blank(event.decline_reason):
                raise reject(ERR_INVALID, "decline_reason: required when declining")
            if event.decline_reason not in DECLINE_REASONS:
                raise reject(ERR_INVALID, "decline_reason: not a DeclineReason")

    def validate_milestone(self, event: ReferralMilestone) -> None:
        if event.event_id in self._answers:
            return
        ref = self._known_referral(event.referral_id, event.sector)
        if event.milestone is Milestone.STARTED:
            allowed: tuple[ReferralStatus, ...] = (
                ReferralStatus.PENDING,
                ReferralStatus.ACCEPTED,
            )
        else:
            allowed = (ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE)
        if ref.status not in allowed or self.track(ref.sector).current != ref.referral_id:
            raise reject(
                ERR_STALE_REFERRAL, f"referral_id: cannot record {event.milestone} ({ref.status})"
            )

    def validate_follow_up(self, event: FollowUpContact) -> None:
        if event.event_id in self._answers:
            return
        if self.closed:
            raise reject(ERR_JOURNEY_CLOSED, "journey: closed")

    def validate_closure_request(self, event: ClosureRequest) -> None:
        if event.event_id in self._answers:
            return
        if self.closed:
            raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
        if self.state.closure_requested:
            raise reject(ERR_CLOSURE_PENDING, "journey: a closure request is already pending")
        if _blank(event.reason):
            raise reject(ERR_INVALID, "reason: required")

    def validate_reopen(self, event: ReopenRequest) -> None:
        if event.event_id in self._answers:
            return
        if not self.closed:
            raise reject(ERR_NOT_CLOSED, "journey: not closed")

    def validate_reassign(self, event: Reassignment) -> None:
        if event.event_id in self._answers:
            return
        for name in ("provider_id", "coordinator_id", "reason"):
            if _blank(getattr(event, name)):
                raise reject(ERR_INVALID, f"{name}: required")
        if self.closed:
            raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
        ref = self.referral(event.referral_id)
        if ref is None:
            raise reject(ERR_UNKNOWN_REFERRAL, "referral_id: unknown to this journey")
        if not self.handshake.is_reassignable(ref):
            raise reject(
                ERR_STALE_REFERRAL, f"referral_id: not waiting for a provider ({ref.status})"
            )
        if not self.consented(ref.sector) or not self.needs(ref.sector):
            raise reject(ERR_NO_CONSENT, "sector: no consent for this sector")
        if ref.status is ReferralStatus.PENDING and event.provider_id == ref.provider_id:
            raise reject(ERR_INVALID, "provider_id: already assigned to this referral")
        if self.handshake.owed_request(ref.sector) is not None:
            raise reject(ERR_REFERRAL_BUSY, "sector: a request is already under way")

    def validate_extension(self, event: DeadlineExtension) -> None:
        if event.event_id in self._answers:
            return
        for name in ("coordinator_id", "reason", "target"):
            if _blank(getattr(event, name)):
                raise reject(ERR_INVALID, f"{name}: required")
        if event.extend_by_seconds <= 0:
            raise reject(ERR_INVALID, "extend_by_seconds: must be positive")
        if event.extend_by_seconds > MAX_EXTENSION.total_seconds():
            raise reject(ERR_INVALID, "extend_by_seconds: at most 365 days")
        if self.closed:
            raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
        is_wait = event.target == FOLLOW_UP_WAIT or event.target.startswith(CLINICAL_PREFIX)
        if not is_wait and self.referral(event.target) is None:
            raise reject(ERR_UNKNOWN_WAIT, "target: names no referral or wait of this journey")
        if self._wait_for_target(event.target) is None:
            raise reject(ERR_NO_OPEN_WAIT, "target: has no open deadline")

    def validate_closure_decision(self, event: ClosureDecision) -> None:
        if event.event_id in self._answers:
            return
        for name in ("coordinator_id", "reason"):
            if _blank(getattr(event, name)):
                raise reject(ERR_INVALID, f"{name}: required")
        if not self.state.closure_requested:
            raise reject(ERR_NO_CLOSURE_PENDING, "journey: no closure request pending")

    # --- updates: apply (after validation) -------------------------------------------

    def apply_decision(self, event: ReferralDecision, now: datetime) -> None:
        ref = self.referral(event.referral_id)
        assert ref is not None
        reason = event.decline_reason if not event.accepted else None
        self.handshake.decide(ref, accepted=event.accepted, reason=reason, now=now)
        self.tick(now)

    def apply_milestone(self, event: ReferralMilestone, now: datetime) -> None:
        ref = self.referral(event.referral_id)
        assert ref is not None
        detail = as_code(event.detail) if event.detail else None
        self.handshake.milestone(ref, event.milestone, detail, now)
        self.tick(now)

    def apply_consent(self, event: ConsentChange, now: datetime) -> None:
        sector = event.sector
        if event.granted:
            if sector not in self.state.consents:
                self.state.consents.append(sector)
                track = self.track(sector)
                track.tried_provider_ids = []
                track.exhausted_level = 0
                track.exhausted_at = None
            self.note(now, "consent_granted", sector=sector)
        else:
            if sector in self.state.consents:
                self.state.consents.remove(sector)
            event_name = "service_declined" if event.reason == "declined" else "consent_withdrawn"
            self.note(now, event_name, sector=sector)
            self.handshake.withdraw(sector, now)
        self.tick(now)

    def apply_risk(self, event: RiskChange, now: datetime) -> None:
        previous = self.state.risk
        self.state.risk = event.risk
        for ref in self.state.referrals:
            self.handshake.retime(ref, event.risk)
        wait = self.state.follow_up
        if wait is not None:
            interval = self.policy.deadline(FOLLOW_UP_WAIT, event.risk)
            if interval is not None:
                wait.deadline_seconds = interval.total_seconds()
        self.note(now, "risk_reassessed", detail=f"{previous.value}->{event.risk.value}")
        self.tick(now)

    def apply_follow_up(self, event: FollowUpContact, now: datetime) -> None:
        self.note(now, "follow_up_recorded")
        self._open_follow_up(min(utc(event.at), now))
        self.tick(now)

    def apply_medical_care(self, event: MedicalCareConfirmed, now: datetime) -> None:
        detail = event.item.value
        for window in self.state.clinical:
            if window.item is not event.item:
                continue
            if window.status == WindowStatus.OPEN:
                window.status = WindowStatus.MET
                window.wait = None
                window.closed_at = now
                self.note(now, "clinical_window_met", detail=clinical_wait_name(event.item))
                self.tick(now)
                return
            if window.status == WindowStatus.MISSED:
                window.escalation_open = False
                detail = f"{event.item.value}:after_window"
        self.note(now, "medical_care_confirmed", detail=detail)
        self.tick(now)

    def apply_closure_request(self, event: ClosureRequest, now: datetime) -> None:
        self.state.closure_requested = True
        self.note(now, "closure_requested", detail=as_code(event.reason))
        self.tick(now)

    def apply_closure_decision(self, event: ClosureDecision, now: datetime) -> None:
        self.state.closure_requested = False
        if not event.approve:
            self.note(
                now, "closure_refused", detail=as_code(event.reason), actor=event.coordinator_id
            )
            self.tick(now)
            return
        self.handshake.close_for_closure(now)
        self.state.follow_up = None
        for window in self.state.clinical:
            if window.status == WindowStatus.OPEN:
                window.status = WindowStatus.CANCELLED
                window.wait = None
                window.closed_at = now
        self.state.closed_at = now
        self.note(now, "closure_approved", detail=as_code(event.reason), actor=event.coordinator_id)
        self.tick(now)

    def apply_reopen(self, event: ReopenRequest, now: datetime) -> None:
        state = self.state
        state.closed_at = None
        state.closure_requested = False
        if event.risk is not None:
            state.risk = event.risk
        if event.needs:
            state.needs = list(dict.fromkeys(event.needs))
        if event.consents:
            state.consents = list(dict.fromkeys(event.consents))
        for sector in Sector:
            track = self.track(sector)
            in_service = [
                ref
                for ref in state.referrals
                if ref.sector is sector and ref.status is ReferralStatus.IN_SERVICE
            ]
            track.tried_provider_ids = []
            track.exhausted_level = 0
            track.exhausted_at = None
            track.done = False
            track.served = bool(in_service)
            track.current = in_service[-1].referral_id if in_service else None
        self._open_follow_up(now)
        self.note(now, "reopened", detail=state.risk.value)
        self.tick(now)

    def apply_reassign(self, event: Reassignment, now: datetime) -> Action:
        ref = self.referral(event.referral_id)
        assert ref is not None
        self.note(
            now,
            "reassign_requested",
            sector=ref.sector,
            referral_id=ref.referral_id,
            detail=as_code(event.reason),
            actor=event.coordinator_id,
        )
        return self.handshake.reassign(ref, event.provider_id, event_id=event.event_id)

    def apply_extension(self, event: DeadlineExtension, now: datetime) -> None:
        wait = self._wait_for_target(event.target)
        assert wait is not None
        wait.extension_seconds += event.extend_by_seconds
        ref = self.referral(event.target)
        self.note(
            now,
            "deadline_extended",
            sector=ref.sector if ref else None,
            referral_id=ref.referral_id if ref else None,
            detail=f"{wait.name}:+{event.extend_by_seconds}s:{as_code(event.reason)}",
            actor=event.coordinator_id,
        )
        self.tick(now)

    # --- what coordinators see --------------------------------------------------------

    def escalations(self) -> list[EscalationView]:
        views: list[EscalationView] = []
        for ref in self.state.referrals:
            if ref.wait is not None and ref.wait.level > LEVEL_NONE:
                views.append(
                    EscalationView(
                        wait=ref.wait.name,
                        level=ref.wait.level,
                        at=ref.wait.last_rung_at or ref.wait.started_at,
                        referral_id=ref.referral_id,
                        sector=ref.sector,
                    )
                )
        for sector in Sector:
            track = self.track(sector)
            if track.exhausted_level > LEVEL_NONE and track.exhausted_at is not None:
                latest = self.latest_referral(sector)
                views.append(
                    EscalationView(
                        wait=ACCEPT_WAIT[sector],
                        level=track.exhausted_level,
                        at=track.exhausted_at,
                        referral_id=latest.referral_id if latest else None,
                        sector=sector,
                    )
                )
        follow_up = self.state.follow_up
        if follow_up is not None and follow_up.level > LEVEL_NONE:
            views.append(
                EscalationView(
                    wait=FOLLOW_UP_WAIT,
                    level=follow_up.level,
                    at=follow_up.last_rung_at or follow_up.started_at,
                )
            )
        for window in self.state.clinical:
            name = clinical_wait_name(window.item)
            if window.wait is not None and window.wait.level > LEVEL_NONE:
                at = window.wait.last_rung_at or window.wait.started_at
                views.append(EscalationView(wait=name, level=window.wait.level, at=at))
            elif window.escalation_open:
                views.append(
                    EscalationView(
                        wait=name, level=window.level, at=window.closed_at or window.deadline
                    )
                )
        return views

    def escalation_level(self) -> int:
        return max((view.level for view in self.escalations()), default=LEVEL_NONE)

    def pending_sectors(self) -> list[str]:
        pending = []
        for sector in Sector:
            track = self.track(sector)
            live = self.referral(track.current) if track.current else None
            waiting = live is not None and live.status in (
                ReferralStatus.PENDING,
                ReferralStatus.ACCEPTED,
            )
            if (
                waiting
                or self.handshake.owed_request(sector) is not None
                or (track.exhausted_level > LEVEL_NONE and self.wants(sector))
            ):
                pending.append(sector.value)
        return pending

    def next_deadline(self) -> datetime | None:
        if self.closed:
            return None
        times = [due for _, due in self._next_rungs()]
        return min(times) if times else None

    def search_attributes(self) -> dict[str, object]:
        return {
            SA_STAGE: self.state.stage.value,
            SA_RISK: self.state.risk.value,
            SA_REGION: self.state.region,
            SA_ESCALATION_LEVEL: self.escalation_level(),
            SA_PENDING_SECTORS: self.pending_sectors(),
            SA_NEXT_DEADLINE: self.next_deadline(),
        }

    def status(self) -> JourneyStatus:
        state = self.state
        ladder = self.ladder if state.policy is not None else None
        referrals = [
            ReferralView(
                sector=ref.sector,
                referral_id=ref.referral_id,
                provider_id=ref.provider_id,
                status=ref.status,
                deadline=(ladder.deadline(ref.wait) if ladder is not None and ref.wait else None),
                escalation_level=ref.wait.level if ref.wait is not None else ref.final_level,
                requested_at=ref.requested_at,
                decline_reason=ref.decline_reason,
            )
            for ref in state.referrals
        ]
        windows = [
            ClinicalWindowView(
                item=window.item,
                deadline=window.deadline,
                status=window.status,
                escalation_level=window.wait.level if window.wait is not None else window.level,
            )
            for window in state.clinical
        ]
        follow_up = state.follow_up
        return JourneyStatus(
            case_id=state.case_id,
            stage=state.stage,
            risk=state.risk,
            region=state.region,
            referrals=referrals,
            escalations=self.escalations(),
            timeline=list(state.timeline),
            clinical_windows=windows,
            escalation_level=self.escalation_level(),
            next_deadline=self.next_deadline() if ladder is not None else None,
            consents=list(state.consents),
            closure_requested=state.closure_requested,
            next_follow_up=(
                ladder.deadline(follow_up) if ladder is not None and follow_up else None
            ),
        )
