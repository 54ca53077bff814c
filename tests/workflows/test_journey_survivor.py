"""The survivor decides; clinical windows; follow-ups; closure and reopening;
years-long journeys (continue-as-new) and at-least-once delivery (event ids)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from tests.workflows.support import (
    ESCALATION,
    JourneyTestbed,
    events,
    near,
    new_event_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHELTER, LEGAL, EMPLOYMENT = c.Sector.SHELTER, c.Sector.LEGAL, c.Sector.EMPLOYMENT
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


async def test_consent_withdrawn_while_a_referral_waits(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.EMPLOYMENT])
    ref = await journey.pending_referral(SHELTER)
    # Employment waits until she is safe.
    assert [r.sector for r in (await journey.status()).referrals] == [SHELTER]
    withdrawn_at = await bed.now()
    result = await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(event_id=new_event_id(), sector=SHELTER, granted=False, at=withdrawn_at),
    )
    assert result.stage is c.Stage.RECOVERY
    closes = await journey.until_calls(c.SHELTER_CLOSE_REFERRAL, 1)
    assert (closes[0].arg.referral_id, closes[0].arg.status) == (
        ref.referral_id,
        c.ReferralStatus.WITHDRAWN,
    )
    purges = await journey.until_calls(c.SHELTER_PURGE_CASE, 1)
    assert purges[0].arg.case_id == journey.case_id
    # The purge says when (intake's time): the sector refuses older consent proofs.
    assert purges[0].arg.withdrawn_at == withdrawn_at
    status = await journey.until(lambda s: bool(events(s, "case_purged")))
    assert status.referrals[0].status is c.ReferralStatus.WITHDRAWN
    assert SHELTER not in status.consents
    assert events(status, "consent_withdrawn")[0].sector is SHELTER
    # Shelter no longer consented: she counts as safe, employment starts.
    await journey.pending_referral(EMPLOYMENT)
    # The withdrawn referral's ladder is gone: no reminder, ever.
    await bed.skip(3 * HOUR)
    assert journey.calls(c.SHELTER_REMIND_PROVIDER) == []
    assert [n.arg.wait for n in journey.calls(ESCALATION)] == []


async def test_consent_granted_later_starts_the_referral(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL], consents=[LEGAL])
    await journey.pending_referral(LEGAL)
    status = await journey.status()
    assert [r.sector for r in status.referrals] == [LEGAL]
    assert status.stage is c.Stage.JUSTICE  # no consent for shelter: never referred
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(event_id=new_event_id(), sector=SHELTER, granted=True, at=await bed.now()),
    )
    await journey.pending_referral(SHELTER)
    status = await journey.until(lambda s: s.stage is c.Stage.SAFETY)
    assert set(status.consents) == {SHELTER, LEGAL}


async def test_declining_a_service_withdraws_and_purges(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.LEGAL])
    ref = await journey.pending_referral(LEGAL)
    await journey.decide(ref, accepted=True)
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(),
            sector=LEGAL,
            granted=False,
            at=await bed.now(),
            reason="declined",
        ),
    )
    await journey.until_calls(c.LEGAL_PURGE_CASE, 1)
    status = await journey.until(lambda s: s.stage is c.Stage.FOLLOW_UP)
    assert status.referrals[0].status is c.ReferralStatus.WITHDRAWN
    assert events(status, "service_declined")[0].sector is LEGAL


async def test_clinical_windows_met_and_missed(bed: JourneyTestbed) -> None:
    opened = await bed.now()
    journey = await bed.start(
        needs=[c.Need.MEDICAL],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=10),
        opened_at=opened,
    )
    status = await journey.until(lambda s: len(s.clinical_windows) == 2)
    pep, ec = status.clinical_windows
    assert (pep.item, pep.status) == (c.ClinicalItem.PEP, "OPEN")
    assert pep.deadline == opened + timedelta(hours=62)  # 72 h from the incident
    assert ec.deadline == opened + timedelta(hours=110)  # 120 h from the incident
    # PEP: 62 h left at intake, so reminder at 15.5 h, coordinators at 31 h,
    # closed at 62 h. Emergency contraception: reminder at 27.5 h, 55 h, 110 h.
    await bed.skip(timedelta(hours=16))
    notices = await journey.until_calls(ESCALATION, 1)
    assert (notices[0].arg.level, notices[0].arg.wait) == (1, "clinical:pep")
    assert notices[0].arg.due_at == pep.deadline
    await bed.skip(timedelta(hours=16))  # 32 h
    notices = await journey.until_calls(ESCALATION, 3)
    assert sorted((n.arg.wait, n.arg.level) for n in notices) == [
        ("clinical:emergency_contraception", 1),
        ("clinical:pep", 1),
        ("clinical:pep", 2),
    ]
    status = await journey.status()
    assert status.escalation_level == c.LEVEL_COORDINATOR
    # Care reached for emergency contraception: that window is MET.
    await journey.update(
        c.UPDATE_MEDICAL_CARE,
        c.MedicalCareConfirmed(
            event_id=new_event_id(),
            item=c.ClinicalItem.EMERGENCY_CONTRACEPTION,
            at=await bed.now(),
        ),
    )
    status = await journey.until(lambda s: s.clinical_windows[1].status == "MET")
    # PEP's window closes unmet: MISSED, regional escalation.
    await bed.skip(timedelta(hours=31))  # 63 h
    status = await journey.until(lambda s: s.clinical_windows[0].status == "MISSED")
    missed = events(status, "clinical_window_missed")[0]
    assert (missed.level, missed.detail) == (c.LEVEL_REGIONAL, "clinical:pep")
    assert near(missed.at, pep.deadline)
    notices = await journey.until_calls(ESCALATION, 4)
    assert (notices[-1].arg.wait, notices[-1].arg.level) == ("clinical:pep", c.LEVEL_REGIONAL)
    assert [(v.wait, v.level) for v in status.escalations] == [("clinical:pep", 3)]
    await journey.until_search_attributes(lambda v: v.get(c.SA_ESCALATION_LEVEL) == 3)
    # No more rungs for emergency contraception (met), ever.
    await bed.skip(timedelta(hours=60))
    assert len(journey.calls(ESCALATION)) == 4
    # Care reached late: recorded, and the open escalation is cleared.
    await journey.update(
        c.UPDATE_MEDICAL_CARE,
        c.MedicalCareConfirmed(
            event_id=new_event_id(), item=c.ClinicalItem.PEP, at=await bed.now()
        ),
    )
    status = await journey.until(lambda s: s.escalation_level == 0)
    assert status.clinical_windows[0].status == "MISSED"
    assert events(status, "medical_care_confirmed")[0].detail == "pep:after_window"


async def test_clinical_windows_only_when_they_apply(bed: JourneyTestbed) -> None:
    opened = await bed.now()
    late = await bed.start(
        needs=[],
        violence_type=c.ViolenceType.SEXUAL_ASSAULT,
        incident_at=opened - timedelta(hours=80),
        opened_at=opened,
    )
    # 80 h after the incident: PEP's window had closed before intake; EC is open.
    status = await late.until(lambda s: len(s.clinical_windows) == 2)
    assert [w.status for w in status.clinical_windows] == ["MISSED", "OPEN"]
    assert events(status, "clinical_window_missed")[0].detail == "clinical:pep:before_intake"
    too_old = await bed.start(
        needs=[],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=130),
        opened_at=opened,
    )
    other = await bed.start(
        needs=[],
        violence_type=c.ViolenceType.PHYSICAL_ASSAULT,
        incident_at=opened - timedelta(hours=2),
        opened_at=opened,
    )
    for journey in (too_old, other):
        status = await journey.until(lambda s: s.stage is c.Stage.FOLLOW_UP)
        assert status.clinical_windows == []


async def test_follow_ups_recur_and_a_missed_one_escalates(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[], risk=c.Risk.HIGH)  # every 14 days
    status = await journey.until(lambda s: s.stage is c.Stage.FOLLOW_UP)
    first_due = status.next_follow_up
    assert first_due is not None
    # Contacts within the interval: each one restarts the clock, nothing climbs.
    for day in (5, 11):
        await bed.skip(timedelta(days=day) - (await bed.now() - (first_due - 14 * DAY)))
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    status = await journey.until(lambda s: len(events(s, "follow_up_recorded")) == 2)
    contact_at = events(status, "follow_up_recorded")[-1].at
    assert near(status.next_follow_up, contact_at + 14 * DAY)
    assert journey.calls(ESCALATION) == [] and status.escalation_level == 0
    # Then no contact: a reminder half-way, "missed" when due (coordinators).
    await bed.skip(7 * DAY + HOUR)
    notices = await journey.until_calls(ESCALATION, 1)
    assert (notices[0].arg.wait, notices[0].arg.level) == ("follow_up", 1)
    await bed.skip(7 * DAY)
    notices = await journey.until_calls(ESCALATION, 2)
    assert (notices[1].arg.wait, notices[1].arg.level) == ("follow_up", 2)
    status = await journey.until(lambda s: bool(events(s, "follow_up_missed")))
    assert status.escalations[0].wait == "follow_up"
    await journey.until_search_attributes(lambda v: v.get(c.SA_ESCALATION_LEVEL) == 2)
    # The contact is made at last: escalation cleared, next one scheduled.
    await journey.update(
        c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
    )
    status = await journey.until(lambda s: s.escalation_level == 0)
    assert near(status.next_follow_up, await bed.now() + 14 * DAY)


async def test_closure_refused_then_approved_then_reopened(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    result = await journey.update(
        c.UPDATE_CLOSURE_REQUEST,
        c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="survivor_request"),
    )
    assert result.stage is c.Stage.CLOSURE_PENDING
    await journey.until_search_attributes(lambda v: v.get(c.SA_STAGE) == "CLOSURE_PENDING")
    refused = await journey.update(
        c.UPDATE_CLOSURE_DECISION,
        c.ClosureDecision(
            event_id=new_event_id(), approve=False, coordinator_id="coord-7", reason="plan_open"
        ),
    )
    assert refused.stage is c.Stage.SAFETY  # back where it was
    status = await journey.status()
    assert not status.closure_requested
    assert events(status, "closure_refused")[0].actor == "coord-7"

    await journey.update(
        c.UPDATE_CLOSURE_REQUEST,
        c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="needs_met"),
    )
    approved = await journey.update(
        c.UPDATE_CLOSURE_DECISION,
        c.ClosureDecision(
            event_id=new_event_id(), approve=True, coordinator_id="coord-7", reason="plan_done"
        ),
    )
    assert approved.stage is c.Stage.CLOSED
    status = await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.WITHDRAWN)
    assert status.next_follow_up is None and status.next_deadline is None
    closes = await journey.until_calls(c.SHELTER_CLOSE_REFERRAL, 1)
    assert closes[0].arg.referral_id == ref.referral_id
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_STAGE) == "CLOSED")
    assert c.SA_NEXT_DEADLINE not in sa and c.SA_PENDING_SECTORS not in sa
    # Closed: nothing climbs, follow-ups are rejected.
    await bed.skip(30 * DAY)
    assert journey.calls(ESCALATION) == []
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    assert getattr(err.value.cause, "type", None) == c.ERR_JOURNEY_CLOSED

    # She comes back: reopened with new needs and risk.
    reopened = await journey.update(
        c.UPDATE_REOPEN,
        c.ReopenRequest(
            event_id=new_event_id(),
            at=await bed.now(),
            risk=c.Risk.CRITICAL,
            needs=[c.Need.LEGAL],
            consents=[LEGAL],
        ),
    )
    assert reopened.stage is c.Stage.JUSTICE
    await journey.pending_referral(LEGAL)
    status = await journey.status()
    assert status.risk is c.Risk.CRITICAL and events(status, "reopened")
    assert status.next_follow_up is not None
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_STAGE) == "JUSTICE")
    assert sa[c.SA_RISK] == "critical"


async def test_a_closed_journey_completes_after_the_retention_period(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[])
    await journey.update(
        c.UPDATE_CLOSURE_REQUEST,
        c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="moved"),
    )
    await journey.update(
        c.UPDATE_CLOSURE_DECISION,
        c.ClosureDecision(
            event_id=new_event_id(), approve=True, coordinator_id="coord-1", reason="moved"
        ),
    )
    await bed.skip(timedelta(days=364))
    assert await journey.running()
    await bed.skip(timedelta(days=2))
    final = await journey.handle.result()
    assert final.stage is c.Stage.CLOSED
    assert events(final, "closure_approved")


async def test_duplicate_event_ids_are_answered_once(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    decision = c.ReferralDecision(
        event_id="outbox-42",
        referral_id=ref.referral_id,
        sector=SHELTER,
        accepted=True,
        decided_at=await bed.now(),
    )
    first = await journey.update(c.UPDATE_REFERRAL_DECISION, decision)
    await journey.milestone(ref, c.Milestone.STARTED)  # the state moves on
    # Delivered again (outbox retry after a crash): the first answer, not "stale".
    again = await journey.update(c.UPDATE_REFERRAL_DECISION, decision)
    assert again == c.UpdateResult(event_id="outbox-42", duplicate=True, stage=first.stage)
    status = await journey.status()
    assert len(events(status, "referral_accepted")) == 1
    assert status.referrals[0].status is c.ReferralStatus.IN_SERVICE


async def test_continue_as_new_keeps_the_whole_state(bed: JourneyTestbed) -> None:
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.LEGAL, c.Need.EMPLOYMENT], max_history_events=90
    )
    shelter = await journey.pending_referral(SHELTER)
    legal = await journey.pending_referral(LEGAL)
    accept = c.ReferralDecision(
        event_id="dup-before-can",
        referral_id=shelter.referral_id,
        sector=SHELTER,
        accepted=True,
        decided_at=await bed.now(),
    )
    await journey.update(c.UPDATE_REFERRAL_DECISION, accept)
    await journey.milestone(shelter, c.Milestone.STARTED)
    await journey.until(lambda s: any(r.sector is EMPLOYMENT for r in s.referrals))
    await journey.update(
        c.UPDATE_RISK,
        c.RiskChange(event_id=new_event_id(), risk=c.Risk.CRITICAL, at=await bed.now()),
    )
    # Legal's reminder (12 h) climbs; keep going until a new run has started.
    for _ in range(10):
        if await journey.run_id() != journey.first_run_id:
            break
        await bed.skip(HOUR)
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    assert await journey.run_id() != journey.first_run_id, "expected a continue-as-new"
    status = await journey.status()
    assert status.risk is c.Risk.CRITICAL and status.stage is c.Stage.RECOVERY
    # (shelter and legal were requested in parallel: either may come first)
    assert {(r.sector, r.status) for r in status.referrals} == {
        (SHELTER, c.ReferralStatus.IN_SERVICE),
        (LEGAL, c.ReferralStatus.PENDING),
        (EMPLOYMENT, c.ReferralStatus.PENDING),
    }
    assert events(status, "journey_opened") and events(status, "risk_reassessed")
    # Deduplication survives the new run.
    again = await journey.update(c.UPDATE_REFERRAL_DECISION, accept)
    assert again.duplicate
    # Open waits survive too: legal's deadline (24 h) still climbs in the new run.
    await bed.skip(timedelta(hours=23))
    status = await journey.until(
        lambda s: any(
            e.event == "escalated" and e.referral_id == legal.referral_id for e in s.timeline
        )
    )
    by_id = {r.referral_id: r for r in status.referrals}
    assert by_id[legal.referral_id].status is c.ReferralStatus.REROUTED
    # Idempotency keys keep counting: never reused across runs.
    keys = [call.arg.idempotency_key for call in journey.calls()]
    assert len(keys) == len(set(keys))
