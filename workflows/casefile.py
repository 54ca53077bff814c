"""The case file: everything the journey decides, without Temporal.

`CaseFile` holds the journey's state and drives its rule objects: one
`ReferralTrack` per sector (workflows.tracks), the clinical windows
(workflows.clinical) and the follow-up wait. It decides which sectors to refer
to, the stage, closure and reopening, and which rungs of the escalation
ladder are due (the case's transfers between organisations, workflows.transfers,
included); it applies validated updates (workflows.validation checks
them) and deduplicates them by event id. What coordinators see is read from
it by workflows.view.

Dependencies point one way: the case file calls its tracks, a track never
calls back; both owe side effects as actions in workflows.lanes, which the
workflow's lanes perform. Time comes in as `now` (the workflow's clock), so
everything here is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from masar.contract import (
    LEVEL_COORDINATOR,
    SECTOR_NEEDS,
    ClinicalCareRecorded,
    ClosureDecision,
    ClosureRequest,
    ConsentChange,
    DeadlineExtension,
    FollowUpContact,
    JourneyInput,
    MedicalCareConfirmed,
    ProtectionOrderBreach,
    Reassignment,
    ReferralCreated,
    ReferralDecision,
    ReferralMilestone,
    ReferralStatus,
    ReopenRequest,
    Risk,
    RiskChange,
    Sector,
    Stage,
    TransferDecision,
    TransferRedirect,
    TransferRequest,
    UpdateResult,
)
from workflows.care import CareDesk
from workflows.clinical import ClinicalWindows
from workflows.ladder import RUNG_EVENTS, EscalationLadder, SlaTerms
from workflows.lanes import ActionLanes, Timeline
from workflows.notices import Notices
from workflows.policy import SlaPolicy
from workflows.state import (
    CARE_SECTORS,
    CLINICAL_PREFIX,
    FOLLOW_UP_WAIT,
    MAX_ANSWERS,
    VISIT_PREFIX,
    Action,
    ActionKind,
    HealthVisit,
    JourneyState,
    LadderWait,
    ReferralState,
    TrackState,
    TransferState,
    clinical_wait_name,
)
from workflows.tracks import ReferralTrack
from workflows.transfers import TransferDesk
from workflows.visits import FOLLOWING, HealthVisits

# A due rung: (level, when it fell due, what climbs it).
DueRung = tuple[int, datetime, Callable[[int], None]]


def raise_risk(current: Risk, assessed: Risk | None) -> Risk:
    """A breach's risk: one level up from `current` (critical stays
    critical), or `assessed` when that is higher; never lower."""
    levels = sorted(Risk, key=lambda risk: risk.rank)
    raised = levels[min(current.rank + 1, len(levels) - 1)]
    if assessed is not None and assessed.rank > raised.rank:
        return assessed
    return raised


def utc(value: datetime) -> datetime:
    """Datetimes from outside without a zone are taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def as_code(text: str) -> str:
    """What the timeline keeps of a reason: a structured code as given, never
    free text (which might name someone or tell her story)."""
    text = text.strip()
    return text if _CODE.match(text) else "free_text"


class CaseFile:
    def __init__(self, state: JourneyState) -> None:
        self.state = state
        self.lanes = ActionLanes(state)
        self.timeline = Timeline(state)
        self.notices = Notices(state, self.lanes, self.timeline)
        # Every sector has its track; a state carried from before a sector
        # existed (health, psychosocial) gets an empty one.
        self.tracks: dict[Sector, ReferralTrack] = {
            sector: ReferralTrack(
                sector,
                state.tracks.setdefault(sector.value, TrackState(sector=sector)),
                state.referrals,
                self.lanes,
                self.timeline,
                self.notices,
            )
            for sector in Sector
        }
        self.clinical = ClinicalWindows(state, self.lanes, self.timeline, self.notices)
        self.visits = HealthVisits(state, self.lanes, self.timeline, self.notices)
        self.care_desk = CareDesk(state, self.lanes, self.timeline, self.clinical, self.visits)
        self.transfers = TransferDesk(state, self.lanes, self.timeline, self.notices)
        self._answers = {answer.event_id: answer for answer in state.answers}
        # Set by the workflow for runs started with the care patch (CARE_PATCH):
        # the health and psychosocial sectors, the medical referral's clinical
        # windows and visits, breaches. False: the journey as it was before.
        self.care = False

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
            health=inp.health,
            psychosocial=inp.psychosocial,
            max_history_events=inp.max_history_events,
            holding_organisation_id=inp.holding_organisation_id,
            tracks={sector.value: TrackState(sector=sector) for sector in Sector},
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

    def terms(self) -> SlaTerms:
        """The terms new waits open under: the policy at the current risk."""
        return SlaTerms(policy=self.policy, risk=self.state.risk)

    def terms_for(self, sector: Sector) -> SlaTerms:
        """A sector's terms: the medical referral's waits are squeezed while a
        clinical window is open (their last rung before it closes)."""
        if self.care and sector is Sector.HEALTH:
            return replace(self.terms(), squeeze_until=self.care_desk.squeeze_until())
        return self.terms()

    # --- lookups ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state.closed_at is not None

    def progress(self, sector: Sector) -> TrackState:
        return self.tracks[sector].progress

    def referral(self, referral_id: str | None) -> ReferralState | None:
        for ref in self.state.referrals:
            if ref.referral_id == referral_id:
                return ref
        return None

    def needs(self, sector: Sector) -> bool:
        return SECTOR_NEEDS[sector] in self.state.needs

    def consented(self, sector: Sector) -> bool:
        return sector in self.state.consents

    def wants(self, sector: Sector) -> bool:
        """The journey still has business with this sector in this cycle."""
        if sector in CARE_SECTORS and not self.care:
            return False  # a run started before the care sectors: never referred to
        return self.needs(sector) and self.consented(sector) and not self.progress(sector).done

    def wanted_now(self, sector: Sector) -> bool:
        """Wanted, and the case is open: a request for it is still worth making."""
        return self.wants(sector) and not self.closed

    def safe(self) -> bool:
        """Placed in a shelter, or no shelter needed or consented to."""
        shelter = Sector.SHELTER
        return (
            not self.needs(shelter) or not self.consented(shelter) or self.progress(shelter).served
        )

    def gate_open(self, sector: Sector) -> bool:
        # Recovery (employment) starts once the survivor is safe.
        return sector is not Sector.EMPLOYMENT or self.safe()

    # --- owed actions: what the workflow's lanes report back ---------------------------

    def is_stale(self, action: Action) -> bool:
        """The reason for an owed action vanished while it waited in its lane."""
        if action.kind == ActionKind.REQUEST:
            sector = Sector(action.lane)
            return self.tracks[sector].is_stale(
                action, wanted=self.wanted_now(sector), gate_open=self.gate_open(sector)
            )
        if action.kind == ActionKind.REMIND:
            ref = self.referral(action.referral_id)
            if ref is not None and action.wait.startswith(VISIT_PREFIX):
                return ref.status not in FOLLOWING  # a follow-up visit falls due
            return ref is None or ref.status not in (
                ReferralStatus.PENDING,
                ReferralStatus.ACCEPTED,
            )
        if action.kind == ActionKind.TRANSFER_RUNG:
            return self.transfers.is_stale(action)
        if action.kind == ActionKind.CERTIFICATE:
            legal = self.tracks[Sector.LEGAL].live()
            return self.care_desk.is_stale(action, legal, consented=self.consented(Sector.LEGAL))
        return False

    def exclusions(self, action: Action) -> list[str]:
        """Providers a request must not go to (already tried, or the one replaced)."""
        return self.tracks[Sector(action.lane)].exclusions(action)

    def request_succeeded(self, action: Action, created: ReferralCreated, now: datetime) -> None:
        sector = Sector(action.lane)
        self.tracks[sector].request_succeeded(
            action, created, now, self.terms_for(sector), wanted=self.wanted_now(sector)
        )

    def request_failed(self, action: Action, error_type: str, now: datetime) -> None:
        sector = Sector(action.lane)
        self.tracks[sector].request_failed(action, error_type, now, wanted=self.wanted_now(sector))

    # --- answers (deduplication) ------------------------------------------------------

    def is_answered(self, event_id: str) -> bool:
        return event_id in self._answers

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
        self.timeline.note(now, "journey_opened", detail=state.risk.value)
        self.clinical.open(now, self.ladder)
        self._open_follow_up(now)
        state.started = True
        self.tick(now)

    def tick(self, now: datetime) -> None:
        """Climb every rung that is due, then plan referrals and the stage."""
        for level, _, climb in sorted(self._due_rungs(now), key=lambda due: (due[1], due[0])):
            climb(level)
        self.plan()
        if self.care:
            legal = self.tracks[Sector.LEGAL].live()
            self.care_desk.tell_legal_aid(legal, consented=self.consented(Sector.LEGAL))
        self.refresh_stage(now)
        self.notices.tick(now)

    def plan(self) -> None:
        if self.closed or not self.state.started:
            return
        for sector, track in self.tracks.items():
            progress = track.progress
            if (
                self.wants(sector)
                and self.gate_open(sector)
                and progress.current is None
                and progress.exhausted_level == 0
                and track.owed_request() is None
            ):
                track.request_new()

    def computed_stage(self) -> Stage:
        if self.closed:
            return Stage.CLOSED
        if self.state.closure_requested:
            return Stage.CLOSURE_PENDING
        if not self.state.started:
            return Stage.TRIAGE
        if self.wants(Sector.SHELTER) and not self.progress(Sector.SHELTER).served:
            return Stage.SAFETY
        if self.care and self.immediate_care():
            return Stage.SAFETY  # immediate care goes alongside safety
        if self.wants(Sector.EMPLOYMENT):
            return Stage.RECOVERY
        if self.wants(Sector.LEGAL):
            return Stage.JUSTICE
        if self.wants(Sector.PSYCHOSOCIAL) or self.wants(Sector.HEALTH):
            return Stage.RECOVERY  # care goes on alongside justice and recovery
        return Stage.FOLLOW_UP

    def immediate_care(self) -> bool:
        """She has not been seen by the care unit yet and a clinical window is open."""
        health = Sector.HEALTH
        return (
            self.wants(health)
            and not self.progress(health).served
            and self.clinical.earliest_open() is not None
        )

    def refresh_stage(self, now: datetime) -> None:
        stage = self.computed_stage()
        if stage is not self.state.stage:
            self.state.stage = stage
            self.timeline.note(now, "stage_changed", detail=stage.value)

    def next_wakeup(self) -> datetime | None:
        poll = self.notices.next_poll()
        if self.closed:
            closed_at = self.state.closed_at
            assert closed_at is not None
            end = closed_at + self.policy.closed_retention
            return end if poll is None else min(end, poll)
        times = [due for _, due in self.next_rungs()]
        if poll is not None:
            times.append(poll)
        return min(times) if times else None

    def finished(self, now: datetime) -> bool:
        """Closed and never reopened within the retention period."""
        closed_at = self.state.closed_at
        return closed_at is not None and now >= closed_at + self.policy.closed_retention

    # --- waits and rungs -------------------------------------------------------------

    def _open_waits(self) -> Iterator[LadderWait]:
        for ref in self.state.referrals:
            if ref.wait is not None:
                yield ref.wait
        if self.state.follow_up is not None:
            yield self.state.follow_up
        for window in self.state.clinical:
            if window.wait is not None:
                yield window.wait
        for _, wait in self.transfers.waits():
            yield wait
        for _, wait in self.visits.waits():
            yield wait

    def next_rungs(self) -> list[tuple[LadderWait, datetime]]:
        """Each open wait with the time of its next rung."""
        found = []
        for wait in self._open_waits():
            rung = self.ladder.next_rung(wait)
            if rung is not None:
                found.append((wait, rung[1]))
        return found

    def _due_rungs(self, now: datetime) -> list[DueRung]:
        ladder = self.ladder
        terms = self.terms()
        due: list[DueRung] = []

        def add(wait: LadderWait, climb: Callable[..., None]) -> None:
            for level in ladder.due_rungs(wait, now):
                due.append((level, ladder.rung_at(wait, level), climb))

        for ref in self.state.referrals:
            if ref.wait is not None:
                add(ref.wait, partial(self._climb_referral, ref, now=now, terms=terms))
        if self.state.follow_up is not None:
            add(self.state.follow_up, partial(self._climb_follow_up, now=now))
        for window in self.state.clinical:
            if window.wait is not None:
                add(window.wait, partial(self.clinical.climb, window, now=now, ladder=ladder))
        for transfer, wait in self.transfers.waits():
            add(wait, partial(self._climb_transfer, transfer, now=now, ladder=ladder))
        for visit, wait in self.visits.waits():
            add(wait, partial(self._climb_visit, visit, now=now, ladder=ladder))
        return due

    def _climb_visit(
        self, visit: HealthVisit, level: int, *, now: datetime, ladder: EscalationLadder
    ) -> None:
        self.visits.climb(visit, level, now, ladder, self.referral(visit.referral_id))

    def _climb_transfer(
        self, transfer: TransferState, level: int, *, now: datetime, ladder: EscalationLadder
    ) -> None:
        self.transfers.climb(transfer, level, now, ladder)

    def _climb_referral(
        self, ref: ReferralState, level: int, *, now: datetime, terms: SlaTerms
    ) -> None:
        self.tracks[ref.sector].climb(ref, level, now, terms)

    def _climb_follow_up(self, level: int, now: datetime) -> None:
        wait = self.state.follow_up
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        event = "follow_up_missed" if level == LEVEL_COORDINATOR else RUNG_EVENTS[level]
        self.timeline.note(now, event, level=level, detail=FOLLOW_UP_WAIT)
        self.lanes.owe_escalation(level, wait.name, self.ladder.deadline(wait))
        self.notices.follow_up_rung(wait, level, now, self.ladder.deadline(wait))

    def _open_follow_up(self, start: datetime) -> None:
        interval = self.policy.deadline(FOLLOW_UP_WAIT, self.state.risk)
        if interval is None:  # pragma: no cover - follow_up is a required wait
            self.state.follow_up = None
            return
        self.state.follow_up = self.ladder.wait(FOLLOW_UP_WAIT, start, interval)

    def wait_for_target(self, target: str) -> LadderWait | None:
        """The open wait a coordinator's extension names (a referral id, a
        transfer id or a wait name)."""
        transfer = self.transfers.find(target)
        if transfer is not None:
            return transfer.wait
        if target == FOLLOW_UP_WAIT:
            return self.state.follow_up
        if target.startswith(CLINICAL_PREFIX):
            for window in self.state.clinical:
                if clinical_wait_name(window.item) == target:
                    return window.wait
            return None
        if target.startswith(VISIT_PREFIX):
            visit = self.visits.by_wait(target)
            return visit.wait if visit is not None else None
        ref = self.referral(target)
        return ref.wait if ref is not None else None

    # --- updates: apply (after workflows.validation has checked them) -----------------

    def apply_decision(self, event: ReferralDecision, now: datetime) -> None:
        ref = self.referral(event.referral_id)
        assert ref is not None
        reason = event.decline_reason if not event.accepted else None
        terms = self.terms_for(ref.sector)
        self.tracks[ref.sector].decide(
            ref, accepted=event.accepted, reason=reason, now=now, terms=terms
        )
        if self.care and event.accepted and ref.sector is Sector.HEALTH:
            self.visits.schedule(ref, now, terms)
        self.tick(now)

    def apply_milestone(self, event: ReferralMilestone, now: datetime) -> None:
        ref = self.referral(event.referral_id)
        assert ref is not None
        detail = as_code(event.detail) if event.detail else None
        self.tracks[ref.sector].milestone(ref, event.milestone, detail, now)
        self.tick(now)

    def apply_consent(self, event: ConsentChange, now: datetime) -> None:
        sector = event.sector
        track = self.tracks[sector]
        if event.granted:
            if sector not in self.state.consents:
                self.state.consents.append(sector)
                track.start_afresh()
            self.timeline.note(now, "consent_granted", sector=sector)
        else:
            if sector in self.state.consents:
                self.state.consents.remove(sector)
            event_name = "service_declined" if event.reason == "declined" else "consent_withdrawn"
            self.timeline.note(now, event_name, sector=sector)
            track.withdraw(now, withdrawn_at=event.at)
            if self.care and sector is Sector.HEALTH:
                self.visits.cancel(now)
        self.tick(now)

    def apply_risk(self, event: RiskChange, now: datetime) -> None:
        previous = self.state.risk
        self.set_risk(event.risk)
        self.timeline.note(now, "risk_reassessed", detail=f"{previous.value}->{event.risk.value}")
        self.tick(now)

    def set_risk(self, risk: Risk) -> None:
        """The case's risk is now `risk`: every open wait keeps its start and
        takes the deadline of the new level."""
        self.state.risk = risk
        terms = self.terms()
        for ref in self.state.referrals:
            self.tracks[ref.sector].retime(ref, self.terms_for(ref.sector))
        wait = self.state.follow_up
        if wait is not None:
            interval = terms.deadline(FOLLOW_UP_WAIT)
            if interval is not None:
                wait.deadline_seconds = interval.total_seconds()
        self.transfers.retime(terms)

    def apply_follow_up(self, event: FollowUpContact, now: datetime) -> None:
        self.timeline.note(now, "follow_up_recorded")
        self._open_follow_up(min(utc(event.at), now))
        self.tick(now)

    def apply_medical_care(self, event: MedicalCareConfirmed, now: datetime) -> None:
        self.clinical.confirm_care(event.item, now)
        self.tick(now)

    def apply_clinical_care(self, event: ClinicalCareRecorded, now: datetime) -> None:
        ref = self.referral(event.referral_id)
        assert ref is not None
        self.care_desk.record(event, ref, now)
        self.tick(now)

    def apply_breach(self, event: ProtectionOrderBreach, now: datetime) -> None:
        """Legal aid recorded a breach of a protection order: the risk goes
        up, never down (one level, or to the level legal aid assessed when
        higher), every open wait takes the new level's deadline counted from
        when it opened (as a risk reassessment does), the holding
        organisation and the region's coordinators are told, and when she
        consented to shelter and has no active placement a new shelter
        referral is asked for at once."""
        ref = self.referral(event.referral_id)
        assert ref is not None
        previous = self.state.risk
        raised = raise_risk(previous, event.risk)
        self.set_risk(raised)
        self.timeline.note(
            now,
            "protection_order_breached",
            sector=ref.sector,
            referral_id=ref.referral_id,
            detail=f"{previous.value}->{raised.value}",
        )
        self.notices.breach(ref, event.event_id, now)
        if self.consented(Sector.SHELTER) and not self.placed():
            self._shelter_again()
        self.tick(now)

    def placed(self) -> bool:
        """She is in a shelter now (checked in, not yet out)."""
        return any(
            ref.sector is Sector.SHELTER and ref.status is ReferralStatus.IN_SERVICE
            for ref in self.state.referrals
        )

    def _shelter_again(self) -> None:
        """Shelter is needed (again): a referral under way goes on (its wait
        re-timed); otherwise the plan asks for a new one at once, every
        shelter eligible again."""
        need = SECTOR_NEEDS[Sector.SHELTER]
        if need not in self.state.needs:
            self.state.needs.append(need)
        track = self.tracks[Sector.SHELTER]
        track.progress.done = False
        track.progress.served = False
        if track.progress.current is None:
            track.start_afresh()

    def apply_closure_request(self, event: ClosureRequest, now: datetime) -> None:
        self.state.closure_requested = True
        self.timeline.note(now, "closure_requested", detail=as_code(event.reason))
        self.notices.closure_requested(event.event_id, now)
        self.tick(now)

    def apply_closure_decision(self, event: ClosureDecision, now: datetime) -> None:
        self.state.closure_requested = False
        if not event.approve:
            self.timeline.note(
                now, "closure_refused", detail=as_code(event.reason), actor=event.coordinator_id
            )
            self.tick(now)
            return
        for track in self.tracks.values():
            track.close_for_closure(now)
        self.state.follow_up = None
        self.clinical.cancel_open(now)
        self.visits.cancel(now)
        self.state.closed_at = now
        self.timeline.note(
            now, "closure_approved", detail=as_code(event.reason), actor=event.coordinator_id
        )
        self.notices.case_closed(event.event_id, now)
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
        for track in self.tracks.values():
            track.reopen()
        self._open_follow_up(now)
        self.timeline.note(now, "reopened", detail=state.risk.value)
        self.tick(now)

    def apply_reassign(self, event: Reassignment, now: datetime) -> Action:
        ref = self.referral(event.referral_id)
        assert ref is not None
        self.timeline.note(
            now,
            "reassign_requested",
            sector=ref.sector,
            referral_id=ref.referral_id,
            detail=as_code(event.reason),
            actor=event.coordinator_id,
        )
        return self.tracks[ref.sector].reassign(ref, event.provider_id, event_id=event.event_id)

    def apply_extension(self, event: DeadlineExtension, now: datetime) -> None:
        wait = self.wait_for_target(event.target)
        assert wait is not None
        wait.extension_seconds += event.extend_by_seconds
        ref = self.referral(event.target)
        self.timeline.note(
            now,
            "deadline_extended",
            sector=ref.sector if ref else None,
            referral_id=ref.referral_id if ref else None,
            detail=f"{wait.name}:+{event.extend_by_seconds}s:{as_code(event.reason)}",
            actor=event.coordinator_id,
        )
        self.tick(now)

    # --- transfers between organisations (workflows.transfers) ------------------------

    def apply_transfer_request(self, event: TransferRequest, now: datetime) -> None:
        self.transfers.request(event, now, self.terms())
        self.tick(now)

    def apply_transfer_decision(self, event: TransferDecision, now: datetime) -> None:
        self.transfers.decide(event, now)
        self.tick(now)

    def apply_transfer_redirect(self, event: TransferRedirect, now: datetime) -> None:
        self.transfers.redirect(event, now, self.terms())
        self.tick(now)
