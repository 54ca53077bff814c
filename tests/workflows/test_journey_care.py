"""Care (issue 15) on the time-skipping server: the medical referral and its
clinical windows, the follow-up visits, the certificate legal aid learns of,
and psychosocial support.

Shipped policy, high risk: a care unit has 2 h to accept (squeezed while a
clinical window is open), a psychosocial provider 72 h; a follow-up visit
counts as missed 3 days after it falls due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from tests.workflows.support import (
    ESCALATION,
    Journey,
    JourneyTestbed,
    events,
    near,
    new_event_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")

HEALTH, LEGAL, SHELTER = c.Sector.HEALTH, c.Sector.LEGAL, c.Sector.SHELTER
PSYCHOSOCIAL = c.Sector.PSYCHOSOCIAL
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


async def reported(
    bed: JourneyTestbed,
    after: timedelta,
    *,
    violence: c.ViolenceType = c.ViolenceType.RAPE,
    needs: tuple[c.Need, ...] = (c.Need.MEDICAL,),
    consents: tuple[c.Sector, ...] = (HEALTH,),
    **fields: Any,
) -> tuple[Journey, datetime]:
    """A case registered `after` the incident, as intake starts it."""
    opened = await bed.now()
    incident = opened - after
    journey = await bed.start(
        needs=list(needs),
        consents=list(consents),
        violence_type=violence,
        incident_at=incident,
        opened_at=opened,
        health=c.HealthNeeds(
            care=c.care_called_for(violence, incident, opened), incident_at=incident
        ),
        **fields,
    )
    return journey, incident


async def eventually(check: Callable[[], T], *, within: float = 15.0) -> T:
    """Poll `check` (real time, short steps) until it returns something true."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, "condition not reached"
            return found
        await asyncio.sleep(0.05)


def escalations_of(journey: Journey, prefix: str) -> list[c.EscalationNotice]:
    return [call.arg for call in journey.calls(ESCALATION) if call.arg.wait.startswith(prefix)]


def clinical_notices(journey: Journey) -> list[tuple[str, int]]:
    return [(n.wait, n.level) for n in escalations_of(journey, "clinical:")]


async def test_a_rape_reported_60_hours_later_opens_the_medical_referral_at_once(
    bed: JourneyTestbed,
) -> None:
    journey, incident = await reported(bed, 60 * HOUR)
    opened = incident + 60 * HOUR
    ref = await journey.pending_referral(HEALTH)
    assert ref.provider_id == "unit-a" and near(ref.requested_at, opened)
    status = await journey.until(lambda s: len(s.clinical_windows) == 2)
    pep, ec = status.clinical_windows
    assert (pep.item, pep.status) == (c.ClinicalItem.PEP, "OPEN")
    assert pep.deadline == opened + 12 * HOUR  # 12 h left of the 72 h
    assert (ec.item, ec.deadline) == (c.ClinicalItem.EMERGENCY_CONTRACEPTION, opened + 60 * HOUR)
    # The care unit has its 2 h (its last rung, at 4 h, falls before PEP's closes).
    assert ref.deadline == ref.requested_at + 2 * HOUR
    # It learns the care she needs now, the incident's time, nothing else.
    request = journey.calls(c.HEALTH_REQUEST_REFERRAL)[0].arg
    assert request.health == c.HealthNeeds(
        care=["pep", "emergency_contraception", "forensic_exam", "certificate"],
        incident_at=incident,
    )
    assert request.shelter is None and request.legal is None and request.psychosocial is None
    # Immediate care goes alongside safety.
    assert status.stage is c.Stage.SAFETY
    sa = await journey.until_search_attributes(lambda v: v.get(c.SA_PENDING_SECTORS) == ["health"])
    assert sa[c.SA_STAGE] == "SAFETY"


async def test_pep_started_closes_its_window_met_and_a_declined_one_never_escalates(
    bed: JourneyTestbed,
) -> None:
    journey, _ = await reported(bed, 60 * HOUR)
    ref = await journey.pending_referral(HEALTH)
    await journey.decide(ref)
    await journey.care(ref, c.CareEvent.PEP_STARTED)
    status = await journey.until(lambda s: s.clinical_windows[0].status == "MET")
    assert events(status, "clinical_window_met")[0].detail == "clinical:pep"
    recorded = events(status, "clinical_care_recorded")[0]
    assert (recorded.sector, recorded.referral_id, recorded.detail) == (
        HEALTH,
        ref.referral_id,
        "pep_started",
    )
    # She declines emergency contraception: her decision, closed, no escalation.
    await journey.care(ref, c.CareEvent.EMERGENCY_CONTRACEPTION_DECLINED)
    status = await journey.until(lambda s: s.clinical_windows[1].status == "DECLINED")
    assert events(status, "clinical_window_declined")[0].detail == (
        "clinical:emergency_contraception"
    )
    # Past both closing times: no rung of either window, ever.
    await bed.skip(61 * HOUR)
    status = await journey.status()
    assert [w.status for w in status.clinical_windows] == ["MET", "DECLINED"]
    assert clinical_notices(journey) == []
    assert not events(status, "clinical_window_missed")
    assert status.escalations == [] and status.escalation_level == 0
    # Seen by the unit (its first visit): the stage moves on.
    await journey.milestone(ref, c.Milestone.STARTED)
    status = await journey.until(lambda s: s.stage is c.Stage.RECOVERY)
    assert status.referrals[0].status is c.ReferralStatus.IN_SERVICE


async def test_an_unanswered_medical_referral_climbs_before_the_window_closes(
    bed: JourneyTestbed,
) -> None:
    # 70 h after the incident: PEP's window closes in 2 h. The unit's 2 h
    # (high risk) shrink to 1 h, so the whole ladder (reminder, coordinators
    # and another unit, regional) falls before it closes.
    journey, incident = await reported(bed, 70 * HOUR)
    closes = incident + 72 * HOUR
    first = await journey.pending_referral(HEALTH)
    assert near(first.deadline, first.requested_at + HOUR)
    await bed.skip(31 * MINUTE)
    reminders = await journey.until_calls(c.HEALTH_REMIND_PROVIDER, 1)
    assert reminders[0].arg.referral_id == first.referral_id
    await bed.skip(30 * MINUTE)  # 61 min: coordinators, and the next unit
    status = await journey.until(lambda s: len(s.referrals) == 2)
    first_after, second = status.referrals
    assert first_after.status is c.ReferralStatus.REROUTED
    assert second.provider_id == "unit-b" and second.status is c.ReferralStatus.PENDING
    # The new unit's wait is squeezed too: its last rung on the closing time.
    assert second.deadline is not None
    assert near(second.deadline, second.requested_at + (closes - second.requested_at) / 2)
    escalated = await eventually(lambda: escalations_of(journey, "health_accept"))
    assert [(n.level, n.referral_id) for n in escalated] == [(2, first.referral_id)]
    await bed.skip(HOUR)  # past the window
    status = await journey.until(lambda s: s.clinical_windows[0].status == "MISSED")
    rungs = [
        e
        for e in status.timeline
        if e.sector is HEALTH and e.event in ("reminder", "escalated", "regional_escalation")
    ]
    assert {e.event for e in rungs} == {"reminder", "escalated", "regional_escalation"}
    assert all(e.at <= closes + 5 * timedelta(seconds=1) for e in rungs)
    assert status.referrals[-1].status is c.ReferralStatus.EXPIRED  # no unit left


async def test_the_squeeze_follows_the_risk_level_and_the_window(bed: JourneyTestbed) -> None:
    # Medium risk, 60 h after: the unit's 12 h would climb past PEP's 12 h
    # left; squeezed to 6 h (regional at 12 h). A risk raised later keeps
    # the squeeze, counted from when the wait opened.
    journey, _ = await reported(bed, 60 * HOUR, risk=c.Risk.MEDIUM)
    ref = await journey.pending_referral(HEALTH)
    assert near(ref.deadline, ref.requested_at + 6 * HOUR)
    await journey.update(
        c.UPDATE_RISK,
        c.RiskChange(event_id=new_event_id(), risk=c.Risk.HIGH, at=await bed.now()),
    )
    status = await journey.until(lambda s: s.risk is c.Risk.HIGH)
    assert near(status.referrals[0].deadline, ref.requested_at + 2 * HOUR)
    # No window open (physical assault): the policy's deadline as it stands.
    other, _ = await reported(
        bed, 60 * HOUR, violence=c.ViolenceType.PHYSICAL_ASSAULT, risk=c.Risk.MEDIUM
    )
    plain = await other.pending_referral(HEALTH)
    assert near(plain.deadline, plain.requested_at + 12 * HOUR)
    assert (await other.status()).clinical_windows == []
    request = other.calls(c.HEALTH_REQUEST_REFERRAL)[0].arg
    assert request.health.care == ["certificate"]


async def test_without_consent_to_health_care_the_windows_are_tracked_as_before(
    bed: JourneyTestbed,
) -> None:
    journey, _ = await reported(bed, 10 * HOUR, consents=())
    status = await journey.until(lambda s: len(s.clinical_windows) == 2)
    assert status.referrals == [] and status.stage is c.Stage.FOLLOW_UP
    await bed.skip(16 * HOUR)  # PEP's reminder (62 h left at intake: 15.5 h)
    notices = await journey.until_calls(ESCALATION, 1)
    assert (notices[0].arg.wait, notices[0].arg.level) == ("clinical:pep", 1)
    assert journey.calls(c.HEALTH_REQUEST_REFERRAL) == []
    # Intake confirms care reached outside the network.
    await journey.update(
        c.UPDATE_MEDICAL_CARE,
        c.MedicalCareConfirmed(
            event_id=new_event_id(), item=c.ClinicalItem.PEP, at=await bed.now()
        ),
    )
    await journey.until(lambda s: s.clinical_windows[0].status == "MET")
    # She consents later: the referral is made at once.
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(event_id=new_event_id(), sector=HEALTH, granted=True, at=await bed.now()),
    )
    await journey.pending_referral(HEALTH)


async def test_follow_up_visits_fall_due_at_two_weeks_three_months_six_months(
    bed: JourneyTestbed,
) -> None:
    journey, incident = await reported(bed, 10 * HOUR, violence=c.ViolenceType.PHYSICAL_ASSAULT)
    ref = await journey.pending_referral(HEALTH)
    await journey.decide(ref)
    status = await journey.until(lambda s: bool(events(s, "health_visits_scheduled")))
    assert events(status, "health_visits_scheduled")[0].detail == (
        "two_weeks,three_months,six_months"
    )

    def visit_notices(level: int | None = None) -> list[c.EscalationNotice]:
        return [
            notice
            for notice in escalations_of(journey, "health_visit:")
            if level is None or notice.level == level
        ]

    async def skip_to(at: datetime) -> None:
        await bed.skip(at - await bed.now())

    # Nothing before two weeks.
    await skip_to(incident + 14 * DAY - HOUR)
    assert visit_notices() == [] and journey.calls(c.HEALTH_REMIND_PROVIDER) == []
    # Two weeks: the unit and the case worker are reminded; she comes.
    await skip_to(incident + 14 * DAY + MINUTE)
    reminders = await journey.until_calls(c.HEALTH_REMIND_PROVIDER, 1)
    assert reminders[0].arg.referral_id == ref.referral_id
    status = await journey.until(lambda s: bool(events(s, "health_visit_due")))
    due = events(status, "health_visit_due")[0]
    assert due.detail == "health_visit:two_weeks" and near(due.at, incident + 14 * DAY)
    (notice,) = await eventually(visit_notices)
    assert (notice.wait, notice.level, notice.referral_id) == (
        "health_visit:two_weeks",
        c.LEVEL_REMINDER,
        ref.referral_id,
    )
    assert notice.due_at == incident + 17 * DAY  # missed 3 days after it fell due
    assert any(e.wait == "health_visit:two_weeks" for e in status.escalations)
    await journey.care(ref, c.CareEvent.FOLLOW_UP_VISIT_DONE, visit=c.FollowUpVisit.TWO_WEEKS)
    status = await journey.until(
        lambda s: not any(e.wait.startswith("health_visit:") for e in s.escalations)
    )
    # Three months (91 days): due, and missed three days later (coordinators).
    await skip_to(incident + 91 * DAY + MINUTE)
    status = await journey.until(lambda s: len(events(s, "health_visit_due")) == 2)
    assert events(status, "health_visit_due")[1].detail == "health_visit:three_months"
    await journey.until_calls(c.HEALTH_REMIND_PROVIDER, 2)
    await skip_to(incident + 94 * DAY + MINUTE)
    status = await journey.until(lambda s: bool(events(s, "health_visit_missed")))
    missed = await eventually(lambda: visit_notices(c.LEVEL_COORDINATOR))
    assert [(n.wait, n.level) for n in missed] == [
        ("health_visit:three_months", c.LEVEL_COORDINATOR)
    ]
    await journey.care(ref, c.CareEvent.FOLLOW_UP_VISIT_DONE, visit=c.FollowUpVisit.THREE_MONTHS)
    # Six months (182 days).
    await skip_to(incident + 182 * DAY + MINUTE)
    status = await journey.until(lambda s: len(events(s, "health_visit_due")) == 3)
    assert events(status, "health_visit_due")[2].detail == "health_visit:six_months"
    assert near(events(status, "health_visit_due")[2].at, incident + 182 * DAY)
    # Declining health care ends the follow-up.
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(),
            sector=HEALTH,
            granted=False,
            at=await bed.now(),
            reason="declined",
        ),
    )
    status = await journey.until(lambda s: bool(events(s, "health_visits_cancelled")))
    assert not any(e.wait.startswith("health_visit:") for e in status.escalations)
    await journey.until_calls(c.HEALTH_PURGE_CASE, 1)


async def test_legal_aid_learns_that_a_certificate_exists(bed: JourneyTestbed) -> None:
    journey, _ = await reported(
        bed,
        5 * HOUR,
        violence=c.ViolenceType.PHYSICAL_ASSAULT,
        needs=(c.Need.MEDICAL, c.Need.LEGAL),
        consents=(HEALTH, LEGAL),
    )
    health = await journey.pending_referral(HEALTH)
    legal = await journey.pending_referral(LEGAL)
    await journey.decide(health)
    issued = await bed.now() - HOUR
    await journey.care(health, c.CareEvent.CERTIFICATE_ISSUED, at=issued, itt_days=25)
    notes = await journey.until_calls(c.LEGAL_NOTE_CERTIFICATE, 1)
    assert notes[0].arg == c.CertificateNotice(
        referral_id=legal.referral_id,
        issued_at=issued,
        itt_days=25,
        idempotency_key=notes[0].arg.idempotency_key,
    )
    # The first lawyer declines: the next one learns of it too, once.
    await journey.decide(legal, accepted=False, reason="NO_CAPACITY")
    status = await journey.until(lambda s: len([r for r in s.referrals if r.sector is LEGAL]) == 2)
    second = [r for r in status.referrals if r.sector is LEGAL][-1]
    notes = await journey.until_calls(c.LEGAL_NOTE_CERTIFICATE, 2)
    assert notes[1].arg.referral_id == second.referral_id
    # Re-issued with other ITT days: the latest one.
    await journey.care(health, c.CareEvent.CERTIFICATE_ISSUED, itt_days=30)
    notes = await journey.until_calls(c.LEGAL_NOTE_CERTIFICATE, 3)
    assert (notes[2].arg.referral_id, notes[2].arg.itt_days) == (second.referral_id, 30)
    assert len({n.arg.idempotency_key for n in notes}) == 3
    # The timeline says a certificate was recorded, never its ITT days.
    status = await journey.status()
    details = [e.detail for e in events(status, "clinical_care_recorded")]
    assert details == ["certificate_issued", "certificate_issued"]

    # Without consent to legal aid, legal aid learns nothing.
    alone, _ = await reported(bed, 5 * HOUR, violence=c.ViolenceType.PHYSICAL_ASSAULT)
    unit = await alone.pending_referral(HEALTH)
    await alone.decide(unit)
    await alone.care(unit, c.CareEvent.CERTIFICATE_ISSUED, itt_days=3)
    await alone.until(lambda s: bool(events(s, "clinical_care_recorded")))
    await bed.skip(MINUTE)
    assert alone.calls(c.LEGAL_NOTE_CERTIFICATE) == []


async def rejected(journey: Journey, event: c.ClinicalCareRecorded) -> str | None:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(c.UPDATE_CLINICAL_CARE, event)
    return getattr(err.value.cause, "type", None)


async def test_clinical_care_is_validated(bed: JourneyTestbed) -> None:
    journey, _ = await reported(
        bed, 10 * HOUR, needs=(c.Need.MEDICAL, c.Need.SHELTER), consents=(HEALTH, SHELTER)
    )
    ref = await journey.pending_referral(HEALTH)
    shelter = await journey.pending_referral(SHELTER)
    now = await bed.now()

    def care(event: c.CareEvent, **fields: Any) -> c.ClinicalCareRecorded:
        values: dict[str, Any] = {
            "event_id": new_event_id(),
            "referral_id": ref.referral_id,
            "sector": HEALTH,
            "event": event,
            "at": now,
            "recorded_at": now,
        }
        values.update(fields)
        return c.ClinicalCareRecorded(**values)

    before = await journey.status()
    # Not accepted yet: nothing to record care on.
    assert await rejected(journey, care(c.CareEvent.PEP_STARTED)) == c.ERR_STALE_REFERRAL
    await journey.decide(ref)
    before = await journey.status()
    for bad, error in (
        (care(c.CareEvent.PEP_STARTED, referral_id="hlt-0000000000000000"), c.ERR_UNKNOWN_REFERRAL),
        (care(c.CareEvent.PEP_STARTED, referral_id=shelter.referral_id), c.ERR_INVALID),
        (care(c.CareEvent.CERTIFICATE_ISSUED), c.ERR_INVALID),
        (care(c.CareEvent.CERTIFICATE_ISSUED, itt_days=-1), c.ERR_INVALID),
        (care(c.CareEvent.CERTIFICATE_ISSUED, itt_days=c.MAX_ITT_DAYS + 1), c.ERR_INVALID),
        (care(c.CareEvent.PEP_STARTED, itt_days=3), c.ERR_INVALID),
        (care(c.CareEvent.FOLLOW_UP_VISIT_DONE), c.ERR_INVALID),
        (care(c.CareEvent.PEP_STARTED, visit=c.FollowUpVisit.TWO_WEEKS), c.ERR_INVALID),
    ):
        assert await rejected(journey, bad) == error, bad.event
    after = await journey.status()
    assert after.timeline == before.timeline
    assert after.clinical_windows == before.clinical_windows
    # The same record twice (an outbox retry): answered once.
    once = care(c.CareEvent.CERTIFICATE_ISSUED, itt_days=0)
    first = await journey.update(c.UPDATE_CLINICAL_CARE, once)
    again = await journey.update(c.UPDATE_CLINICAL_CARE, once)
    assert again.duplicate and not first.duplicate
    status = await journey.status()
    assert len(events(status, "clinical_care_recorded")) == 1


async def test_psychosocial_support_runs_alongside_justice_and_recovery(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.LEGAL, c.Need.PSYCHOSOCIAL],
        consents=[SHELTER, LEGAL, PSYCHOSOCIAL],
        psychosocial=c.PsychosocialNeeds(support=["counselling"], languages=["ary"]),
    )
    support = await journey.pending_referral(PSYCHOSOCIAL)
    await journey.pending_referral(SHELTER)
    legal = await journey.pending_referral(LEGAL)
    # Asked at once, like legal aid (not after safety, unlike employment).
    assert support.deadline == support.requested_at + 72 * HOUR
    request = journey.calls(c.PSYCHOSOCIAL_REQUEST_REFERRAL)[0].arg
    assert request.psychosocial == c.PsychosocialNeeds(support=["counselling"], languages=["ary"])
    assert request.shelter is None and request.health is None
    status = await journey.status()
    assert status.stage is c.Stage.SAFETY
    sa = await journey.until_search_attributes(
        lambda v: set(v.get(c.SA_PENDING_SECTORS, [])) == {"shelter", "legal", "psychosocial"}
    )
    assert sa[c.SA_STAGE] == "SAFETY"
    # The usual handshake: accepted, first session, completed.
    await journey.decide(support)
    await journey.milestone(support, c.Milestone.STARTED)
    # Shelter no longer wanted: justice, with support alongside.
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(event_id=new_event_id(), sector=SHELTER, granted=False, at=await bed.now()),
    )
    await journey.until(lambda s: s.stage is c.Stage.JUSTICE)
    await journey.decide(legal)
    await journey.milestone(legal, c.Milestone.STARTED)
    await journey.milestone(legal, c.Milestone.COMPLETED)
    # Only support goes on: recovery.
    await journey.until(lambda s: s.stage is c.Stage.RECOVERY)
    await journey.milestone(support, c.Milestone.COMPLETED)
    status = await journey.until(lambda s: s.stage is c.Stage.FOLLOW_UP)
    assert [r.status for r in status.referrals if r.sector is PSYCHOSOCIAL] == [
        c.ReferralStatus.COMPLETED
    ]


async def test_the_care_state_survives_continue_as_new(bed: JourneyTestbed) -> None:
    journey, incident = await reported(
        bed,
        10 * HOUR,
        violence=c.ViolenceType.PHYSICAL_ASSAULT,
        needs=(c.Need.MEDICAL, c.Need.LEGAL),
        consents=(HEALTH, LEGAL),
        max_history_events=80,
    )
    health = await journey.pending_referral(HEALTH)
    await journey.pending_referral(LEGAL)
    await journey.decide(health)
    await journey.care(health, c.CareEvent.CERTIFICATE_ISSUED, itt_days=8)
    await journey.until_calls(c.LEGAL_NOTE_CERTIFICATE, 1)
    for _ in range(15):
        if await journey.run_id() != journey.first_run_id:
            break
        await bed.skip(HOUR)
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    assert await journey.run_id() != journey.first_run_id, "expected a continue-as-new"
    # The visits and the certificate came along: the visit falls due in the
    # new run, and no legal aid referral is told of the same certificate twice
    # (the unanswered one is rerouted meanwhile: the next one is told).
    await bed.skip(incident + 14 * DAY + MINUTE - await bed.now())
    status = await journey.until(lambda s: bool(events(s, "health_visit_due")))
    assert events(status, "health_visit_due")[0].detail == "health_visit:two_weeks"
    await journey.until_calls(c.HEALTH_REMIND_PROVIDER, 1)
    told = [call.arg.referral_id for call in journey.calls(c.LEGAL_NOTE_CERTIFICATE)]
    assert len(told) == len(set(told)) >= 1
