"""The referral handshake and its escalation ladder, on the time-skipping server.

Shipped policy, high risk: a shelter has 2 h to decide (reminder at 1 h,
coordinators and rerouting at 2 h, regional escalation at 4 h) and the
survivor 12 h to check in after acceptance.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from masar import contract as c
from tests.workflows.conftest import SECONDS_QUEUE
from tests.workflows.support import ESCALATION, CaseScript, JourneyTestbed, events, near

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELTER = c.Sector.SHELTER
REQUEST = c.SHELTER_REQUEST_REFERRAL
REMIND = c.SHELTER_REMIND_PROVIDER
CLOSE = c.SHELTER_CLOSE_REFERRAL
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def one_shelter() -> CaseScript:
    script = CaseScript()
    script.providers["shelter"] = ["shelter-a"]
    return script


async def test_decision_before_the_deadline_then_check_in_and_completion(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    assert ref.provider_id == "shelter-a"
    assert ref.deadline is not None and ref.deadline - ref.requested_at == 2 * HOUR
    request = journey.calls(REQUEST)[0].arg
    # The shelter learns only what it needs: no incident, no other sector's needs.
    assert request.shelter == c.ShelterNeeds(household_size=2, children=1)
    assert request.legal is None and request.employment is None
    assert request.idempotency_key.startswith(f"journey-{journey.case_id}/")
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_PENDING_SECTORS) == ["shelter"])
    assert sa[c.SA_STAGE] == "SAFETY" and sa[c.SA_RISK] == "high"
    assert sa[c.SA_REGION] == "fes-meknes" and sa[c.SA_ESCALATION_LEVEL] == 0
    assert near(sa[c.SA_NEXT_DEADLINE], ref.requested_at + HOUR)

    await bed.skip(30 * MINUTE)
    result = await journey.decide(ref, accepted=True)
    assert result.stage is c.Stage.SAFETY and not result.duplicate
    status = await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
    accepted = status.referrals[0]
    # Now the check-in wait: 12 h from the acceptance.
    assert accepted.deadline is not None
    assert near(accepted.deadline - accepted.requested_at, timedelta(hours=12, minutes=30))

    await bed.skip(2 * HOUR)  # past the old decision deadline: nothing climbs
    await journey.milestone(ref, c.Milestone.STARTED)
    await journey.milestone(ref, c.Milestone.COMPLETED)
    status = await journey.until(lambda s: s.stage is c.Stage.FOLLOW_UP)
    assert status.referrals[0].status is c.ReferralStatus.COMPLETED
    assert status.escalations == [] and status.escalation_level == 0
    assert journey.calls(REMIND) == [] and journey.calls(ESCALATION) == []
    assert [e.event for e in status.timeline if e.sector is SHELTER] == [
        "referral_requested",
        "referral_accepted",
        "service_started",
        "service_completed",
    ]
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_STAGE) == "FOLLOW_UP")
    assert c.SA_PENDING_SECTORS not in sa
    # Only the follow-up wait is left: its reminder is the next deadline.
    assert status.next_follow_up is not None
    assert near(sa[c.SA_NEXT_DEADLINE], status.next_follow_up - timedelta(days=7))


async def test_every_rung_then_expiry_when_no_provider_is_left(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER], script=one_shelter())
    ref = await journey.pending_referral(SHELTER)

    # Rung 1 at 50 %: a reminder to the provider.
    await bed.skip(HOUR + MINUTE)
    await journey.until_calls(REMIND, 1)
    assert journey.calls(REMIND)[0].arg.referral_id == ref.referral_id
    status = await journey.until(lambda s: s.escalation_level == c.LEVEL_REMINDER)
    assert [e.level for e in events(status, "reminder")] == [1]
    assert status.escalations[0].referral_id == ref.referral_id
    await journey.until_search_attributes(lambda v: v.get(c.SA_ESCALATION_LEVEL) == 1)

    # Rung 2 at 100 %: the region's coordinators, and a search for another
    # provider; none is left, so the journey keeps waiting on this one.
    await bed.skip(HOUR)
    notices = await journey.until_calls(ESCALATION, 1)
    assert notices[0].arg.level == c.LEVEL_COORDINATOR
    assert notices[0].arg.wait == "shelter_accept"
    assert notices[0].arg.referral_id == ref.referral_id
    assert notices[0].arg.due_at == ref.deadline  # the same wait, so exactly
    status = await journey.until(lambda s: bool(events(s, "no_alternative")))
    assert events(status, "escalated")[0].level == c.LEVEL_COORDINATOR
    assert journey.calls(REQUEST)[-1].arg.exclude_provider_ids == ["shelter-a"]
    assert status.referrals[0].status is c.ReferralStatus.PENDING
    await journey.until_search_attributes(lambda v: v.get(c.SA_ESCALATION_LEVEL) == 2)

    # Rung 3 at 200 %: regional escalation, and the referral EXPIRES.
    await bed.skip(2 * HOUR)
    status = await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.EXPIRED)
    assert events(status, "regional_escalation")[0].level == c.LEVEL_REGIONAL
    notices = await journey.until_calls(ESCALATION, 2)
    assert [n.arg.level for n in notices] == [2, 3]
    closes = await journey.until_calls(CLOSE, 1)
    assert closes[0].arg.status is c.ReferralStatus.EXPIRED
    assert status.referrals[0].escalation_level == c.LEVEL_REGIONAL
    # Still open for the coordinators: the sector has no provider.
    assert status.escalation_level == c.LEVEL_REGIONAL
    assert [(v.sector, v.level) for v in status.escalations] == [(SHELTER, 3)]
    assert status.stage is c.Stage.SAFETY
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_ESCALATION_LEVEL) == 3)
    assert sa[c.SA_PENDING_SECTORS] == ["shelter"]
    assert c.SA_NEXT_DEADLINE not in sa or sa[c.SA_NEXT_DEADLINE] > ref.deadline  # follow-up only


async def test_rerouted_after_a_timeout_with_a_fresh_wait(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    first = await journey.pending_referral(SHELTER)
    await bed.skip(2 * HOUR + MINUTE)
    status = await journey.until(
        lambda s: len(s.referrals) == 2 and s.referrals[1].status is c.ReferralStatus.PENDING
    )
    old, new = status.referrals
    assert old.status is c.ReferralStatus.REROUTED
    assert new.provider_id == "shelter-b"
    assert journey.calls(REQUEST)[-1].arg.exclude_provider_ids == ["shelter-a"]
    rerouted = events(status, "rerouted")[0]
    assert (rerouted.referral_id, rerouted.detail) == (first.referral_id, new.referral_id)
    closes = await journey.until_calls(CLOSE, 1)
    assert (closes[0].arg.referral_id, closes[0].arg.status) == (
        first.referral_id,
        c.ReferralStatus.REROUTED,
    )
    # A fresh cycle: the new provider has its own 2 h.
    assert new.escalation_level == 0
    assert new.deadline is not None and new.deadline - new.requested_at == 2 * HOUR
    # The stale provider can no longer decide.
    with pytest.raises(Exception) as err:
        await journey.decide(first, accepted=True)
    assert getattr(err.value.__cause__, "type", None) == c.ERR_STALE_REFERRAL


async def test_a_decline_goes_to_the_next_provider_at_once(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    first = await journey.pending_referral(SHELTER)
    await journey.decide(first, accepted=False, reason="NO_CAPACITY")
    status = await journey.until(
        lambda s: len(s.referrals) == 2 and s.referrals[1].status is c.ReferralStatus.PENDING
    )
    assert status.referrals[0].status is c.ReferralStatus.DECLINED
    assert status.referrals[0].decline_reason == "NO_CAPACITY"
    assert status.referrals[1].provider_id == "shelter-b"
    assert journey.calls(REQUEST)[-1].arg.exclude_provider_ids == ["shelter-a"]
    assert events(status, "referral_declined")[0].detail == "NO_CAPACITY"
    # A second decline: the third provider, excluding both.
    await journey.decide(status.referrals[1], accepted=False, reason="NOT_ELIGIBLE")
    status = await journey.until(lambda s: len(s.referrals) == 3)
    assert journey.calls(REQUEST)[-1].arg.exclude_provider_ids == ["shelter-a", "shelter-b"]
    assert status.referrals[2].provider_id == "shelter-c"


async def test_no_eligible_provider_at_all_escalates_instead_of_failing(
    bed: JourneyTestbed,
) -> None:
    script = one_shelter()
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    ref = await journey.pending_referral(SHELTER)
    await journey.decide(ref, accepted=False, reason="NO_CAPACITY")
    status = await journey.until(lambda s: bool(events(s, "no_provider")))
    assert events(status, "no_provider")[0].detail == c.ERR_NO_PROVIDER
    notices = await journey.until_calls(ESCALATION, 1)
    assert (notices[0].arg.level, notices[0].arg.wait) == (2, "shelter_accept")
    assert status.escalation_level == c.LEVEL_COORDINATOR
    assert status.escalations[0].sector is SHELTER
    # The journey is alive and answers.
    assert await journey.running()


async def test_the_check_in_wait_climbs_without_rerouting(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    await journey.decide(ref, accepted=True)
    await bed.skip(6 * HOUR + MINUTE)
    reminders = await journey.until_calls(REMIND, 1)
    assert reminders[0].arg.referral_id == ref.referral_id
    await bed.skip(6 * HOUR)
    await bed.skip(12 * HOUR)
    status = await journey.until(lambda s: bool(events(s, "regional_escalation")))
    assert [(e.event, e.detail) for e in status.timeline if e.level] == [
        ("reminder", "shelter_checkin"),
        ("escalated", "shelter_checkin"),
        ("regional_escalation", "shelter_checkin"),
    ]
    notices = await journey.until_calls(ESCALATION, 2)
    assert [n.arg.level for n in notices] == [2, 3]
    # Accepted referrals are never rerouted or expired: still waiting for her.
    assert len(journey.calls(REQUEST)) == 1
    assert status.referrals[0].status is c.ReferralStatus.ACCEPTED
    assert status.escalation_level == c.LEVEL_REGIONAL
    # Check-in clears the escalation.
    await journey.milestone(ref, c.Milestone.STARTED)
    status = await journey.until(lambda s: s.escalation_level == 0)
    assert status.referrals[0].status is c.ReferralStatus.IN_SERVICE


async def test_a_milestone_wait_the_policy_omits_has_no_deadline(bed: JourneyTestbed) -> None:
    # The seconds-scale test policy has no legal_meeting wait.
    journey = await bed.start(needs=[c.Need.LEGAL], task_queue=SECONDS_QUEUE)
    ref = await journey.pending_referral(c.Sector.LEGAL)
    assert ref.deadline is not None and ref.deadline - ref.requested_at == timedelta(seconds=300)
    await journey.decide(ref, accepted=True)
    status = await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
    assert status.referrals[0].deadline is None
    await bed.skip(timedelta(hours=2))
    status = await journey.status()
    assert status.escalation_level == 0 and journey.calls(ESCALATION) == []
    assert status.stage is c.Stage.JUSTICE


async def test_risk_raised_mid_wait_shortens_the_deadline(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER], risk=c.Risk.MEDIUM)
    ref = await journey.pending_referral(SHELTER)
    assert ref.deadline is not None and ref.deadline - ref.requested_at == timedelta(hours=24)
    await bed.skip(3 * HOUR)
    assert journey.calls(REMIND) == []
    await journey.update(
        c.UPDATE_RISK,
        c.RiskChange(event_id="risk-1", risk=c.Risk.HIGH, at=await bed.now()),
    )
    # Same start, new deadline (2 h): the reminder and the escalation are overdue.
    status = await journey.until(lambda s: len(s.referrals) == 2)
    assert events(status, "risk_reassessed")[0].detail == "medium->high"
    assert [e.event for e in status.timeline if e.referral_id == ref.referral_id][-3:] == [
        "reminder",
        "escalated",
        "rerouted",
    ]
    assert status.referrals[0].status is c.ReferralStatus.REROUTED
    assert status.risk is c.Risk.HIGH
    await journey.until_calls(REMIND, 1)
    await journey.until_search_attributes(lambda v: v.get(c.SA_RISK) == "high")


async def test_a_sector_outage_is_retried_with_the_same_idempotency_key(
    bed: JourneyTestbed,
) -> None:
    script = CaseScript(outages={REQUEST: 6})
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    # Five bounded attempts fail, the lane waits a minute, the sixth call fails
    # too, and the lane's next try (same action, same key) succeeds.
    await bed.skip(10 * MINUTE)
    ref = await journey.pending_referral(SHELTER)
    calls = journey.calls(REQUEST)
    assert len(calls) == 7
    assert len({call.arg.idempotency_key for call in calls}) == 1
    status = await journey.status()
    assert len(events(status, "collaborator_unavailable")) == 1
    assert ref.provider_id == "shelter-a"
