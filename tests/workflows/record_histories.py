"""Record journey histories from real runs, as replay fixtures.

    .venv/bin/python -m tests.workflows.record_histories

    .venv/bin/python -m tests.workflows.record_histories SCENARIO ...

Runs each scenario on the time-skipping server against the fake
collaborators and writes every run's history (`WorkflowHistory.to_json()`)
to tests/workflows/histories/<scenario>@<workflow id>[.<n>].json. The replay
test replays them all with the current workflow code: a change that is not
deterministic for a running journey fails it.

A fixture is never recorded over: it is what a journey started by older code
looks like, and running journeys do not change when the code does. Asked for
a scenario that already has fixtures, the script refuses before running
anything; without arguments it records only the scenarios that have none.
New behaviour (a change behind `workflow.patched(...)`, a new path) gets a
new scenario with a new name, next to the old fixtures, so both code paths
stay covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from masar.platform.assertions import Actor
from tests.conftest import binary
from tests.workflows.support import (
    CaseScript,
    Journey,
    JourneyTestbed,
    events,
    journey_testbed,
    new_event_id,
    seconds_policy,
)

HISTORIES = Path(__file__).with_name("histories")
SECONDS_QUEUE = "test-journey-seconds"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)

Scenario = Callable[[JourneyTestbed], Awaitable[Journey]]


async def full_chain(bed: JourneyTestbed) -> Journey:
    """Shelter accepts and checks in, legal aid accepts, employment enrols."""
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL, c.Need.EMPLOYMENT])
    shelter = await journey.pending_referral(c.Sector.SHELTER)
    legal = await journey.pending_referral(c.Sector.LEGAL)
    await journey.decide(shelter)
    await journey.milestone(shelter, c.Milestone.STARTED)
    await journey.decide(legal)
    await journey.milestone(legal, c.Milestone.STARTED)
    employment = await journey.pending_referral(c.Sector.EMPLOYMENT)
    await journey.decide(employment)
    await journey.milestone(employment, c.Milestone.STARTED)
    await journey.milestone(employment, c.Milestone.COMPLETED)
    await journey.until(lambda s: s.stage is c.Stage.JUSTICE)
    return journey


async def ladder_to_expiry(bed: JourneyTestbed) -> Journey:
    """Unanswered: reminder, escalation (reroute to the second provider),
    reminder, escalation (none left), regional escalation, EXPIRED."""
    script = CaseScript()
    script.providers["shelter"] = ["shelter-a", "shelter-b"]
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    await journey.pending_referral(c.Sector.SHELTER)
    for _ in range(7):
        await bed.skip(HOUR)
    await journey.until(lambda s: s.referrals[-1].status is c.ReferralStatus.EXPIRED)
    return journey


async def declines_and_consent(bed: JourneyTestbed) -> Journey:
    """A decline goes to the next provider; a risk change re-times the wait;
    consent withdrawn purges; consent granted again refers anew."""
    journey = await bed.start(needs=[c.Need.SHELTER, c.Need.LEGAL], risk=c.Risk.MEDIUM)
    shelter = await journey.pending_referral(c.Sector.SHELTER)
    await journey.decide(shelter, accepted=False, reason="NO_CAPACITY")
    await journey.until(lambda s: len([r for r in s.referrals if r.sector == "shelter"]) == 2)
    await bed.skip(3 * HOUR)
    await journey.update(
        c.UPDATE_RISK,
        c.RiskChange(event_id=new_event_id(), risk=c.Risk.CRITICAL, at=await bed.now()),
    )
    await journey.until(lambda s: any(e.event == "escalated" for e in s.timeline))
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(), sector=c.Sector.LEGAL, granted=False, at=await bed.now()
        ),
    )
    await journey.until(lambda s: any(e.event == "case_purged" for e in s.timeline))
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(), sector=c.Sector.LEGAL, granted=True, at=await bed.now()
        ),
    )
    await journey.until(
        lambda s: (
            len([r for r in s.referrals if r.sector == "legal"]) == 2
            and s.referrals[-1].status is c.ReferralStatus.PENDING
        )
    )
    return journey


async def clinical_windows(bed: JourneyTestbed) -> Journey:
    opened = await bed.now()
    journey = await bed.start(
        needs=[c.Need.MEDICAL],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=10),
        opened_at=opened,
    )
    await bed.skip(32 * HOUR)
    await journey.update(
        c.UPDATE_MEDICAL_CARE,
        c.MedicalCareConfirmed(
            event_id=new_event_id(),
            item=c.ClinicalItem.EMERGENCY_CONTRACEPTION,
            at=await bed.now(),
        ),
    )
    await bed.skip(31 * HOUR)
    await journey.until(lambda s: s.clinical_windows[0].status == "MISSED")
    return journey


async def coordinators_and_closure(bed: JourneyTestbed) -> Journey:
    """Rejected and duplicate updates, reassignment, extension, follow-ups,
    closure refused then approved, reopening."""
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(c.Sector.SHELTER)
    with contextlib.suppress(WorkflowUpdateFailedError):
        await journey.update(
            c.UPDATE_EXTEND,
            c.DeadlineExtension(
                event_id=new_event_id(),
                target=ref.referral_id,
                extend_by_seconds=0,
                coordinator_id="coord-1",
                reason="x",
            ),
        )
    await journey.update(
        c.UPDATE_EXTEND,
        c.DeadlineExtension(
            event_id="extend-1",
            target=ref.referral_id,
            extend_by_seconds=1800,
            coordinator_id="coord-1",
            reason="provider_asked",
        ),
    )
    await journey.update(
        c.UPDATE_REASSIGN,
        c.Reassignment(
            event_id=new_event_id(),
            referral_id=ref.referral_id,
            provider_id="shelter-c",
            coordinator_id="coord-1",
            reason="closer",
        ),
    )
    new = (await journey.status()).referrals[-1]
    decision = c.ReferralDecision(
        event_id="decision-1",
        referral_id=new.referral_id,
        sector=c.Sector.SHELTER,
        accepted=True,
        decided_at=await bed.now(),
    )
    await journey.update(c.UPDATE_REFERRAL_DECISION, decision)
    await journey.update(c.UPDATE_REFERRAL_DECISION, decision)  # duplicate
    await journey.milestone(new, c.Milestone.STARTED)
    await bed.skip(timedelta(days=8))
    await journey.update(
        c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
    )
    for approve in (False, True):
        await journey.update(
            c.UPDATE_CLOSURE_REQUEST,
            c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="needs_met"),
        )
        await journey.update(
            c.UPDATE_CLOSURE_DECISION,
            c.ClosureDecision(
                event_id=new_event_id(), approve=approve, coordinator_id="coord-1", reason="r"
            ),
        )
    await journey.update(
        c.UPDATE_REOPEN,
        c.ReopenRequest(event_id=new_event_id(), at=await bed.now(), needs=[c.Need.LEGAL]),
    )
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(), sector=c.Sector.LEGAL, granted=True, at=await bed.now()
        ),
    )
    await journey.pending_referral(c.Sector.LEGAL)
    return journey


async def continue_as_new(bed: JourneyTestbed) -> Journey:
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.LEGAL], max_history_events=50, task_queue=SECONDS_QUEUE
    )
    shelter = await journey.pending_referral(c.Sector.SHELTER)
    await journey.decide(shelter)
    for _ in range(8):
        await bed.skip(timedelta(seconds=90))
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    if await journey.run_id() == journey.first_run_id:
        raise RuntimeError("continue_as_new scenario did not continue as new")
    return journey


async def retries_exhausted(bed: JourneyTestbed) -> Journey:
    """The shelter service is down for all five attempts of the request: the
    lane notes the outage, waits a minute and asks again with the same key."""
    script = CaseScript(outages={c.SHELTER_REQUEST_REFERRAL: 5})
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    await bed.skip(5 * MINUTE)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    await journey.until(lambda s: bool(events(s, "collaborator_unavailable")))
    await journey.decide(ref)
    await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
    return journey


async def activity_timeout(bed: JourneyTestbed) -> Journey:
    """The shelter never answers: each of the five attempts ends on the 30 s
    start-to-close timeout, the journey sees the activity time out, notes the
    outage and its lane asks again a minute later (same idempotency key).

    The test server does not skip time while an activity runs, so the
    timeouts take real time (about 3 minutes to record); time is skipped only
    once nothing runs."""
    script = CaseScript(hangs={c.SHELTER_REQUEST_REFERRAL: 5})
    journey = await bed.start(needs=[c.Need.SHELTER], script=script)
    await journey.until(lambda s: bool(events(s, "collaborator_unavailable")), within=240)
    await bed.skip(61 * SECOND)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    calls = journey.calls(c.SHELTER_REQUEST_REFERRAL)
    if len(calls) != 6 or len({call.arg.idempotency_key for call in calls}) != 1:
        raise RuntimeError("activity_timeout scenario: expected five timed-out attempts")
    await journey.decide(ref)
    await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
    return journey


async def reroute_queued_in_lane(bed: JourneyTestbed) -> Journey:
    """A reroute queued behind another action in the same lane, and actions
    queued behind the reroute (seconds policy: the shelter has 100 s).

    The reminder (50 s) finds the shelter service down: five attempts, then
    the lane waits a minute. At 100 s the escalation owes a reroute, which
    queues in the shelter lane behind the reminder. At ~125 s the reminder
    goes through and the reroute's request starts; while it is under way the
    survivor withdraws her shelter consent, which owes the close of the first
    referral and a purge behind the reroute. The request then returns a
    referral nobody wants: its close goes right behind the request, ahead of
    the two queued earlier (close new, close first, purge)."""
    script = CaseScript(outages={c.SHELTER_REMIND_PROVIDER: 5})
    journey = await bed.start(needs=[c.Need.SHELTER], script=script, task_queue=SECONDS_QUEUE)
    await journey.pending_referral(c.Sector.SHELTER)
    script.holds[c.SHELTER_REQUEST_REFERRAL] = 1
    await bed.skip(110 * SECOND)
    status = await journey.until(lambda s: bool(events(s, "escalated")))
    if len(status.referrals) != 1 or not events(status, "collaborator_unavailable"):
        raise RuntimeError("reroute_queued_in_lane: the reroute is not queued behind the reminder")
    await bed.skip(20 * SECOND)
    await asyncio.wait_for(script.held.wait(), timeout=15)
    if len(journey.calls(c.SHELTER_REMIND_PROVIDER)) != 6:
        raise RuntimeError("reroute_queued_in_lane: the reminder did not go first")
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(), sector=c.Sector.SHELTER, granted=False, at=await bed.now()
        ),
    )
    script.release.set()
    await journey.until(lambda s: bool(events(s, "case_purged")))
    closes = journey.calls(c.SHELTER_CLOSE_REFERRAL)
    first, second = (await journey.status()).referrals
    if [call.arg.referral_id for call in closes] != [second.referral_id, first.referral_id]:
        raise RuntimeError("reroute_queued_in_lane: unexpected close order")
    return journey


async def transfers(bed: JourneyTestbed) -> Journey:
    """Transfers between organisations (shipped policy, high risk: 24 h). The
    first goes to B, is reminded at 12 h, redirected by a coordinator to C
    and accepted by C; the second, from C back to A, is never answered:
    reminder, coordinators, lapse."""
    journey = await bed.start(needs=[], risk=c.Risk.HIGH)
    now = await bed.now()
    first = c.TransferRequest(
        event_id=new_event_id(),
        transfer_id="trf-0000000000000001",
        from_organisation_id="org-a",
        to_organisation_id="org-b",
        reason=c.TransferReason.CLOSER_TO_HOME,
        requested_at=now,
        consent_at=now,
    )
    await journey.update(c.UPDATE_TRANSFER_REQUEST, first)
    await bed.skip(13 * HOUR)
    await journey.until_calls(c.INTAKE_RECORD_TRANSFER_RUNG, 1)
    now = await bed.now()
    await journey.update(
        c.UPDATE_TRANSFER_REDIRECT,
        c.TransferRedirect(
            event_id=new_event_id(),
            transfer_id=first.transfer_id,
            to_organisation_id="org-c",
            coordinator_id="coord-1",
            redirected_at=now,
            consent_at=now,
        ),
    )
    await journey.update(
        c.UPDATE_TRANSFER_DECISION,
        c.TransferDecision(
            event_id=new_event_id(),
            transfer_id=first.transfer_id,
            to_organisation_id="org-c",
            accepted=True,
            decided_at=await bed.now(),
        ),
    )
    now = await bed.now()
    await journey.update(
        c.UPDATE_TRANSFER_REQUEST,
        c.TransferRequest(
            event_id=new_event_id(),
            transfer_id="trf-0000000000000002",
            from_organisation_id="org-c",
            to_organisation_id="org-a",
            reason=c.TransferReason.CAPACITY,
            requested_at=now,
            consent_at=now,
        ),
    )
    await bed.skip(49 * HOUR)
    status = await journey.until(
        lambda s: len(s.transfers) == 2 and s.transfers[1].status is c.TransferStatus.LAPSED
    )
    if status.transfers[0].status is not c.TransferStatus.ACCEPTED:
        raise RuntimeError("transfers: the first transfer was not accepted")
    await journey.until_calls(c.INTAKE_RECORD_TRANSFER_RUNG, 4)
    return journey


async def authenticated_updates(bed: JourneyTestbed) -> Journey:
    """Updates carrying signed actor assertions (the authenticated-Updates
    patch): refused ones (unsigned, a coordinator of another region, a replay)
    write nothing; a coordinator's extension whose timeline actor comes from
    the assertion; staff decisions and milestones signed by the shelter;
    medical care validated; consent withdrawn by intake."""
    opened = await bed.now()
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.MEDICAL],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=10),
        opened_at=opened,
    )
    ref = await journey.pending_referral(c.Sector.SHELTER)
    extension = c.DeadlineExtension(
        event_id=new_event_id(),
        target=ref.referral_id,
        extend_by_seconds=1800,
        coordinator_id="not-the-actor",
        reason="provider_asked",
    )
    with contextlib.suppress(WorkflowUpdateFailedError):
        await journey.update(c.UPDATE_EXTEND, extension, sign=False)
    elsewhere = Actor("coord-9", "coordinator", region="oriental")
    with contextlib.suppress(WorkflowUpdateFailedError):
        await journey.update(c.UPDATE_EXTEND, extension, actor=elsewhere)
    signed = await journey.signed(
        c.UPDATE_EXTEND, extension, actor=Actor("coord-1", "coordinator", region="fes-meknes")
    )
    await journey.update(c.UPDATE_EXTEND, signed)
    with contextlib.suppress(WorkflowUpdateFailedError):
        await journey.update(c.UPDATE_EXTEND, signed)  # replayed
    await journey.decide(ref)
    await journey.milestone(ref, c.Milestone.STARTED)
    await bed.skip(2 * HOUR)
    await journey.update(
        c.UPDATE_MEDICAL_CARE,
        c.MedicalCareConfirmed(
            event_id=new_event_id(), item=c.ClinicalItem.PEP, at=await bed.now()
        ),
    )
    await journey.update(
        c.UPDATE_CONSENT,
        c.ConsentChange(
            event_id=new_event_id(), sector=c.Sector.SHELTER, granted=False, at=await bed.now()
        ),
    )
    status = await journey.until(lambda s: bool(events(s, "case_purged")))
    actors = [e.actor for e in events(status, "deadline_extended")]
    if actors != ["coord-1"]:
        raise RuntimeError(f"authenticated_updates: unexpected actors {actors}")
    return journey


async def notifications(bed: JourneyTestbed) -> Journey:
    """Telling people (the notifications patch): a new referral, a reminder
    that reaches nobody (flagged undelivered), the escalation and the
    rerouting it causes (and the new provider's referral), the escalation
    acknowledged by a coordinator (polled), a decision told to the holding
    organisation, a clinical window's rung, a closure request; network.notify
    down past its retries once (the lane tries the same key again later)."""
    opened = await bed.now()
    script = CaseScript(unreachable={c.NotifyKind.REMINDER.value}, outages={c.NETWORK_NOTIFY: 5})
    journey = await bed.start(
        task_queue=SECONDS_QUEUE,
        script=script,
        needs=[c.Need.SHELTER, c.Need.MEDICAL],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=10),
        opened_at=opened,
        holding_organisation_id="org-a0de00000001",
    )
    await journey.pending_referral(c.Sector.SHELTER)
    await journey.until_calls(c.NETWORK_NOTIFY, 1)
    await bed.skip(20 * SECOND)
    await journey.until(lambda s: bool(events(s, "collaborator_unavailable")))
    await bed.skip(70 * SECOND)
    await journey.until(lambda s: bool(events(s, "undelivered")))
    await bed.skip(20 * SECOND)
    await journey.until(lambda s: bool(events(s, "rerouted")))
    fakes = bed.fakes
    escalation = next(
        e for e in fakes.notifications(journey.case_id) if e.kind is c.NotifyKind.ESCALATION
    )
    fakes.acknowledge(journey.case_id, escalation.idempotency_key, "acc-coord-1", await bed.now())
    await bed.skip(40 * SECOND)
    await journey.until(lambda s: bool(events(s, "acknowledged")))
    second = await journey.pending_referral(c.Sector.SHELTER)
    await journey.decide(second)
    await bed.skip(20 * HOUR)
    await journey.until(
        lambda s: any(
            e.event == "reminder" and e.detail and e.detail.startswith("clinical:")
            for e in s.timeline
        )
    )
    await journey.update(
        c.UPDATE_CLOSURE_REQUEST,
        c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="goals_met"),
    )
    await journey.until(
        lambda _: any(
            e.kind is c.NotifyKind.CLOSURE_REQUESTED for e in fakes.notifications(journey.case_id)
        )
    )
    return journey


async def care_sectors(bed: JourneyTestbed) -> Journey:
    """The care sectors (the care patch): a rape reported 60 h after the
    incident opens the medical referral at once (reminded at 1 h, then
    accepted); PEP started closes its window met, emergency contraception
    declined closes it declined; a certificate reaches legal aid
    (legal.note_certificate); psychosocial support alongside; the care unit
    sees her; the two-week follow-up visit falls due and is recorded."""
    opened = await bed.now()
    incident = opened - 60 * HOUR
    journey = await bed.start(
        needs=[c.Need.MEDICAL, c.Need.LEGAL, c.Need.PSYCHOSOCIAL],
        consents=[c.Sector.HEALTH, c.Sector.LEGAL, c.Sector.PSYCHOSOCIAL],
        violence_type=c.ViolenceType.RAPE,
        incident_at=incident,
        opened_at=opened,
        health=c.HealthNeeds(
            care=c.care_called_for(c.ViolenceType.RAPE, incident, opened), incident_at=incident
        ),
        psychosocial=c.PsychosocialNeeds(support=["counselling"]),
        holding_organisation_id="org-a0de00000001",
    )
    health = await journey.pending_referral(c.Sector.HEALTH)
    legal = await journey.pending_referral(c.Sector.LEGAL)
    support = await journey.pending_referral(c.Sector.PSYCHOSOCIAL)
    await bed.skip(61 * MINUTE)
    await journey.until_calls(c.HEALTH_REMIND_PROVIDER, 1)
    await journey.decide(health)
    await journey.care(health, c.CareEvent.PEP_STARTED)
    await journey.care(health, c.CareEvent.EMERGENCY_CONTRACEPTION_DECLINED)
    await journey.care(health, c.CareEvent.CERTIFICATE_ISSUED, itt_days=12)
    await journey.until_calls(c.LEGAL_NOTE_CERTIFICATE, 1)
    await journey.decide(legal)
    await journey.milestone(health, c.Milestone.STARTED)
    await journey.decide(support)
    await journey.milestone(support, c.Milestone.STARTED)
    await bed.skip(incident + timedelta(days=14, minutes=1) - await bed.now())
    await journey.until(lambda s: bool(events(s, "health_visit_due")))
    await journey.care(health, c.CareEvent.FOLLOW_UP_VISIT_DONE, visit=c.FollowUpVisit.TWO_WEEKS)
    status = await journey.until(
        lambda s: not any(e.wait.startswith("health_visit:") for e in s.escalations)
    )
    if [w.status for w in status.clinical_windows] != ["MET", "DECLINED"]:
        raise RuntimeError("care_sectors: the clinical windows did not close as recorded")
    return journey


async def medical_referral_ladder(bed: JourneyTestbed) -> Journey:
    """An unanswered medical referral 70 h after a rape: its wait squeezed so
    that the ladder (reminder, coordinators and the next unit, regional and
    EXPIRED) falls before PEP's window closes, missed."""
    opened = await bed.now()
    incident = opened - 70 * HOUR
    journey = await bed.start(
        needs=[c.Need.MEDICAL],
        consents=[c.Sector.HEALTH],
        violence_type=c.ViolenceType.RAPE,
        incident_at=incident,
        opened_at=opened,
        holding_organisation_id="org-a0de00000001",
    )
    await journey.pending_referral(c.Sector.HEALTH)
    for _ in range(5):
        await bed.skip(25 * MINUTE)
    await journey.until(
        lambda s: (
            s.referrals[-1].status is c.ReferralStatus.EXPIRED
            and s.clinical_windows[0].status == "MISSED"
        )
    )
    return journey


async def protection_order_breach(bed: JourneyTestbed) -> Journey:
    """Breaches recorded by legal aid: medium -> high, the shelter's wait
    re-timed from when it opened (its 2 h are over: coordinators and the next
    shelter at once), the holder and the coordinators told; a second breach
    assessed "low" -> critical (never lower). A medical referral alongside."""
    opened = await bed.now()
    journey = await bed.start(
        needs=[c.Need.SHELTER, c.Need.LEGAL, c.Need.MEDICAL],
        consents=[c.Sector.SHELTER, c.Sector.LEGAL, c.Sector.HEALTH],
        risk=c.Risk.MEDIUM,
        violence_type=c.ViolenceType.PHYSICAL_ASSAULT,
        incident_at=opened - 5 * HOUR,
        opened_at=opened,
        holding_organisation_id="org-a0de00000001",
    )
    await journey.pending_referral(c.Sector.SHELTER)
    await journey.pending_referral(c.Sector.HEALTH)
    legal = await journey.pending_referral(c.Sector.LEGAL)
    await journey.decide(legal)
    await bed.skip(3 * HOUR)
    await journey.breach(legal)
    await journey.until(lambda s: s.risk is c.Risk.HIGH and bool(events(s, "rerouted")))
    await journey.breach(legal, risk=c.Risk.LOW)
    await journey.until(lambda s: s.risk is c.Risk.CRITICAL)
    return journey


SCENARIOS: dict[str, Scenario] = {
    "full_chain": full_chain,
    "ladder_to_expiry": ladder_to_expiry,
    "declines_and_consent": declines_and_consent,
    "clinical_windows": clinical_windows,
    "coordinators_and_closure": coordinators_and_closure,
    "continue_as_new": continue_as_new,
    "retries_exhausted": retries_exhausted,
    "activity_timeout": activity_timeout,
    "reroute_queued_in_lane": reroute_queued_in_lane,
    "transfers": transfers,
    "authenticated_updates": authenticated_updates,
    "notifications": notifications,
    "care_sectors": care_sectors,
    "medical_referral_ladder": medical_referral_ladder,
    "protection_order_breach": protection_order_breach,
}


class FixtureExists(Exception):
    """A scenario already has recorded histories: they are never recorded over."""


def fixtures_of(name: str) -> list[Path]:
    return sorted(HISTORIES.glob(f"{name}@*.json"))


def check_new(names: list[str]) -> None:
    """Refuse, before anything runs, to record a scenario that has fixtures."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; known: {known}")
    for name in names:
        existing = fixtures_of(name)
        if existing:
            raise FixtureExists(
                f"{existing[0].relative_to(HISTORIES.parent)} already exists: recorded "
                "histories are never recorded over (running journeys keep their history). "
                "Record new behaviour as a new scenario with a new name."
            )


def fixed_case_ids(bed: JourneyTestbed, scenario: str) -> None:
    """Each scenario's journey gets the same (opaque-looking) case id on every
    recording, so re-recorded fixtures keep their file names."""
    start = bed.start

    async def start_with_fixed_id(**kwargs: Any) -> Journey:
        kwargs.setdefault("case_id", hashlib.sha256(scenario.encode()).hexdigest()[:16])
        return await start(**kwargs)

    bed.start = start_with_fixed_id  # type: ignore[method-assign]


async def record(names: list[str]) -> None:
    check_new(names)
    HISTORIES.mkdir(exist_ok=True)
    async with journey_testbed(
        binary("temporal-test-server"), policies={SECONDS_QUEUE: seconds_policy()}
    ) as bed:
        for name in names:
            fixed_case_ids(bed, name)
            journey = await SCENARIOS[name](bed)
            await asyncio.sleep(0.5)  # let the last workflow task complete
            check_new([name])
            runs = [run async for run in _runs(journey)]
            for index, history in enumerate(runs):
                suffix = f".{index}" if len(runs) > 1 else ""
                path = HISTORIES / f"{name}@{journey.handle.id}{suffix}.json"
                with path.open("x") as fixture:  # never over an existing file
                    fixture.write(history + "\n")
                print(f"wrote {path.relative_to(Path.cwd())}")
            await journey.terminate()


async def _runs(journey: Journey) -> AsyncIterator[str]:
    """Every run's history, first to last (continue-as-new makes several)."""
    client = journey.bed.client
    run_id = journey.first_run_id
    while run_id:
        handle = client.get_workflow_handle(journey.handle.id, run_id=run_id)
        history = await handle.fetch_history()
        yield history.to_json()
        run_id = None
        for event in history.events:
            attrs = event.workflow_execution_continued_as_new_event_attributes
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                run_id = attrs.new_execution_run_id


def unrecorded() -> list[str]:
    """The scenarios that have no fixtures yet."""
    return [name for name in SCENARIOS if not fixtures_of(name)]


def main(argv: list[str]) -> int:
    names = argv or unrecorded()
    if not names:
        print("every scenario has its fixtures; nothing to record")
        return 0
    try:
        asyncio.run(record(names))
    except (FixtureExists, ValueError) as exc:
        print(f"record_histories: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
