"""Notifications (issue 13), on the time-skipping server with a fake
`network.notify` on masar-network (tests.workflows.support): every journey
event that needs a person is told once, with a key fixed when it happened;
one that reached nobody is flagged "undelivered"; an escalation's
acknowledgement shows in the timeline with who and when; a network that is
down holds up nothing else."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from masar import contract as c
from tests.workflows.conftest import SECONDS_QUEUE
from tests.workflows.support import (
    REGION,
    CaseScript,
    Journey,
    JourneyTestbed,
    events,
    new_event_id,
)
from workflows.notices import UNDELIVERED_SUFFIX

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECOND = timedelta(seconds=1)
HOLDER, RECEIVER = "org-a0de00000001", "org-a0de00000002"
K = c.NotifyKind


def kinds(bed: JourneyTestbed, journey: Journey) -> list[K]:
    return [event.kind for event in bed.fakes.notifications(journey.case_id)]


def of_kind(bed: JourneyTestbed, journey: Journey, kind: K) -> list[c.NotifyEvent]:
    return [e for e in bed.fakes.notifications(journey.case_id) if e.kind is kind]


async def until_notified(
    bed: JourneyTestbed, journey: Journey, kind: K, count: int = 1
) -> list[c.NotifyEvent]:
    await journey.until(lambda _: len(of_kind(bed, journey, kind)) >= count)
    return of_kind(bed, journey, kind)


def each_key_once(bed: JourneyTestbed, journey: Journey) -> None:
    keys = Counter(e.idempotency_key for e in bed.fakes.notifications(journey.case_id))
    assert all(n == 1 for n in keys.values()), keys
    prefix = f"{journey.handle.id}/notify/"
    assert all(key.startswith(prefix) for key in keys), keys


async def test_an_unanswered_referral_tells_its_staff_then_the_coordinators(
    bed: JourneyTestbed,
) -> None:
    """shelter_accept 100 s: new referral, reminder at 50 s (the provider's
    organisation), escalation at 100 s (coordinators; nobody else to reroute
    to), regional rung and EXPIRED at 200 s."""
    script = CaseScript()
    script.providers["shelter"] = ["shelter-a"]
    journey = await bed.start(task_queue=SECONDS_QUEUE, script=script)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    [new] = await until_notified(bed, journey, K.NEW_REFERRAL)
    assert (new.case_id, new.region, new.referral_id, new.sector) == (
        journey.case_id,
        REGION,
        ref.referral_id,
        "shelter",
    )
    assert new.provider_organisation_id == "org-5be1700000a1"
    assert new.deadline is not None and new.rung == 0

    await bed.skip(55 * SECOND)
    [reminder] = await until_notified(bed, journey, K.REMINDER)
    assert (reminder.referral_id, reminder.rung) == (ref.referral_id, c.LEVEL_REMINDER)
    assert reminder.provider_organisation_id == "org-5be1700000a1"

    await bed.skip(50 * SECOND)
    [escalation] = await until_notified(bed, journey, K.ESCALATION)
    assert (escalation.referral_id, escalation.rung) == (ref.referral_id, c.LEVEL_COORDINATOR)

    await bed.skip(105 * SECOND)
    [regional] = await until_notified(bed, journey, K.REGIONAL)
    [expired] = await until_notified(bed, journey, K.EXPIRED)
    assert regional.rung == c.LEVEL_REGIONAL and expired.referral_id == ref.referral_id
    assert kinds(bed, journey) == [
        K.NEW_REFERRAL,
        K.REMINDER,
        K.ESCALATION,
        K.REGIONAL,
        K.EXPIRED,
    ]
    each_key_once(bed, journey)


async def test_the_escalation_rerouting_is_told_and_the_new_provider_too(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(task_queue=SECONDS_QUEUE)
    first = await journey.pending_referral(c.Sector.SHELTER)
    await bed.skip(105 * SECOND)
    [rerouted] = await until_notified(bed, journey, K.REROUTED)
    assert rerouted.referral_id == first.referral_id
    news = await until_notified(bed, journey, K.NEW_REFERRAL, 2)
    assert news[1].referral_id != first.referral_id
    assert news[1].provider_organisation_id == "org-5be1700000b2"
    assert Counter(kinds(bed, journey)) == {
        K.NEW_REFERRAL: 2,
        K.REMINDER: 1,
        K.ESCALATION: 1,
        K.REROUTED: 1,
    }
    each_key_once(bed, journey)


async def test_a_decision_is_told_to_the_holding_organisation(bed: JourneyTestbed) -> None:
    journey = await bed.start(holding_organisation_id=HOLDER)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    await journey.decide(ref)
    [decided] = await until_notified(bed, journey, K.REFERRAL_DECIDED)
    assert (decided.referral_id, decided.holding_organisation_id) == (ref.referral_id, HOLDER)
    # Without a holder known, the decision only resolves the open items.
    unknown = await bed.start()
    other = await unknown.pending_referral(c.Sector.SHELTER)
    await unknown.decide(other, accepted=False, reason="NO_CAPACITY")
    [resolved] = await until_notified(bed, unknown, K.RESOLVED)
    assert resolved.referral_id == other.referral_id
    assert not of_kind(bed, unknown, K.REFERRAL_DECIDED)


async def test_transfers_and_closure_requests_are_told(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[])
    now = await bed.now()
    transfer_id = c.new_transfer_id()
    await journey.update(
        c.UPDATE_TRANSFER_REQUEST,
        c.TransferRequest(
            event_id=new_event_id(),
            transfer_id=transfer_id,
            from_organisation_id=HOLDER,
            to_organisation_id=RECEIVER,
            reason=c.TransferReason.CLOSER_TO_HOME,
            requested_at=now,
            consent_at=now,
        ),
    )
    [asked] = await until_notified(bed, journey, K.TRANSFER_REQUESTED)
    assert (asked.transfer_id, asked.holding_organisation_id) == (transfer_id, HOLDER)
    assert asked.receiving_organisation_id == RECEIVER
    await journey.update(
        c.UPDATE_TRANSFER_DECISION,
        c.TransferDecision(
            event_id=new_event_id(),
            transfer_id=transfer_id,
            to_organisation_id=RECEIVER,
            accepted=True,
            decided_at=await bed.now(),
        ),
    )
    [answered] = await until_notified(bed, journey, K.TRANSFER_ANSWERED)
    assert answered.transfer_id == transfer_id
    closure = c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="goals_met")
    await journey.update(c.UPDATE_CLOSURE_REQUEST, closure)
    [closing] = await until_notified(bed, journey, K.CLOSURE_REQUESTED)
    assert closing.idempotency_key.endswith(f"/closure/{closure.event_id}")
    # The receiving organisation holds the case now.
    ref_decided = of_kind(bed, journey, K.REFERRAL_DECIDED)
    assert ref_decided == []
    each_key_once(bed, journey)


async def test_a_clinical_window_about_to_close_is_told(bed: JourneyTestbed) -> None:
    opened = await bed.now()
    journey = await bed.start(
        needs=[],
        violence_type=c.ViolenceType.RAPE,
        incident_at=opened - timedelta(hours=10),
        holding_organisation_id=HOLDER,
    )
    await journey.until(lambda s: len(s.clinical_windows) == 2)
    await bed.skip(timedelta(hours=40))
    told = await until_notified(bed, journey, K.CLINICAL_WINDOW)
    assert told[0].holding_organisation_id == HOLDER
    assert told[0].rung == c.LEVEL_REMINDER and told[0].deadline is not None
    each_key_once(bed, journey)


async def test_a_reminder_that_reached_nobody_is_flagged_undelivered(
    bed: JourneyTestbed,
) -> None:
    script = CaseScript(unreachable={K.REMINDER.value})
    journey = await bed.start(task_queue=SECONDS_QUEUE, script=script)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    await bed.skip(55 * SECOND)
    status = await journey.until(lambda s: bool(events(s, "undelivered")))
    [flagged] = events(status, "undelivered")
    assert (flagged.detail, flagged.referral_id) == ("reminder", ref.referral_id)
    assert flagged.level == c.LEVEL_COORDINATOR
    [view] = [e for e in status.escalations if e.wait == "undelivered:reminder"]
    assert (view.referral_id, view.sector) == (ref.referral_id, c.Sector.SHELTER)
    assert status.escalation_level >= c.LEVEL_COORDINATOR
    # A coordinator acknowledges the network's escalation of it: seen, unflagged.
    [reminder] = of_kind(bed, journey, K.REMINDER)
    bed.fakes.acknowledge(
        journey.case_id,
        reminder.idempotency_key + UNDELIVERED_SUFFIX,
        "acc-coord-1",
        await bed.now(),
    )
    await bed.skip(30 * SECOND)
    status = await journey.until(lambda s: bool(events(s, "acknowledged")))
    [seen] = events(status, "acknowledged")
    assert (seen.actor, seen.detail) == ("acc-coord-1", "undelivered:reminder")
    assert not [e for e in status.escalations if e.wait.startswith("undelivered:")]


async def test_an_escalation_acknowledged_shows_who_and_when(bed: JourneyTestbed) -> None:
    script = CaseScript()
    script.providers["shelter"] = ["shelter-a"]
    journey = await bed.start(task_queue=SECONDS_QUEUE, script=script)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    await bed.skip(105 * SECOND)
    [escalation] = await until_notified(bed, journey, K.ESCALATION)
    # Polled while unacknowledged (by key, only the escalations).
    queries = await journey.until_calls(c.NETWORK_ACKNOWLEDGEMENTS, 1)
    assert queries[0].arg.idempotency_keys == [escalation.idempotency_key]
    seen_at = await bed.now()
    bed.fakes.acknowledge(journey.case_id, escalation.idempotency_key, "acc-coord-7", seen_at)
    await bed.skip(40 * SECOND)
    status = await journey.until(lambda s: bool(events(s, "acknowledged")))
    [seen] = events(status, "acknowledged")
    assert (seen.actor, seen.detail, seen.referral_id) == (
        "acc-coord-7",
        "escalation",
        ref.referral_id,
    )
    assert seen.at == seen_at and seen.sector is c.Sector.SHELTER
    # Acknowledged: no longer asked about; noted once.
    polls = len(journey.calls(c.NETWORK_ACKNOWLEDGEMENTS))
    await bed.skip(60 * SECOND)
    status = await journey.status()
    assert len(events(status, "acknowledged")) == 1
    later = journey.calls(c.NETWORK_ACKNOWLEDGEMENTS)[polls:]
    assert all(escalation.idempotency_key not in q.arg.idempotency_keys for q in later)


async def test_a_network_down_holds_up_nothing_else(bed: JourneyTestbed) -> None:
    """network.notify fails past its retries: the sector's request goes on,
    the timeline says so, and the lane tries the same key again later."""
    script = CaseScript(outages={c.NETWORK_NOTIFY: 5})
    journey = await bed.start(script=script)
    ref = await journey.pending_referral(c.Sector.SHELTER)
    await journey.until_calls(c.NETWORK_NOTIFY, 1)
    await bed.skip(20 * SECOND)  # the activity's own retries
    status = await journey.until(lambda s: bool(events(s, "collaborator_unavailable")))
    [down] = events(status, "collaborator_unavailable")
    assert (down.detail, down.sector) == ("notify", None)
    await bed.skip(timedelta(minutes=2))
    await journey.until(lambda _: len(journey.calls(c.NETWORK_NOTIFY)) >= 6)
    keys = {e.idempotency_key for e in bed.fakes.notifications(journey.case_id)}
    [key] = keys
    assert key.endswith(f"/notify/{ref.referral_id}/new")
    assert (await journey.status()).stage is c.Stage.SAFETY
