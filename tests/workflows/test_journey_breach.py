"""Protection-order breaches (issue 15, item 6) on the time-skipping server.

A breach recorded by legal aid raises the case's risk (never lowers it),
gives every open wait the new level's deadline counted from when it opened,
tells the holding organisation and the region's coordinators, and opens a new
shelter referral at once when she consented to shelter and is not placed.
Shipped policy: a shelter has 24 h to decide at medium risk, 2 h at high.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from tests.workflows.support import ESCALATION, JourneyTestbed, events, near, new_event_id
from workflows.casefile import raise_risk

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELTER, LEGAL = c.Sector.SHELTER, c.Sector.LEGAL
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HOLDER = "org-a0de00000001"


async def test_a_breach_raises_the_risk_one_level_or_to_the_assessed_one_never_lower() -> None:
    assert raise_risk(c.Risk.LOW, None) is c.Risk.MEDIUM
    assert raise_risk(c.Risk.MEDIUM, None) is c.Risk.HIGH
    assert raise_risk(c.Risk.HIGH, None) is c.Risk.CRITICAL
    assert raise_risk(c.Risk.CRITICAL, None) is c.Risk.CRITICAL
    assert raise_risk(c.Risk.LOW, c.Risk.CRITICAL) is c.Risk.CRITICAL
    assert raise_risk(c.Risk.HIGH, c.Risk.LOW) is c.Risk.CRITICAL
    assert raise_risk(c.Risk.CRITICAL, c.Risk.LOW) is c.Risk.CRITICAL


async def test_a_breach_raises_the_risk_and_retimes_the_open_waits(bed: JourneyTestbed) -> None:
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.LEGAL],
        risk=c.Risk.MEDIUM,
        holding_organisation_id=HOLDER,
    )
    shelter = await journey.pending_referral(SHELTER)
    legal = await journey.pending_referral(LEGAL)
    assert shelter.deadline == shelter.requested_at + 24 * HOUR  # medium
    await bed.skip(HOUR)
    await journey.decide(legal)  # the first meeting: 7 d at medium, from now
    accepted = await journey.until(
        lambda s: any(r.sector is LEGAL and r.status == "ACCEPTED" for r in s.referrals)
    )
    meeting = next(r for r in accepted.referrals if r.sector is LEGAL)
    assert meeting.deadline is not None
    meeting_opened = meeting.deadline - 7 * DAY
    await bed.skip(2 * HOUR)  # 3 h after the shelter was asked

    result = await journey.breach(legal)
    assert result.stage is c.Stage.SAFETY
    status = await journey.until(lambda s: s.risk is c.Risk.HIGH)
    (breach,) = events(status, "protection_order_breached")
    assert (breach.sector, breach.referral_id, breach.detail) == (
        LEGAL,
        legal.referral_id,
        "medium->high",
    )
    # Each open wait keeps its start and takes the high level's deadline: the
    # shelter's 2 h from when it was asked are over (coordinators and the
    # next shelter now), the first meeting's 72 h count from the acceptance,
    # the follow-up's 14 days from the journey's start.
    status = await journey.until(
        lambda s: any(
            r.referral_id == shelter.referral_id and r.status is c.ReferralStatus.REROUTED
            for r in s.referrals
        )
    )
    assert events(status, "escalated")[0].referral_id == shelter.referral_id
    meeting = next(r for r in status.referrals if r.referral_id == legal.referral_id)
    assert near(meeting.deadline, meeting_opened + 72 * HOUR)
    assert near(status.next_follow_up, shelter.requested_at + 14 * DAY)
    notices = await journey.until_calls(ESCALATION, 1)
    assert (notices[0].arg.wait, notices[0].arg.level) == ("shelter_accept", 2)
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_RISK) == "high")
    assert sa[c.SA_STAGE] == "SAFETY"
    # The holding organisation and the region's coordinators are told.
    told = [e for e in bed.fakes.notifications(journey.case_id) if e.kind is c.NotifyKind.BREACH]
    assert [(e.referral_id, e.sector, e.holding_organisation_id) for e in told] == [
        (legal.referral_id, "legal", HOLDER)
    ]

    # A second breach, assessed "low" by the lawyer: the risk never goes down.
    await journey.breach(legal, risk=c.Risk.LOW)
    status = await journey.until(lambda s: s.risk is c.Risk.CRITICAL)
    assert events(status, "protection_order_breached")[-1].detail == "high->critical"


async def test_a_breach_asks_a_shelter_at_once_unless_she_is_placed(bed: JourneyTestbed) -> None:
    # She left the shelter (checked out): a breach asks for a new placement.
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL], risk=c.Risk.MEDIUM)
    shelter = await journey.pending_referral(SHELTER)
    legal = await journey.pending_referral(LEGAL)
    await journey.decide(shelter)
    await journey.milestone(shelter, c.Milestone.STARTED)
    await journey.milestone(shelter, c.Milestone.COMPLETED)
    await journey.until(lambda s: s.stage is c.Stage.JUSTICE)
    await journey.breach(legal)
    status = await journey.until(
        lambda s: sum(r.sector is SHELTER for r in s.referrals) == 2 and s.stage is c.Stage.SAFETY
    )
    again = [r for r in status.referrals if r.sector is SHELTER][-1]
    assert again.status is c.ReferralStatus.PENDING
    assert again.deadline == again.requested_at + 2 * HOUR  # at the new level (high)
    # Every shelter may be asked again: the one she left is the first eligible.
    assert again.provider_id == "shelter-a"

    # Consent to shelter but no need recorded, and not placed: asked at once too.
    unsheltered = await bed.start(needs=[c.Need.LEGAL], consents=[LEGAL, SHELTER])
    ref = await unsheltered.pending_referral(LEGAL)
    await unsheltered.breach(ref)
    await unsheltered.pending_referral(SHELTER)

    # Placed: no new referral; without consent to shelter: none either.
    placed = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL])
    room = await placed.pending_referral(SHELTER)
    ref = await placed.pending_referral(LEGAL)
    await placed.decide(room)
    await placed.milestone(room, c.Milestone.STARTED)
    await placed.breach(ref)
    no_consent = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL], consents=[LEGAL])
    other = await no_consent.pending_referral(LEGAL)
    await no_consent.breach(other)
    for journey_ in (placed, no_consent):
        status = await journey_.until(lambda s: s.risk is c.Risk.CRITICAL)
        assert sum(r.sector is SHELTER for r in status.referrals) == (
            1 if journey_ is placed else 0
        )


async def test_a_breach_is_validated(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL])
    shelter = await journey.pending_referral(SHELTER)
    legal = await journey.pending_referral(LEGAL)
    now = await bed.now()

    async def rejected(**fields: object) -> str | None:
        values: dict[str, object] = {
            "event_id": new_event_id(),
            "referral_id": legal.referral_id,
            "sector": LEGAL,
            "at": now,
            "recorded_at": now,
        }
        values.update(fields)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await journey.update(c.UPDATE_BREACH, c.ProtectionOrderBreach(**values))  # type: ignore[arg-type]
        return getattr(err.value.cause, "type", None)

    before = await journey.status()
    assert await rejected(referral_id="leg-0000000000000000") == c.ERR_UNKNOWN_REFERRAL
    assert await rejected(referral_id=shelter.referral_id) == c.ERR_INVALID
    after = await journey.status()
    assert after.risk is before.risk and after.timeline == before.timeline
    # The same breach delivered twice (an outbox retry): counted once.
    breach = c.ProtectionOrderBreach(
        event_id="breach-1", referral_id=legal.referral_id, sector=LEGAL, at=now, recorded_at=now
    )
    await journey.update(c.UPDATE_BREACH, breach)
    again = await journey.update(c.UPDATE_BREACH, breach)
    assert again.duplicate
    status = await journey.status()
    assert status.risk is c.Risk.CRITICAL  # high -> critical, once
    assert len(events(status, "protection_order_breached")) == 1
