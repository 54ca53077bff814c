"""A whole journey on the real stack: the dev server, the four services on real
ports with real SQLite databases, their activity workers, the journey worker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from masar import contract as c
from masar.v1 import common_pb2, employment_pb2, intake_pb2, shelter_pb2
from tests.integration.live import (
    eventually,
    live_stack,
    referral_in,
    register_request,
    seed_region,
)

REGION = "fes-meknes"
Status = c.ReferralStatus


def accept(referral_id: str, key: str) -> common_pb2.DecideReferralRequest:
    return common_pb2.DecideReferralRequest(
        referral_id=referral_id, decision=common_pb2.DECISION_ACCEPT, idempotency_key=key
    )


def temporal_list(address: str, query: str, binary: str) -> list[dict]:
    out = subprocess.run(
        [binary, "workflow", "list", "--address", address, "--query", query, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    out = out.strip()
    if not out:
        return []
    if out.startswith("["):
        return json.loads(out)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_whole_journey_through_every_sector(tmp_path: Path, temporal_dev_server_path) -> None:
    async with live_stack(tmp_path) as stack:
        await seed_region(stack, REGION)
        reply = await stack.intake.RegisterCase(register_request(REGION))
        case_id = reply.case.summary.case_id
        assert reply.journey_start == common_pb2.DELIVERY_STATE_DELIVERED

        # Safety and justice start in parallel.
        shelter = await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, Status.PENDING))
        legal = await stack.wait_status(case_id, referral_in(c.Sector.LEGAL, Status.PENDING))
        status = await stack.status(case_id)
        assert status.stage in (c.Stage.SAFETY, c.Stage.JUSTICE)
        assert not any(r.sector == c.Sector.EMPLOYMENT for r in status.referrals), (
            "recovery waits until she is safe"
        )

        decided = await stack.shelter.DecideReferral(accept(shelter.referral_id, "k-shelter"))
        assert decided.delivery == common_pb2.DELIVERY_STATE_DELIVERED
        await stack.shelter.CheckIn(
            shelter_pb2.CheckInRequest(referral_id=shelter.referral_id, idempotency_key="k-in")
        )
        await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, Status.IN_SERVICE))
        await stack.legal.DecideReferral(accept(legal.referral_id, "k-legal"))
        await stack.wait_status(case_id, referral_in(c.Sector.LEGAL, Status.ACCEPTED))

        # Safe now: the employment referral follows.
        job = await stack.wait_status(case_id, referral_in(c.Sector.EMPLOYMENT, Status.PENDING))
        await stack.employment.DecideReferral(accept(job.referral_id, "k-emp"))
        await stack.employment.StartEnrolment(
            employment_pb2.StartEnrolmentRequest(
                referral_id=job.referral_id, idempotency_key="k-start"
            )
        )
        await stack.wait_status(case_id, referral_in(c.Sector.EMPLOYMENT, Status.IN_SERVICE))

        status = await stack.status(case_id)
        by_sector = {r.sector: r for r in status.referrals}
        assert by_sector[c.Sector.SHELTER].status == Status.IN_SERVICE
        assert by_sector[c.Sector.LEGAL].status == Status.ACCEPTED
        assert by_sector[c.Sector.EMPLOYMENT].status == Status.IN_SERVICE
        assert status.region == REGION and status.risk == c.Risk.HIGH
        events = [e.event for e in status.timeline]
        assert events, "the timeline records what happened"

        # Visibility agrees with the status query.
        rows = temporal_list(
            stack.temporal.address,
            f"WorkflowId = '{c.journey_workflow_id(case_id)}' AND MasarStage = '{status.stage}' "
            f"AND MasarRegion = '{REGION}' AND MasarRisk = 'high'",
            temporal_dev_server_path,
        )
        assert len(rows) == 1


async def test_unanswered_high_risk_referral_climbs_the_ladder_and_is_rerouted(
    tmp_path: Path, temporal_dev_server_path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        """
[ladder]
reminder = 0.5
escalate = 1.0
expire = 2.0

[deadlines.shelter_accept]
critical = "4s"
high = "4s"
medium = "24h"
low = "72h"

[deadlines.shelter_checkin]
critical = "12h"
high = "12h"
medium = "48h"
low = "72h"

[deadlines.legal_accept]
critical = "24h"
high = "24h"
medium = "72h"
low = "7d"

[deadlines.employment_accept]
critical = "7d"
high = "7d"
medium = "14d"
low = "14d"

[deadlines.follow_up]
critical = "14d"
high = "14d"
medium = "30d"
low = "30d"
"""
    )
    async with live_stack(tmp_path, policy_file=policy) as stack:
        ids = await seed_region(stack, REGION, shelters=2)
        reply = await stack.intake.RegisterCase(
            register_request(REGION, needs=("shelter",), consents=("shelter",))
        )
        case_id = reply.case.summary.case_id
        first = await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, Status.PENDING))

        def rerouted(status: c.JourneyStatus):
            old = [r for r in status.referrals if r.referral_id == first.referral_id]
            new = [
                r
                for r in status.referrals
                if r.sector == c.Sector.SHELTER
                and r.status == Status.PENDING
                and r.referral_id != first.referral_id
            ]
            if old and old[0].status == Status.REROUTED and new:
                return status, new[0]
            return None

        status, second = await stack.wait_status(case_id, rerouted, wait_seconds=30)
        assert second.provider_id != first.provider_id
        assert {first.provider_id, second.provider_id} == set(ids["shelter"])
        events = [(e.event, e.level) for e in status.timeline]
        assert any(level == c.LEVEL_REMINDER for _, level in events), events
        assert any(level == c.LEVEL_COORDINATOR for _, level in events), events

        # The sector saw the reminder and the reroute (its close activity runs
        # just after the journey records the reroute).
        async def closed_at_the_shelter() -> common_pb2.GetReferralResponse:
            old = await stack.shelter.GetReferral(
                common_pb2.GetReferralRequest(referral_id=first.referral_id)
            )
            assert old.referral.status == common_pb2.REFERRAL_STATUS_REROUTED
            return old

        old = await eventually(closed_at_the_shelter)
        assert old.referral.reminders >= 1

        # The region's coordinators were told, in intake's escalation inbox.
        inbox = await stack.intake.ListEscalations(
            intake_pb2.ListEscalationsRequest(case_id=case_id, region=REGION)
        )
        levels = {(e.level, e.referral_id) for e in inbox.escalations}
        assert (c.LEVEL_COORDINATOR, first.referral_id) in levels, levels

        # Visibility shows the journey still waiting on a shelter.
        rows = temporal_list(
            stack.temporal.address,
            f"WorkflowId = '{c.journey_workflow_id(case_id)}' AND MasarPendingSectors = 'shelter'",
            temporal_dev_server_path,
        )
        assert len(rows) == 1
