"""What coordinators and Temporal tooling see of a journey: the `status`
query and the search attributes. Read-only over the case file; no names, no
narratives.
"""

from __future__ import annotations

from datetime import datetime

from masar.contract import (
    LEVEL_NONE,
    SA_ESCALATION_LEVEL,
    SA_NEXT_DEADLINE,
    SA_PENDING_SECTORS,
    SA_REGION,
    SA_RISK,
    SA_STAGE,
    ClinicalWindowView,
    EscalationView,
    JourneyStatus,
    ReferralStatus,
    ReferralView,
    Sector,
)
from workflows.casefile import CaseFile
from workflows.state import ACCEPT_WAIT, FOLLOW_UP_WAIT, clinical_wait_name

# Escalations of a transfer's wait (workflows.transfers) name it by wait and
# level; its id is in the status's `transfers` list.


def escalations(case: CaseFile) -> list[EscalationView]:
    views: list[EscalationView] = []
    for ref in case.state.referrals:
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
    for sector, track in case.tracks.items():
        progress = track.progress
        if progress.exhausted_level > LEVEL_NONE and progress.exhausted_at is not None:
            latest = track.latest()
            views.append(
                EscalationView(
                    wait=ACCEPT_WAIT[sector],
                    level=progress.exhausted_level,
                    at=progress.exhausted_at,
                    referral_id=latest.referral_id if latest else None,
                    sector=sector,
                )
            )
    follow_up = case.state.follow_up
    if follow_up is not None and follow_up.level > LEVEL_NONE:
        views.append(
            EscalationView(
                wait=FOLLOW_UP_WAIT,
                level=follow_up.level,
                at=follow_up.last_rung_at or follow_up.started_at,
            )
        )
    for window in case.state.clinical:
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
    for _, wait in case.transfers.waits():
        if wait.level > LEVEL_NONE:
            views.append(
                EscalationView(
                    wait=wait.name, level=wait.level, at=wait.last_rung_at or wait.started_at
                )
            )
    # Medical follow-up visits due or missed (workflows.visits).
    for visit, wait in case.visits.waits():
        if wait.level > LEVEL_NONE:
            views.append(
                EscalationView(
                    wait=wait.name,
                    level=wait.level,
                    at=wait.last_rung_at or wait.started_at,
                    referral_id=visit.referral_id,
                    sector=Sector.HEALTH,
                )
            )
    # Notifications that reached nobody (workflows.notices).
    views.extend(case.notices.escalation_views())
    return views


def escalation_level(case: CaseFile) -> int:
    return max((view.level for view in escalations(case)), default=LEVEL_NONE)


def pending_sectors(case: CaseFile) -> list[str]:
    pending = []
    for sector, track in case.tracks.items():
        live = track.live()
        waiting = live is not None and live.status in (
            ReferralStatus.PENDING,
            ReferralStatus.ACCEPTED,
        )
        if (
            waiting
            or track.owed_request() is not None
            or (track.progress.exhausted_level > LEVEL_NONE and case.wants(sector))
        ):
            pending.append(sector.value)
    return pending


def next_deadline(case: CaseFile) -> datetime | None:
    if case.closed:
        return None
    times = [due for _, due in case.next_rungs()]
    return min(times) if times else None


def search_attributes(case: CaseFile) -> dict[str, object]:
    return {
        SA_STAGE: case.state.stage.value,
        SA_RISK: case.state.risk.value,
        SA_REGION: case.state.region,
        SA_ESCALATION_LEVEL: escalation_level(case),
        SA_PENDING_SECTORS: pending_sectors(case),
        SA_NEXT_DEADLINE: next_deadline(case),
    }


def status(case: CaseFile) -> JourneyStatus:
    state = case.state
    ladder = case.ladder if state.policy is not None else None
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
        escalations=escalations(case),
        timeline=list(state.timeline),
        clinical_windows=windows,
        escalation_level=escalation_level(case),
        next_deadline=next_deadline(case) if ladder is not None else None,
        consents=list(state.consents),
        closure_requested=state.closure_requested,
        next_follow_up=(ladder.deadline(follow_up) if ladder is not None and follow_up else None),
        transfers=case.transfers.views(ladder),
    )
