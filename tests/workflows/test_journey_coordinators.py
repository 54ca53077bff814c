"""Coordinators steer through validated updates; sector decisions are validated
too. A rejected update writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from tests.workflows.support import (
    CaseScript,
    Journey,
    JourneyTestbed,
    events,
    near,
    new_event_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELTER = c.Sector.SHELTER
REQUEST = c.SHELTER_REQUEST_REFERRAL
REMIND = c.SHELTER_REMIND_PROVIDER
MINUTE = timedelta(minutes=1)


async def rejected(journey: Journey, name: str, event: Any) -> str | None:
    """Send an update that must be rejected; its error type. Nothing written."""
    before = await journey.status()
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(name, event)
    after = await journey.status()
    assert after.timeline == before.timeline and after.referrals == before.referrals
    return getattr(err.value.cause, "type", None)


def reassignment(referral_id: str, **fields: Any) -> c.Reassignment:
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "referral_id": referral_id,
        "provider_id": "shelter-c",
        "coordinator_id": "coord-3",
        "reason": "closer_to_family",
    }
    values.update(fields)
    return c.Reassignment(**values)


def extension(target: str, **fields: Any) -> c.DeadlineExtension:
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "target": target,
        "extend_by_seconds": 3600,
        "coordinator_id": "coord-3",
        "reason": "provider_asked",
    }
    values.update(fields)
    return c.DeadlineExtension(**values)


async def test_validators_reject_bad_coordinator_updates(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    rid = ref.referral_id

    assert await rejected(journey, c.UPDATE_REASSIGN, reassignment("shr-unknown")) == (
        c.ERR_UNKNOWN_REFERRAL
    )
    assert await rejected(journey, c.UPDATE_REASSIGN, reassignment(rid, reason=" ")) == (
        c.ERR_INVALID
    )
    assert await rejected(journey, c.UPDATE_REASSIGN, reassignment(rid, provider_id="")) == (
        c.ERR_INVALID
    )
    assert await rejected(
        journey, c.UPDATE_REASSIGN, reassignment(rid, provider_id=ref.provider_id)
    ) == (c.ERR_INVALID)

    for bad, error in (
        (extension(rid, extend_by_seconds=0), c.ERR_INVALID),
        (extension(rid, extend_by_seconds=-60), c.ERR_INVALID),
        (extension(rid, reason=""), c.ERR_INVALID),
        (extension(rid, coordinator_id=""), c.ERR_INVALID),
        (extension("shr-unknown"), c.ERR_UNKNOWN_WAIT),
        (extension("clinical:pep"), c.ERR_NO_OPEN_WAIT),  # no clinical window here
    ):
        assert await rejected(journey, c.UPDATE_EXTEND, bad) == error

    decision = c.ClosureDecision(
        event_id=new_event_id(), approve=True, coordinator_id="coord-3", reason="done"
    )
    assert await rejected(journey, c.UPDATE_CLOSURE_DECISION, decision) == (
        c.ERR_NO_CLOSURE_PENDING
    )
    reopen = c.ReopenRequest(event_id=new_event_id(), at=await bed.now())
    assert await rejected(journey, c.UPDATE_REOPEN, reopen) == c.ERR_NOT_CLOSED
    closure = c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="")
    assert await rejected(journey, c.UPDATE_CLOSURE_REQUEST, closure) == c.ERR_INVALID

    # Accepted and checked in: no longer waiting for a provider, no open wait.
    await journey.decide(ref, accepted=True)
    await journey.milestone(ref, c.Milestone.STARTED)
    assert await rejected(journey, c.UPDATE_REASSIGN, reassignment(rid)) == (c.ERR_STALE_REFERRAL)
    assert await rejected(journey, c.UPDATE_EXTEND, extension(rid)) == c.ERR_NO_OPEN_WAIT


async def test_sector_updates_for_unknown_or_stale_referrals_are_rejected(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    now = await bed.now()

    def decision(**fields: Any) -> c.ReferralDecision:
        values: dict[str, Any] = {
            "event_id": new_event_id(),
            "referral_id": ref.referral_id,
            "sector": SHELTER,
            "accepted": True,
            "decided_at": now,
        }
        values.update(fields)
        return c.ReferralDecision(**values)

    def milestone(which: c.Milestone, **fields: Any) -> c.ReferralMilestone:
        values: dict[str, Any] = {
            "event_id": new_event_id(),
            "referral_id": ref.referral_id,
            "sector": SHELTER,
            "milestone": which,
            "at": now,
        }
        values.update(fields)
        return c.ReferralMilestone(**values)

    unknown = decision(referral_id="shr-0000000000000000")
    assert await rejected(journey, c.UPDATE_REFERRAL_DECISION, unknown) == c.ERR_UNKNOWN_REFERRAL
    wrong_sector = decision(sector=c.Sector.LEGAL)
    assert await rejected(journey, c.UPDATE_REFERRAL_DECISION, wrong_sector) == c.ERR_INVALID
    no_reason = decision(accepted=False)
    assert await rejected(journey, c.UPDATE_REFERRAL_DECISION, no_reason) == c.ERR_INVALID
    free_text = decision(accepted=False, decline_reason="she seems unstable")
    assert await rejected(journey, c.UPDATE_REFERRAL_DECISION, free_text) == c.ERR_INVALID
    too_early = milestone(c.Milestone.COMPLETED)
    assert await rejected(journey, c.UPDATE_REFERRAL_MILESTONE, too_early) == (c.ERR_STALE_REFERRAL)

    await journey.decide(ref, accepted=False, reason="NO_CAPACITY")
    await journey.until(lambda s: len(s.referrals) == 2)
    # The declined referral is stale: a late acceptance or check-in is refused.
    stale = decision()
    assert await rejected(journey, c.UPDATE_REFERRAL_DECISION, stale) == c.ERR_STALE_REFERRAL
    stale_start = milestone(c.Milestone.STARTED)
    assert await rejected(journey, c.UPDATE_REFERRAL_MILESTONE, stale_start) == (
        c.ERR_STALE_REFERRAL
    )


async def test_reassign_to_a_named_provider(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    result = await journey.update(c.UPDATE_REASSIGN, reassignment(ref.referral_id))
    assert result.stage is c.Stage.SAFETY
    status = await journey.status()  # answered once the new referral exists
    old, new = status.referrals
    assert old.status is c.ReferralStatus.REROUTED
    assert (new.provider_id, new.status) == ("shelter-c", c.ReferralStatus.PENDING)
    request = journey.calls(REQUEST)[-1].arg
    assert request.provider_id == "shelter-c"
    reassigned = events(status, "reassigned")[0]
    assert (reassigned.referral_id, reassigned.detail) == (old.referral_id, new.referral_id)
    assert events(status, "reassign_requested")[0].actor == "coord-3"

    # A provider the sector will not give her: the coordinator is told, nothing changes.
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(
            c.UPDATE_REASSIGN, reassignment(new.referral_id, provider_id="shelter-full")
        )
    assert getattr(err.value.cause, "type", None) == c.ERR_NO_PROVIDER
    status = await journey.status()
    assert status.referrals[-1].referral_id == new.referral_id
    assert status.referrals[-1].status is c.ReferralStatus.PENDING


async def test_reassign_rescues_a_sector_left_without_provider(bed: JourneyTestbed) -> None:
    script = CaseScript()
    script.providers["shelter"] = ["shelter-a"]
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    ref = await journey.pending_referral(SHELTER)
    await journey.decide(ref, accepted=False, reason="NO_CAPACITY")
    await journey.until(lambda s: s.escalation_level == c.LEVEL_COORDINATOR)
    # The coordinator found a place the matching did not know about.
    script.providers["shelter"].append("shelter-partner")
    await journey.update(
        c.UPDATE_REASSIGN, reassignment(ref.referral_id, provider_id="shelter-partner")
    )
    status = await journey.status()
    assert status.referrals[-1].provider_id == "shelter-partner"
    assert status.referrals[-1].status is c.ReferralStatus.PENDING
    assert status.escalation_level == 0


async def test_extend_a_deadline(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    await journey.update(c.UPDATE_EXTEND, extension(ref.referral_id))
    status = await journey.status()
    extended = status.referrals[0]
    # 2 h + 1 h: the reminder moves to 1.5 h, the escalation to 3 h.
    assert near(extended.deadline, ref.requested_at + timedelta(hours=3))
    event = events(status, "deadline_extended")[0]
    assert event.actor == "coord-3" and event.detail is not None
    assert event.detail.startswith("shelter_accept:+3600s")
    await bed.skip(65 * MINUTE)
    assert journey.calls(REMIND) == []
    await bed.skip(30 * MINUTE)
    await journey.until_calls(REMIND, 1)
    # Reasons are kept as codes; free text never reaches the timeline.
    await journey.update(
        c.UPDATE_EXTEND, extension(ref.referral_id, reason="the family asked Mr X to wait")
    )
    status = await journey.status()
    assert events(status, "deadline_extended")[-1].detail == "shelter_accept:+3600s:free_text"
    # The follow-up wait can be extended too.
    await journey.update(c.UPDATE_EXTEND, extension("follow_up", extend_by_seconds=86400))
    status = await journey.status()
    assert near(status.next_follow_up, ref.requested_at + timedelta(days=15))
