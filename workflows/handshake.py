"""The referral handshake: one mechanism for every sector.

request (the sector's activity) -> PENDING, under the accept wait's ladder
  -> ACCEPTED, under the milestone wait's ladder (when the policy has one)
     -> IN_SERVICE (milestone STARTED) -> COMPLETED (milestone COMPLETED)
  -> DECLINED (structured reason): the next eligible provider is asked at once
  -> REROUTED: the ladder's escalation rung found another provider
  -> EXPIRED: the ladder's last rung found no provider left
  -> WITHDRAWN: the survivor withdrew her consent (or the case closed)

Only state transitions live here (no Temporal calls): side effects are owed
as actions that the journey's lanes perform, and their results come back
through `request_succeeded` / `request_failed`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from masar.contract import (
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    LEVEL_REMINDER,
    Milestone,
    ReferralCreated,
    ReferralStatus,
    Risk,
    Sector,
)
from workflows.state import (
    ACCEPT_WAIT,
    MILESTONE_WAIT,
    Action,
    ActionKind,
    LadderWait,
    ReferralState,
    RequestPurpose,
    SectorTrack,
)

if TYPE_CHECKING:
    from workflows.casefile import CaseFile

RUNG_EVENTS = {
    LEVEL_REMINDER: "reminder",
    LEVEL_COORDINATOR: "escalated",
    LEVEL_REGIONAL: "regional_escalation",
}


class ReferralHandshake:
    def __init__(self, case: CaseFile) -> None:
        self.case = case

    # --- requests --------------------------------------------------------------

    def owed_request(self, sector: Sector) -> Action | None:
        for action in self.case.state.actions:
            if action.lane == sector.value and action.kind == ActionKind.REQUEST:
                return action
        return None

    def request_new(self, sector: Sector) -> Action:
        self.case.track(sector).contacted = True
        return self.case.owe(sector.value, ActionKind.REQUEST, purpose=RequestPurpose.NEW)

    def request_replacement(self, ref: ReferralState, *, expire_if_none: bool) -> None:
        """Ask for another provider to replace `ref` (the ladder's rungs 2 and 3)."""
        owed = self.owed_request(ref.sector)
        if owed is not None:
            # Already looking (a slow earlier rung): the last rung only makes
            # "none left" final.
            owed.expire_if_none = owed.expire_if_none or expire_if_none
            return
        self.case.owe(
            ref.sector.value,
            ActionKind.REQUEST,
            purpose=RequestPurpose.REROUTE,
            referral_id=ref.referral_id,
            expire_if_none=expire_if_none,
        )

    def reassign(self, ref: ReferralState, provider_id: str, *, event_id: str) -> Action:
        self.case.track(ref.sector).contacted = True
        return self.case.owe(
            ref.sector.value,
            ActionKind.REQUEST,
            purpose=RequestPurpose.REASSIGN,
            referral_id=ref.referral_id,
            provider_id=provider_id,
            awaited_by=event_id,
        )

    def exclusions(self, action: Action) -> list[str]:
        sector = Sector(action.lane)
        excluded = set(self.case.track(sector).tried_provider_ids)
        replaced = self.case.referral(action.referral_id) if action.referral_id else None
        if replaced is not None:
            excluded.add(replaced.provider_id)
        if action.provider_id:
            excluded.discard(action.provider_id)
        return sorted(excluded)

    def is_stale(self, action: Action) -> bool:
        """A request whose reason vanished while it waited in its lane."""
        sector = Sector(action.lane)
        track = self.case.track(sector)
        if not self.case.wants(sector) or self.case.closed:
            return True
        replaced = self.case.referral(action.referral_id) if action.referral_id else None
        if action.purpose == RequestPurpose.NEW:
            return (
                track.current is not None
                or track.exhausted_level > 0
                or not self.case.gate_open(sector)
            )
        if action.purpose == RequestPurpose.REROUTE:
            return (
                replaced is None
                or track.current != replaced.referral_id
                or replaced.status is not ReferralStatus.PENDING
            )
        return replaced is None or not self.is_reassignable(replaced)

    def is_reassignable(self, ref: ReferralState) -> bool:
        track = self.case.track(ref.sector)
        if track.current == ref.referral_id:
            return ref.status is ReferralStatus.PENDING
        # A sector left without a provider: the coordinator rescues its last referral.
        latest = self.case.latest_referral(ref.sector)
        return track.current is None and track.exhausted_level > 0 and latest is ref

    def request_succeeded(self, action: Action, created: ReferralCreated, now: datetime) -> None:
        sector = Sector(action.lane)
        track = self.case.track(sector)
        if created.provider_id not in track.tried_provider_ids:
            track.tried_provider_ids.append(created.provider_id)
        track.attempts += 1
        ref = ReferralState(
            sector=sector,
            referral_id=created.referral_id,
            provider_id=created.provider_id,
            status=ReferralStatus.PENDING,
            requested_at=now,
            attempt=track.attempts,
        )
        self.case.state.referrals.append(ref)
        self.case.note(
            now,
            "referral_requested",
            sector=sector,
            referral_id=ref.referral_id,
            detail=action.purpose,
        )
        replaced = self.case.referral(action.referral_id) if action.referral_id else None
        if not self.case.wants(sector) or self.case.closed:
            # Consent withdrawn (or case closed) while the request was under way.
            self._end(ref, ReferralStatus.WITHDRAWN, now, after=action)
            return
        if track.current is None:
            self._adopt(track, ref, now)
            if action.purpose == RequestPurpose.REASSIGN:
                self.case.note(now, "reassigned", sector=sector, referral_id=ref.referral_id)
            return
        if (
            replaced is not None
            and track.current == replaced.referral_id
            and replaced.status is ReferralStatus.PENDING
        ):
            replaced.wait = None
            replaced.status = ReferralStatus.REROUTED
            self.case.owe(
                sector.value,
                ActionKind.CLOSE,
                referral_id=replaced.referral_id,
                status=ReferralStatus.REROUTED,
                after=action,
            )
            event = "reassigned" if action.purpose == RequestPurpose.REASSIGN else "rerouted"
            self.case.note(
                now, event, sector=sector, referral_id=replaced.referral_id, detail=ref.referral_id
            )
            self._adopt(track, ref, now)
            return
        # The attempt it was to replace moved on meanwhile (its provider
        # accepted): the new referral is not needed.
        self._end(ref, ReferralStatus.REROUTED, now, after=action, event="referral_superseded")

    def request_failed(self, action: Action, error_type: str, now: datetime) -> None:
        """A business failure (no eligible provider, ...): never retried as is."""
        sector = Sector(action.lane)
        track = self.case.track(sector)
        replaced = self.case.referral(action.referral_id) if action.referral_id else None
        if action.purpose == RequestPurpose.REASSIGN:
            self.case.note(now, "reassign_failed", sector=sector, detail=error_type)
            return
        if (
            action.purpose == RequestPurpose.REROUTE
            and replaced is not None
            and track.current == replaced.referral_id
            and replaced.status is ReferralStatus.PENDING
        ):
            if action.expire_if_none:
                self._expire(track, replaced, now)
            else:
                self.case.note(
                    now,
                    "no_alternative",
                    sector=sector,
                    referral_id=replaced.referral_id,
                    detail=error_type,
                )
            return
        if track.current is None and self.case.wants(sector) and not self.case.closed:
            self._exhaust(track, LEVEL_COORDINATOR, error_type, now)

    # --- decisions and milestones -----------------------------------------------

    def decide(
        self, ref: ReferralState, *, accepted: bool, reason: str | None, now: datetime
    ) -> None:
        track = self.case.track(ref.sector)
        if accepted:
            ref.status = ReferralStatus.ACCEPTED
            ref.wait = self._wait(MILESTONE_WAIT[ref.sector], now)
            self.case.note(now, "referral_accepted", sector=ref.sector, referral_id=ref.referral_id)
            return
        ref.status = ReferralStatus.DECLINED
        ref.decline_reason = reason
        ref.wait = None
        track.current = None
        self.case.note(
            now, "referral_declined", sector=ref.sector, referral_id=ref.referral_id, detail=reason
        )

    def milestone(
        self, ref: ReferralState, milestone: Milestone, detail: str | None, now: datetime
    ) -> None:
        track = self.case.track(ref.sector)
        ref.wait = None
        track.served = True
        if milestone is Milestone.STARTED:
            ref.status = ReferralStatus.IN_SERVICE
            event = "service_started"
        else:
            ref.status = ReferralStatus.COMPLETED
            track.done = True
            if track.current == ref.referral_id:
                track.current = None
            event = "service_completed"
        self.case.note(now, event, sector=ref.sector, referral_id=ref.referral_id, detail=detail)

    # --- the ladder ---------------------------------------------------------------

    def climb(self, ref: ReferralState, level: int, now: datetime) -> None:
        """Rung `level` of the referral's open wait is due."""
        wait = ref.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        self.case.note(
            now,
            RUNG_EVENTS[level],
            sector=ref.sector,
            referral_id=ref.referral_id,
            level=level,
            detail=wait.name,
        )
        if level == LEVEL_REMINDER:
            self.case.owe(ref.sector.value, ActionKind.REMIND, referral_id=ref.referral_id)
        else:
            self.case.escalate(now, level, wait, sector=ref.sector, referral_id=ref.referral_id)
        if ref.status is ReferralStatus.PENDING and level >= LEVEL_COORDINATOR:
            self.request_replacement(ref, expire_if_none=level >= LEVEL_REGIONAL)

    def retime(self, ref: ReferralState, risk: Risk) -> None:
        if ref.wait is None:
            return
        deadline = self.case.policy.deadline(ref.wait.name, risk)
        if deadline is not None:
            ref.wait.deadline_seconds = deadline.total_seconds()

    # --- the survivor and the coordinators ---------------------------------------

    def withdraw(self, sector: Sector, now: datetime) -> None:
        """Consent withdrawn: close the open referral at once, purge the sector."""
        track = self.case.track(sector)
        live = self.case.referral(track.current) if track.current else None
        if live is not None:
            self._end(live, ReferralStatus.WITHDRAWN, now)
        track.current = None
        track.exhausted_level = 0
        track.exhausted_at = None
        if track.contacted:
            self.case.owe(sector.value, ActionKind.PURGE)
            track.contacted = False

    def close_for_closure(self, now: datetime) -> None:
        """Closure approved: referrals still waiting for a provider are withdrawn."""
        for sector in Sector:
            track = self.case.track(sector)
            live = self.case.referral(track.current) if track.current else None
            if live is not None and live.status in (
                ReferralStatus.PENDING,
                ReferralStatus.ACCEPTED,
            ):
                self._end(live, ReferralStatus.WITHDRAWN, now)
                track.current = None
            track.exhausted_level = 0
            track.exhausted_at = None

    # --- internals ----------------------------------------------------------------

    def _wait(self, name: str, now: datetime) -> LadderWait | None:
        deadline = self.case.policy.deadline(name, self.case.state.risk)
        if deadline is None:
            return None
        return self.case.ladder.wait(name, now, deadline)

    def _adopt(self, track: SectorTrack, ref: ReferralState, now: datetime) -> None:
        track.current = ref.referral_id
        track.exhausted_level = 0
        track.exhausted_at = None
        track.exhausted_reason = None
        deadline = self.case.policy.deadline(ACCEPT_WAIT[ref.sector], self.case.state.risk)
        if deadline is not None:
            ref.wait = self.case.ladder.wait(ACCEPT_WAIT[ref.sector], now, deadline)

    def _end(
        self,
        ref: ReferralState,
        status: ReferralStatus,
        now: datetime,
        *,
        after: Action | None = None,
        event: str = "referral_withdrawn",
    ) -> None:
        ref.status = status
        ref.wait = None
        self.case.owe(
            ref.sector.value,
            ActionKind.CLOSE,
            referral_id=ref.referral_id,
            status=status,
            after=after,
        )
        self.case.note(now, event, sector=ref.sector, referral_id=ref.referral_id)

    def _expire(self, track: SectorTrack, ref: ReferralState, now: datetime) -> None:
        level = ref.wait.level if ref.wait is not None else LEVEL_REGIONAL
        ref.final_level = level
        self._end(ref, ReferralStatus.EXPIRED, now, event="expired")
        track.current = None
        track.exhausted_level = level
        track.exhausted_at = now
        track.exhausted_reason = "expired"

    def _exhaust(self, track: SectorTrack, level: int, reason: str, now: datetime) -> None:
        track.exhausted_level = level
        track.exhausted_at = now
        track.exhausted_reason = reason
        self.case.note(now, "no_provider", sector=track.sector, level=level, detail=reason)
        self.case.escalate(now, level, ACCEPT_WAIT[track.sector], sector=track.sector)
