"""A referral track: the journey's dealings with one sector, one mechanism for all.

request (the sector's activity) -> PENDING, under the accept wait's ladder
  -> ACCEPTED, under the milestone wait's ladder (when the policy has one)
     -> IN_SERVICE (milestone STARTED) -> COMPLETED (milestone COMPLETED)
  -> DECLINED (structured reason): the next eligible provider is asked at once
  -> REROUTED: the ladder's escalation rung found another provider
  -> EXPIRED: the ladder's last rung found no provider left
  -> WITHDRAWN: the survivor withdrew her consent (or the case closed)

The case file (workflows.casefile) owns one `ReferralTrack` per sector and
drives it; a track never reaches back into the case file. What it needs to
know about the case — whether the journey still wants the sector, the SLA
terms in force — comes in as arguments, and what it decides goes out as owed
actions (workflows.lanes) and timeline events. Only state transitions live
here (no Temporal calls): the journey's lanes perform the actions and hand
request outcomes back through the case file.

(The sector side of the same handshake, in the sector services, is the
referral kit's `SectorHandshake`.)
"""

from __future__ import annotations

from datetime import datetime

from masar.contract import (
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    LEVEL_REMINDER,
    Milestone,
    ReferralCreated,
    ReferralStatus,
    Sector,
)
from workflows.ladder import RUNG_EVENTS, SlaTerms
from workflows.lanes import ActionLanes, Timeline
from workflows.notices import Notices
from workflows.state import (
    ACCEPT_WAIT,
    MILESTONE_WAIT,
    Action,
    ActionKind,
    ReferralState,
    RequestPurpose,
    TrackState,
)


class ReferralTrack:
    """One sector's referrals: requests, decisions, milestones and their ladder."""

    def __init__(
        self,
        sector: Sector,
        progress: TrackState,
        referrals: list[ReferralState],
        lanes: ActionLanes,
        timeline: Timeline,
        notices: Notices,
    ) -> None:
        self.sector = sector
        self.progress = progress
        self._referrals = referrals  # every sector's, in request order (shared)
        self._lanes = lanes
        self._timeline = timeline
        self._notices = notices

    # --- lookups -------------------------------------------------------------------

    def _referral(self, referral_id: str | None) -> ReferralState | None:
        for ref in self._referrals:
            if ref.referral_id == referral_id:
                return ref
        return None

    def latest(self) -> ReferralState | None:
        for ref in reversed(self._referrals):
            if ref.sector is self.sector:
                return ref
        return None

    def live(self) -> ReferralState | None:
        """The referral the track is working on, if any."""
        current = self.progress.current
        return self._referral(current) if current else None

    def owed_request(self) -> Action | None:
        return self._lanes.owed_request(self.sector)

    # --- requests --------------------------------------------------------------

    def request_new(self) -> Action:
        self.progress.contacted = True
        return self._lanes.owe(self.sector.value, ActionKind.REQUEST, purpose=RequestPurpose.NEW)

    def request_replacement(self, ref: ReferralState, *, expire_if_none: bool) -> None:
        """Ask for another provider to replace `ref` (the ladder's rungs 2 and 3)."""
        owed = self.owed_request()
        if owed is not None:
            # Already looking (a slow earlier rung): the last rung only makes
            # "none left" final.
            owed.expire_if_none = owed.expire_if_none or expire_if_none
            return
        self._lanes.owe(
            self.sector.value,
            ActionKind.REQUEST,
            purpose=RequestPurpose.REROUTE,
            referral_id=ref.referral_id,
            expire_if_none=expire_if_none,
        )

    def reassign(self, ref: ReferralState, provider_id: str, *, event_id: str) -> Action:
        self.progress.contacted = True
        return self._lanes.owe(
            self.sector.value,
            ActionKind.REQUEST,
            purpose=RequestPurpose.REASSIGN,
            referral_id=ref.referral_id,
            provider_id=provider_id,
            awaited_by=event_id,
        )

    def exclusions(self, action: Action) -> list[str]:
        excluded = set(self.progress.tried_provider_ids)
        replaced = self._referral(action.referral_id) if action.referral_id else None
        if replaced is not None:
            excluded.add(replaced.provider_id)
        if action.provider_id:
            excluded.discard(action.provider_id)
        return sorted(excluded)

    def is_stale(self, action: Action, *, wanted: bool, gate_open: bool) -> bool:
        """A request whose reason vanished while it waited in its lane.

        `wanted`: the journey still has business with the sector (and is open)."""
        track = self.progress
        if not wanted:
            return True
        replaced = self._referral(action.referral_id) if action.referral_id else None
        if action.purpose == RequestPurpose.NEW:
            return track.current is not None or track.exhausted_level > 0 or not gate_open
        if action.purpose == RequestPurpose.REROUTE:
            return (
                replaced is None
                or track.current != replaced.referral_id
                or replaced.status is not ReferralStatus.PENDING
            )
        return replaced is None or not self.is_reassignable(replaced)

    def is_reassignable(self, ref: ReferralState) -> bool:
        track = self.progress
        if track.current == ref.referral_id:
            return ref.status is ReferralStatus.PENDING
        # A sector left without a provider: the coordinator rescues its last referral.
        return track.current is None and track.exhausted_level > 0 and self.latest() is ref

    def request_succeeded(
        self,
        action: Action,
        created: ReferralCreated,
        now: datetime,
        terms: SlaTerms,
        *,
        wanted: bool,
    ) -> None:
        sector = self.sector
        track = self.progress
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
            organisation_id=created.organisation_id,
        )
        self._referrals.append(ref)
        self._timeline.note(
            now,
            "referral_requested",
            sector=sector,
            referral_id=ref.referral_id,
            detail=action.purpose,
        )
        replaced = self._referral(action.referral_id) if action.referral_id else None
        if not wanted:
            # Consent withdrawn (or case closed) while the request was under way.
            self._end(ref, ReferralStatus.WITHDRAWN, now, after=action)
            return
        if track.current is None:
            self._adopt(ref, now, terms)
            if action.purpose == RequestPurpose.REASSIGN:
                self._timeline.note(now, "reassigned", sector=sector, referral_id=ref.referral_id)
            return
        if (
            replaced is not None
            and track.current == replaced.referral_id
            and replaced.status is ReferralStatus.PENDING
        ):
            span = replaced.wait.deadline_seconds if replaced.wait is not None else 0.0
            replaced.wait = None
            replaced.status = ReferralStatus.REROUTED
            self._lanes.owe(
                sector.value,
                ActionKind.CLOSE,
                referral_id=replaced.referral_id,
                status=ReferralStatus.REROUTED,
                after=action,
            )
            event = "reassigned" if action.purpose == RequestPurpose.REASSIGN else "rerouted"
            self._timeline.note(
                now, event, sector=sector, referral_id=replaced.referral_id, detail=ref.referral_id
            )
            if action.purpose == RequestPurpose.REROUTE:
                self._notices.rerouted(replaced, now, span)
            self._adopt(ref, now, terms)
            return
        # The attempt it was to replace moved on meanwhile (its provider
        # accepted): the new referral is not needed.
        self._end(ref, ReferralStatus.REROUTED, now, after=action, event="referral_superseded")

    def request_failed(
        self, action: Action, error_type: str, now: datetime, *, wanted: bool
    ) -> None:
        """A business failure (no eligible provider, ...): never retried as is."""
        sector = self.sector
        track = self.progress
        replaced = self._referral(action.referral_id) if action.referral_id else None
        if action.purpose == RequestPurpose.REASSIGN:
            self._timeline.note(now, "reassign_failed", sector=sector, detail=error_type)
            return
        if (
            action.purpose == RequestPurpose.REROUTE
            and replaced is not None
            and track.current == replaced.referral_id
            and replaced.status is ReferralStatus.PENDING
        ):
            if action.expire_if_none:
                self._expire(replaced, now)
            else:
                self._timeline.note(
                    now,
                    "no_alternative",
                    sector=sector,
                    referral_id=replaced.referral_id,
                    detail=error_type,
                )
            return
        if track.current is None and wanted:
            self._exhaust(LEVEL_COORDINATOR, error_type, now)

    # --- decisions and milestones -----------------------------------------------

    def decide(
        self,
        ref: ReferralState,
        *,
        accepted: bool,
        reason: str | None,
        now: datetime,
        terms: SlaTerms,
    ) -> None:
        if accepted:
            ref.status = ReferralStatus.ACCEPTED
            ref.wait = terms.wait(MILESTONE_WAIT[ref.sector], now)
            self._timeline.note(
                now, "referral_accepted", sector=ref.sector, referral_id=ref.referral_id
            )
            self._notices.decided(ref, now)
            return
        ref.status = ReferralStatus.DECLINED
        ref.decline_reason = reason
        ref.wait = None
        self.progress.current = None
        self._timeline.note(
            now, "referral_declined", sector=ref.sector, referral_id=ref.referral_id, detail=reason
        )
        self._notices.decided(ref, now)

    def milestone(
        self, ref: ReferralState, milestone: Milestone, detail: str | None, now: datetime
    ) -> None:
        track = self.progress
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
        self._timeline.note(
            now, event, sector=ref.sector, referral_id=ref.referral_id, detail=detail
        )

    # --- the ladder ---------------------------------------------------------------

    def climb(self, ref: ReferralState, level: int, now: datetime, terms: SlaTerms) -> None:
        """Rung `level` of the referral's open wait is due."""
        wait = ref.wait
        if wait is None or level <= wait.level:
            return
        wait.level = level
        wait.last_rung_at = now
        self._timeline.note(
            now,
            RUNG_EVENTS[level],
            sector=ref.sector,
            referral_id=ref.referral_id,
            level=level,
            detail=wait.name,
        )
        self._notices.referral_rung(ref, wait, level, now, terms.ladder.deadline(wait))
        if level == LEVEL_REMINDER:
            self._lanes.owe(ref.sector.value, ActionKind.REMIND, referral_id=ref.referral_id)
        else:
            self._lanes.owe_escalation(
                level,
                wait.name,
                terms.ladder.deadline(wait),
                sector=ref.sector,
                referral_id=ref.referral_id,
            )
        if ref.status is ReferralStatus.PENDING and level >= LEVEL_COORDINATOR:
            self.request_replacement(ref, expire_if_none=level >= LEVEL_REGIONAL)

    def retime(self, ref: ReferralState, terms: SlaTerms) -> None:
        """The risk changed: the open wait keeps its start, with the new deadline."""
        if ref.wait is None:
            return
        deadline = terms.deadline_from(ref.wait.name, ref.wait.started_at)
        if deadline is not None:
            ref.wait.deadline_seconds = deadline.total_seconds()

    # --- the survivor and the coordinators ---------------------------------------

    def withdraw(self, now: datetime, *, withdrawn_at: datetime | None = None) -> None:
        """Consent withdrawn (at `withdrawn_at`, intake's time): close the open
        referral at once, purge the sector."""
        track = self.progress
        live = self.live()
        if live is not None:
            self._end(live, ReferralStatus.WITHDRAWN, now)
            self._notices.resolved(live, now, "withdrawn")
        track.current = None
        track.exhausted_level = 0
        track.exhausted_at = None
        if track.contacted:
            self._lanes.owe(self.sector.value, ActionKind.PURGE, due_at=withdrawn_at or now)
            track.contacted = False

    def close_for_closure(self, now: datetime) -> None:
        """Closure approved: a referral still waiting for a provider is withdrawn."""
        track = self.progress
        live = self.live()
        if live is not None and live.status in (ReferralStatus.PENDING, ReferralStatus.ACCEPTED):
            self._end(live, ReferralStatus.WITHDRAWN, now)
            track.current = None
        track.exhausted_level = 0
        track.exhausted_at = None

    def start_afresh(self) -> None:
        """Consent granted again: every provider may be asked again."""
        track = self.progress
        track.tried_provider_ids = []
        track.exhausted_level = 0
        track.exhausted_at = None

    def reopen(self) -> None:
        """The case reopened: a new cycle, keeping a service still under way."""
        track = self.progress
        in_service = [
            ref
            for ref in self._referrals
            if ref.sector is self.sector and ref.status is ReferralStatus.IN_SERVICE
        ]
        self.start_afresh()
        track.done = False
        track.served = bool(in_service)
        track.current = in_service[-1].referral_id if in_service else None

    # --- internals ----------------------------------------------------------------

    def _adopt(self, ref: ReferralState, now: datetime, terms: SlaTerms) -> None:
        track = self.progress
        track.current = ref.referral_id
        track.exhausted_level = 0
        track.exhausted_at = None
        track.exhausted_reason = None
        wait = terms.wait(ACCEPT_WAIT[ref.sector], now)
        if wait is not None:
            ref.wait = wait
        deadline = terms.ladder.deadline(wait) if wait is not None else None
        self._notices.new_referral(ref, now, deadline)

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
        self._lanes.owe(
            ref.sector.value,
            ActionKind.CLOSE,
            referral_id=ref.referral_id,
            status=status,
            after=after,
        )
        self._timeline.note(now, event, sector=ref.sector, referral_id=ref.referral_id)

    def _expire(self, ref: ReferralState, now: datetime) -> None:
        track = self.progress
        level = ref.wait.level if ref.wait is not None else LEVEL_REGIONAL
        span = ref.wait.deadline_seconds if ref.wait is not None else 0.0
        ref.final_level = level
        self._end(ref, ReferralStatus.EXPIRED, now, event="expired")
        self._notices.expired(ref, now, span)
        track.current = None
        track.exhausted_level = level
        track.exhausted_at = now
        track.exhausted_reason = "expired"

    def _exhaust(self, level: int, reason: str, now: datetime) -> None:
        track = self.progress
        track.exhausted_level = level
        track.exhausted_at = now
        track.exhausted_reason = reason
        self._timeline.note(now, "no_provider", sector=self.sector, level=level, detail=reason)
        self._notices.no_provider(self.sector, level, now)
        # No wait to point at: due now.
        self._lanes.owe_escalation(level, ACCEPT_WAIT[self.sector], now, sector=self.sector)
