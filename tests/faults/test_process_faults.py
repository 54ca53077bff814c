"""Fault injection on the stack as real processes: a sector service and the
journey worker killed with SIGKILL, the Temporal server stopped and started
again on its SQLite file. Each test runs its own stack (bench.procs) and is
bounded in time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench import journeys as j
from bench.procs import JOURNEY, TEMPORAL, process_stack
from masar import contract as c
from masar.v1 import common_pb2
from tests.faults.procs import (
    activity_started,
    referrals_in_db,
    rows,
    timeline_events,
    write_policy,
    writer_lock,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHELTER_ONLY = ("intake", "shelter")
Status = c.ReferralStatus


async def test_sector_killed_during_its_activity_call_creates_the_referral_once(
    tmp_path: Path,
) -> None:
    async with process_stack(tmp_path, services=SHELTER_ONLY) as stack:
        stubs = stack.stubs()
        client = await stack.client()
        await j.seed_shelters(stubs, beds=12)

        # Hold the shelter's database, so the journey's RequestPlacement is
        # caught inside the service; kill -9 the service while it is there.
        with writer_lock(stack.database_path("shelter")):
            case_id = await j.register(stubs, needs=("shelter",))
            await j.poll(
                lambda: activity_started(client, case_id, "shelter"),
                within=60,
                what="the shelter activity in flight",
            )
            await asyncio.sleep(1.0)  # the activity's RPC reaches the service
            stack.kill("shelter")
        assert referrals_in_db(stack, "shelter", case_id) == []

        await stack.start("shelter")
        # The attempt that died times out (start-to-close, 30 s) and is retried.
        known = await j.wait_status(
            client,
            case_id,
            lambda journey: next(
                (r for r in journey.referrals if r.sector == c.Sector.SHELTER), None
            ),
            within=120,
            interval=0.5,
        )
        assert known.status == Status.PENDING
        assert referrals_in_db(stack, "shelter", case_id) == [(known.referral_id, "PENDING")]

        # And the journey goes on.
        (referral,) = await j.referrals_of(stubs, "shelter", case_id)
        reply = await j.decide(stubs, "shelter", referral)
        assert reply.delivery == common_pb2.DELIVERY_STATE_DELIVERED
        await j.wait_visible(client, case_id, known.referral_id, Status.ACCEPTED, within=30)
        assert referrals_in_db(stack, "shelter", case_id) == [(known.referral_id, "ACCEPTED")]


async def test_journey_worker_killed_mid_journey_continues_where_it_was(tmp_path: Path) -> None:
    async with process_stack(tmp_path, services=SHELTER_ONLY) as stack:
        stubs = stack.stubs()
        client = await stack.client()
        await j.seed_shelters(stubs, beds=12)
        case_id = await j.register(stubs, needs=("shelter",))
        pending = await j.wait_referral(stubs, "shelter", case_id)
        before = await j.wait_known(client, case_id, pending.referral_id)
        journey_before = await j.status(client, case_id)

        stack.kill(JOURNEY)
        # Staff decide while no worker runs; the worker comes back meanwhile.
        decision = asyncio.create_task(j.decide(stubs, "shelter", pending))
        await asyncio.sleep(1.0)
        assert not decision.done()
        await stack.start(JOURNEY)
        reply = await asyncio.wait_for(decision, 60)
        assert reply.delivery in (
            common_pb2.DELIVERY_STATE_DELIVERED,
            common_pb2.DELIVERY_STATE_QUEUED,  # the worker took longer than the update's timeout
        )
        await j.wait_visible(client, case_id, pending.referral_id, Status.ACCEPTED, within=60)

        after = await j.status(client, case_id)
        assert [r.referral_id for r in after.referrals] == [before.referral_id]
        assert after.timeline[: len(journey_before.timeline)] == journey_before.timeline
        assert referrals_in_db(stack, "shelter", case_id) == [(pending.referral_id, "ACCEPTED")]
        await j.check_in(stubs, pending)
        await j.wait_visible(client, case_id, pending.referral_id, Status.IN_SERVICE, within=30)


async def test_temporal_restart_keeps_journeys_and_fires_a_deadline_missed_while_down(
    tmp_path: Path,
) -> None:
    deadline = 16  # seconds: the reminder is due at 8 s, the escalation at 16 s
    policy = write_policy(tmp_path / "policy.toml", deadline)
    async with process_stack(tmp_path, services=SHELTER_ONLY, policy_file=policy) as stack:
        stubs = stack.stubs()
        client = await stack.client()
        await j.seed_shelters(stubs, beds=12)
        await j.seed_shelters(stubs, beds=12)  # a second shelter to reroute to
        case_id = await j.register(stubs, needs=("shelter",), risk="high")
        pending = await j.wait_referral(stubs, "shelter", case_id)
        ref = await j.wait_known(client, case_id, pending.referral_id)
        assert ref.deadline is not None
        reminder_due = ref.deadline.timestamp() - deadline / 2
        assert time.time() < reminder_due, "the reminder fell due before Temporal stopped"

        stack.stop(TEMPORAL)  # returns once the server has exited and released its file
        await asyncio.sleep(max(reminder_due + 1 - time.time(), 0))  # the deadline passes
        await stack.start(TEMPORAL)

        journey = await j.wait_status(
            client,
            case_id,
            lambda jn: jn if timeline_events(jn, ref.referral_id, c.LEVEL_REMINDER) else None,
            within=60,
            interval=0.3,
        )
        reminded = timeline_events(journey, ref.referral_id, c.LEVEL_REMINDER)
        assert len(reminded) == 1
        assert reminded[0].at.timestamp() >= reminder_due
        # The timer still pending during the outage (escalation at 100 %) fires too.
        journey = await j.wait_status(
            client,
            case_id,
            lambda jn: jn if timeline_events(jn, ref.referral_id, c.LEVEL_COORDINATOR) else None,
            within=60,
            interval=0.3,
        )
        assert len(timeline_events(journey, ref.referral_id, c.LEVEL_REMINDER)) == 1
        assert journey.referrals[0].referral_id == ref.referral_id
        reminders = rows(
            stack,
            "shelter",
            "SELECT reminders FROM referrals WHERE referral_id = ?",
            ref.referral_id,
        )
        assert reminders == [(1,)], "the provider was reminded exactly once"


async def test_decision_made_while_temporal_is_down_is_delivered_when_it_returns(
    tmp_path: Path,
) -> None:
    async with process_stack(tmp_path, services=SHELTER_ONLY) as stack:
        stubs = stack.stubs()
        client = await stack.client()
        await j.seed_shelters(stubs, beds=12)
        case_id = await j.register(stubs, needs=("shelter",), risk="medium")
        pending = await j.wait_referral(stubs, "shelter", case_id)
        await j.wait_known(client, case_id, pending.referral_id)

        stack.stop(TEMPORAL)
        reply = await j.decide(stubs, "shelter", pending)
        assert reply.delivery == common_pb2.DELIVERY_STATE_QUEUED
        assert reply.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED

        await stack.start(TEMPORAL)
        await j.wait_visible(client, case_id, pending.referral_id, Status.ACCEPTED, within=60)
        assert referrals_in_db(stack, "shelter", case_id) == [(pending.referral_id, "ACCEPTED")]
