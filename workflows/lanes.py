"""The journey's owed side effects, waiting in their lanes, and its timeline.

Rule objects (the case file, its referral tracks, its clinical windows) never
call anything: they owe actions here and note events in the timeline; the
workflow's lanes (workflows.journey) perform the actions in order, one
activity at a time per collaborator. Both objects write into the journey's
state, so they are carried across continue-as-new with it.

The order of `owe` calls fixes each action's idempotency key and, within a
lane, the order of the activities the journey schedules: it is part of every
recorded history.
"""

from __future__ import annotations

from datetime import datetime

from masar.contract import NotifyEvent, Sector, TimelineEvent
from workflows.state import (
    INTAKE_LANE,
    MAX_TIMELINE,
    NETWORK_LANE,
    Action,
    ActionKind,
    JourneyState,
)


class Timeline:
    """What happened, for coordinators: structured codes only, bounded."""

    def __init__(self, state: JourneyState) -> None:
        self._events = state.timeline

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
        self._events.append(
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
        if len(self._events) > MAX_TIMELINE:
            del self._events[: len(self._events) - MAX_TIMELINE]


class ActionLanes:
    """The actions the journey owes, in order, one lane per collaborator."""

    def __init__(self, state: JourneyState) -> None:
        self._state = state

    @property
    def owed(self) -> list[Action]:
        return self._state.actions

    def owe(
        self, lane: str, kind: ActionKind, *, after: Action | None = None, **fields: object
    ) -> Action:
        """Owe a side effect; its idempotency key is fixed now (workflow id + counter).

        `after`: the action goes right behind that one in its lane (what a
        request's outcome owes is done before anything queued behind it)."""
        state = self._state
        state.seq += 1
        key = f"{state.workflow_id}/{kind}/{state.seq}"
        action = Action(lane=lane, kind=kind, key=key, **fields)  # type: ignore[arg-type]
        if after is not None and after in state.actions:
            state.actions.insert(state.actions.index(after) + 1, action)
        else:
            state.actions.append(action)
        return action

    def owe_escalation(
        self,
        level: int,
        wait: str,
        due_at: datetime,
        *,
        sector: Sector | None = None,
        referral_id: str | None = None,
    ) -> Action:
        """Tell intake (the coordinators' inbox, the case worker's reminders)."""
        return self.owe(
            INTAKE_LANE,
            ActionKind.ESCALATE,
            level=level,
            wait=wait,
            due_at=due_at,
            sector=sector,
            referral_id=referral_id,
        )

    def owe_notice(self, event: NotifyEvent) -> Action | None:
        """Owe `network.notify` in the network's lane; None when already owed."""
        return self.owe_keyed(NETWORK_LANE, ActionKind.NOTIFY, event.idempotency_key, notice=event)

    def owe_keyed(self, lane: str, kind: ActionKind, key: str, **fields: object) -> Action | None:
        """Owe an action whose key the caller fixed (from the event's stable id,
        workflows.notices): the counter of the other actions' keys is left as
        it was, and an action already owed under that key is not owed twice."""
        if self.owed_with_key(key) is not None:
            return None
        action = Action(lane=lane, kind=kind, key=key, **fields)  # type: ignore[arg-type]
        self._state.actions.append(action)
        return action

    def owed_with_key(self, key: str) -> Action | None:
        for action in self._state.actions:
            if action.key == key:
                return action
        return None

    def owed_request(self, sector: Sector) -> Action | None:
        """The request owed to a sector (there is at most one at a time)."""
        for action in self._state.actions:
            if action.lane == sector.value and action.kind == ActionKind.REQUEST:
                return action
        return None

    def next_action(self, lane: str, *, draining: bool) -> Action | None:
        """The next action of a lane, in order — except that one an update
        handler waits for (a coordinator's reassignment) goes first. While
        draining for continue-as-new, only those."""
        first = None
        for action in self._state.actions:
            if action.lane != lane:
                continue
            if action.awaited_by:
                return action
            first = first or action
        return None if draining else first

    def awaited_in(self, lane: str) -> bool:
        return any(a.lane == lane and a.awaited_by for a in self._state.actions)

    def done_with(self, action: Action) -> None:
        if action in self._state.actions:
            self._state.actions.remove(action)
