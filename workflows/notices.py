"""Telling people: the journey's notifications, through the network service.

Each journey event that needs a person (issue 13) is owed as one call of
`network.notify` (masar.contract.notify) in the network's own lane
(workflows.lanes), so a network that is down never holds up a sector or
intake, and never fails the journey: the lane retries a bounded number of
times, notes "collaborator_unavailable" in the timeline, and tries the same
action again later, like the sectors' lanes.

The event's idempotency key is fixed when it happens, from the workflow id and
the event's stable id in the journey's state (a referral id and its wait and
rung, a transfer id, an update's event id, ...): a retry, a replay or a
continue-as-new sends the same key, and the network stores it once.

Who is told is the network's business (services/network/audience.py); the
journey says what happened and to what:

- a new referral, a reminder rung: the provider's organisation (its staff);
- an escalation rung, a rerouting, a provider-less sector: the region's
  coordinators; the regional rung and an EXPIRED referral: the coordinators
  and the holding organisation's supervisors;
- a clinical window's rungs: the coordinators and the holder's intake officers;
- a decision on a referral, a transfer request and its answer: the
  organisation holding the case (a decision while the journey does not know
  the holder is sent as RESOLVED: it only closes the open items);
- a closure request: the coordinators;
- a protection order breached: the region's coordinators
  and the holding organisation.

A notification that reached nobody (`NotifyResult.undelivered`) is flagged:
timeline event "undelivered" and an escalation in the status until a
coordinator acknowledges the network's escalation of it (or its referral is
over). The escalations' acknowledgements are polled (`network.acknowledgements`,
on the journey's timer, with a backoff and a bounded number of polls) and the
timeline shows each as "acknowledged", with who (the actor) and when.

Only runs that started with the patch `masar-notifications` tell anyone
(`Notices.on`); older histories replay without. Rule objects call this;
nothing here calls Temporal.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from masar.contract import (
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    LEVEL_REMINDER,
    AcknowledgementsQuery,
    AcknowledgementsResult,
    EscalationView,
    NotifyEvent,
    NotifyKind,
    NotifyResult,
    Sector,
)
from workflows.lanes import ActionLanes, Timeline
from workflows.state import (
    LIVE_STATUSES,
    NETWORK_LANE,
    AcknowledgementWatch,
    Action,
    ActionKind,
    JourneyState,
    LadderWait,
    ReferralState,
    TransferState,
    UndeliveredFlag,
)

# Runs started with it tell people; histories recorded before it replay without.
NOTIFICATIONS_PATCH = "masar-notifications"

# The escalations whose acknowledgement the timeline shows.
WATCHED_KINDS = frozenset(
    {
        NotifyKind.ESCALATION,
        NotifyKind.REROUTED,
        NotifyKind.REGIONAL,
        NotifyKind.EXPIRED,
        NotifyKind.CLINICAL_WINDOW,
        NotifyKind.BREACH,
    }
)
# The rung a referral's (or the follow-up's) wait climbed -> what is told.
RUNG_KINDS = {
    LEVEL_REMINDER: NotifyKind.REMINDER,
    LEVEL_COORDINATOR: NotifyKind.ESCALATION,
    LEVEL_REGIONAL: NotifyKind.REGIONAL,
}
# The network's escalation of a notification that reached nobody.
UNDELIVERED_SUFFIX = "#undelivered"
UNDELIVERED_EVENT = "undelivered"
ACKNOWLEDGED_EVENT = "acknowledged"

# Polling for acknowledgements: the first poll after an eighth of the wait's
# deadline (between 1 s and 15 min), doubling up to the deadline (at most
# 6 h); a notification is given up after MAX_POLLS polls without an answer.
MIN_POLL = 1.0
MAX_FIRST_POLL = 15 * 60.0
MAX_POLL = 6 * 3600.0
DEFAULT_SPAN = 3600.0
MAX_POLLS = 40
MAX_WATCHES = 100
MAX_FLAGS = 50

_UNSAFE = re.compile(r"[^A-Za-z0-9:._/-]")


def _safe(part: str) -> str:
    return _UNSAFE.sub("-", part)[:64] or "-"


def _stamp(at: datetime) -> str:
    return str(int(at.timestamp()))


def _sector(value: str) -> Sector | None:
    return Sector(value) if value in {s.value for s in Sector} else None


def _span(wait: LadderWait | None) -> float:
    if wait is None:
        return DEFAULT_SPAN
    return wait.deadline_seconds + wait.extension_seconds


class Notices:
    """The journey's notifications (owed in the network's lane) and what it
    learns back: undelivered ones, acknowledgements."""

    def __init__(self, state: JourneyState, lanes: ActionLanes, timeline: Timeline) -> None:
        self._state = state
        self._lanes = lanes
        self._timeline = timeline
        # Set by the workflow for runs with the patch; False: tell nobody.
        self.on = False

    # --- keys --------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """`<workflow id>/notify/<the event's stable id>`."""
        return "/".join([self._state.workflow_id, "notify", *(_safe(p) for p in parts)])[:180]

    @property
    def _poll_key(self) -> str:
        return f"{self._state.workflow_id}/acknowledgements"

    # --- what happened -----------------------------------------------------------------

    def new_referral(self, ref: ReferralState, now: datetime, deadline: datetime | None) -> None:
        self._tell(
            NotifyKind.NEW_REFERRAL, (ref.referral_id, "new"), now, ref=ref, deadline=deadline
        )

    def referral_rung(
        self, ref: ReferralState, wait: LadderWait, level: int, now: datetime, deadline: datetime
    ) -> None:
        self._tell(
            RUNG_KINDS[level],
            (ref.referral_id, wait.name, str(level)),
            now,
            ref=ref,
            rung=level,
            deadline=deadline,
            span=_span(wait),
        )

    def rerouted(self, replaced: ReferralState, now: datetime, span: float) -> None:
        self._tell(
            NotifyKind.REROUTED,
            (replaced.referral_id, "rerouted"),
            now,
            ref=replaced,
            rung=LEVEL_COORDINATOR,
            span=span,
        )

    def expired(self, ref: ReferralState, now: datetime, span: float) -> None:
        self._tell(
            NotifyKind.EXPIRED,
            (ref.referral_id, "expired"),
            now,
            ref=ref,
            rung=ref.final_level,
            span=span,
        )

    def decided(self, ref: ReferralState, now: datetime) -> None:
        known = bool(self._state.holding_organisation_id)
        kind = NotifyKind.REFERRAL_DECIDED if known else NotifyKind.RESOLVED
        self._tell(kind, (ref.referral_id, "decided"), now, ref=ref)

    def resolved(self, ref: ReferralState, now: datetime, why: str) -> None:
        """Nobody is told: the referral's open items are closed."""
        self._tell(NotifyKind.RESOLVED, (ref.referral_id, why), now, ref=ref)

    def no_provider(self, sector: Sector, level: int, now: datetime) -> None:
        self._tell(
            RUNG_KINDS[level],
            (sector.value, "no_provider", _stamp(now)),
            now,
            sector=sector,
            rung=level,
            deadline=now,
        )

    def follow_up_rung(
        self, wait: LadderWait, level: int, now: datetime, deadline: datetime
    ) -> None:
        if level < LEVEL_COORDINATOR:
            return  # the case worker's own reminder (intake's inbox)
        self._tell(
            RUNG_KINDS[level],
            (wait.name, _stamp(wait.started_at), str(level)),
            now,
            rung=level,
            deadline=deadline,
            span=_span(wait),
        )

    def clinical_rung(
        self, wait: LadderWait, level: int, now: datetime, closes_at: datetime
    ) -> None:
        self._tell(
            NotifyKind.CLINICAL_WINDOW,
            (wait.name, str(level)),
            now,
            rung=level,
            deadline=closes_at,
            span=_span(wait),
        )

    def transfer_requested(self, transfer: TransferState, now: datetime) -> None:
        self._tell(
            NotifyKind.TRANSFER_REQUESTED,
            ("transfer", transfer.transfer_id, "requested", str(transfer.redirects)),
            now,
            transfer=transfer,
        )

    def transfer_answered(self, transfer: TransferState, now: datetime) -> None:
        self._tell(
            NotifyKind.TRANSFER_ANSWERED,
            ("transfer", transfer.transfer_id, "answered"),
            now,
            transfer=transfer,
        )

    def transfer_escalated(
        self, transfer: TransferState, wait: LadderWait, now: datetime, deadline: datetime
    ) -> None:
        self._tell(
            NotifyKind.ESCALATION,
            ("transfer", transfer.transfer_id, str(transfer.redirects), str(LEVEL_COORDINATOR)),
            now,
            rung=LEVEL_COORDINATOR,
            deadline=deadline,
            span=_span(wait),
            transfer=transfer,
        )

    def breach(self, ref: ReferralState, event_id: str, now: datetime) -> None:
        """A protection order was breached: the region's coordinators and the
        holding organisation."""
        self._tell(NotifyKind.BREACH, (ref.referral_id, "breach", event_id), now, ref=ref)

    def closure_requested(self, event_id: str, now: datetime) -> None:
        self._tell(NotifyKind.CLOSURE_REQUESTED, ("closure", event_id), now)

    def case_closed(self, event_id: str, now: datetime) -> None:
        """Nobody is told: every open item of the case is closed."""
        self._tell(NotifyKind.RESOLVED, ("closure", event_id, "approved"), now)

    def _tell(
        self,
        kind: NotifyKind,
        subject: tuple[str, ...],
        now: datetime,
        *,
        ref: ReferralState | None = None,
        sector: Sector | None = None,
        rung: int = 0,
        deadline: datetime | None = None,
        transfer: TransferState | None = None,
        span: float = DEFAULT_SPAN,
    ) -> None:
        if not self.on:
            return
        state = self._state
        holding = state.holding_organisation_id
        if transfer is not None:
            holding = transfer.from_organisation_id
        sector = ref.sector if ref is not None else sector
        event = NotifyEvent(
            kind=kind,
            idempotency_key=self.key(*subject),
            case_id=state.case_id,
            region=state.region,
            referral_id=ref.referral_id if ref is not None else "",
            sector=sector.value if sector is not None else "",
            provider_organisation_id=ref.organisation_id if ref is not None else "",
            holding_organisation_id=holding,
            rung=rung,
            deadline=deadline,
            transfer_id=transfer.transfer_id if transfer is not None else "",
            receiving_organisation_id=transfer.to_organisation_id if transfer is not None else "",
            occurred_at=now,
        )
        if self._lanes.owe_notice(event) is None:
            return
        if kind in WATCHED_KINDS:
            self._watch(
                event.idempotency_key,
                kind.value,
                now,
                span,
                referral_id=event.referral_id or None,
                sector=sector,
                level=rung,
            )

    # --- what the network answered ------------------------------------------------------

    def delivered(self, action: Action, result: NotifyResult, now: datetime) -> None:
        event = action.notice
        if event is None:
            return
        for watch in self._state.watches:
            if watch.key == event.idempotency_key:
                self._poll_after(now, watch.first_seconds)
        if result.undelivered:
            self._flag(event, now)

    def _flag(self, event: NotifyEvent, now: datetime) -> None:
        state = self._state
        if any(flag.key == event.idempotency_key for flag in state.undelivered):
            return
        level = max(event.rung, LEVEL_COORDINATOR)
        kind = NotifyKind(event.kind).value
        sector = _sector(event.sector)
        flag = UndeliveredFlag(
            key=event.idempotency_key,
            kind=kind,
            at=now,
            level=level,
            referral_id=event.referral_id or None,
            sector=sector,
        )
        state.undelivered.append(flag)
        del state.undelivered[:-MAX_FLAGS]
        self._timeline.note(
            now,
            UNDELIVERED_EVENT,
            sector=sector,
            referral_id=flag.referral_id,
            level=level,
            detail=kind,
        )
        # Its escalation to the coordinators: the timeline shows who saw it.
        ref = next((r for r in state.referrals if r.referral_id == event.referral_id), None)
        span = _span(ref.wait) if ref is not None and ref.wait is not None else DEFAULT_SPAN
        self._watch(
            flag.key + UNDELIVERED_SUFFIX,
            f"{UNDELIVERED_EVENT}:{kind}",
            now,
            span,
            referral_id=flag.referral_id,
            sector=sector,
            level=level,
        )

    # --- acknowledgements -----------------------------------------------------------------

    def _watch(
        self,
        key: str,
        kind: str,
        now: datetime,
        span: float,
        *,
        referral_id: str | None,
        sector: Sector | None,
        level: int,
    ) -> None:
        state = self._state
        if any(watch.key == key for watch in state.watches):
            return
        first = min(max(span / 8, MIN_POLL), MAX_FIRST_POLL)
        state.watches.append(
            AcknowledgementWatch(
                key=key,
                kind=kind,
                since=now,
                first_seconds=first,
                cap_seconds=min(max(span, first), MAX_POLL),
                referral_id=referral_id,
                sector=sector,
                level=level,
            )
        )
        del state.watches[:-MAX_WATCHES]
        if self._lanes.owed_with_key(key) is None:
            self._poll_after(now, first)
        # else: once the network has it (`delivered`).

    def _poll_after(self, now: datetime, seconds: float) -> None:
        due = now + timedelta(seconds=seconds)
        current = self._state.acknowledgements_due_at
        self._state.acknowledgements_due_at = due if current is None else min(current, due)

    def next_poll(self) -> datetime | None:
        """When to ask the network again (None: nothing to ask, or a poll is
        owed already)."""
        if not self.on or not self._state.watches:
            return None
        if self._lanes.owed_with_key(self._poll_key) is not None:
            return None
        return self._state.acknowledgements_due_at

    def tick(self, now: datetime) -> None:
        """Owe a poll when one is due (one at a time, in the network's lane)."""
        due = self.next_poll()
        if due is None or now < due or self._lanes.owed_with_key(self._poll_key) is not None:
            return
        if not self.query().idempotency_keys:
            # Every watched notification still waits in the lane: polls
            # start again once the network has one (`delivered`).
            self._state.acknowledgements_due_at = None
            return
        self._state.acknowledgements_due_at = None
        self._lanes.owe_keyed(NETWORK_LANE, ActionKind.ACKNOWLEDGEMENTS, self._poll_key)

    def query(self) -> AcknowledgementsQuery:
        """The watched notifications the network has (sent already)."""
        keys = [
            watch.key
            for watch in self._state.watches
            if self._lanes.owed_with_key(watch.key.removesuffix(UNDELIVERED_SUFFIX)) is None
        ]
        return AcknowledgementsQuery(case_id=self._state.case_id, idempotency_keys=keys)

    def acknowledged(self, result: AcknowledgementsResult, now: datetime) -> None:
        state = self._state
        watches = {watch.key: watch for watch in state.watches}
        seen: set[str] = set()
        noted: set[tuple[str, str]] = set()
        for ack in sorted(result.acknowledgements, key=lambda a: (a.acknowledged_at, a.account_id)):
            watch = watches.get(ack.idempotency_key)
            if watch is None or (watch.key, ack.account_id) in noted:
                continue
            noted.add((watch.key, ack.account_id))
            seen.add(watch.key)
            self._timeline.note(
                ack.acknowledged_at,
                ACKNOWLEDGED_EVENT,
                sector=watch.sector,
                referral_id=watch.referral_id,
                level=watch.level,
                detail=watch.kind,
                actor=ack.account_id,
            )
        for key in result.undelivered:
            watch = watches.get(key)
            if watch is not None and not key.endswith(UNDELIVERED_SUFFIX):
                self._flag_late(watch, now)
        cleared = {key.removesuffix(UNDELIVERED_SUFFIX) for key in seen}
        state.undelivered = [f for f in state.undelivered if f.key not in cleared]
        kept = []
        for watch in state.watches:
            if watch.key in seen:
                continue
            watch.polls += 1
            if watch.polls < MAX_POLLS:
                kept.append(watch)
        state.watches = kept
        self._reschedule(now)

    def _flag_late(self, watch: AcknowledgementWatch, now: datetime) -> None:
        """Found undelivered later (every channel failed past the delay)."""
        self._flag(
            NotifyEvent(
                kind=NotifyKind(watch.kind),
                idempotency_key=watch.key,
                case_id=self._state.case_id,
                region=self._state.region,
                referral_id=watch.referral_id or "",
                sector=watch.sector.value if watch.sector is not None else "",
                rung=watch.level,
            ),
            now,
        )

    def _reschedule(self, now: datetime) -> None:
        watches = self._state.watches
        if not watches:
            self._state.acknowledgements_due_at = None
            return
        delay = min(min(w.first_seconds * 2.0 ** min(w.polls, 30), w.cap_seconds) for w in watches)
        self._state.acknowledgements_due_at = now + timedelta(seconds=delay)

    # --- the status ------------------------------------------------------------------------

    def escalation_views(self) -> list[EscalationView]:
        """Notifications that reached nobody, while their referral is live."""
        views = []
        for flag in self._state.undelivered:
            if flag.referral_id is not None:
                ref = next(
                    (r for r in self._state.referrals if r.referral_id == flag.referral_id), None
                )
                if ref is None or ref.status not in LIVE_STATUSES:
                    continue
            views.append(
                EscalationView(
                    wait=f"{UNDELIVERED_EVENT}:{flag.kind}",
                    level=flag.level,
                    at=flag.at,
                    referral_id=flag.referral_id,
                    sector=flag.sector,
                )
            )
        return views
