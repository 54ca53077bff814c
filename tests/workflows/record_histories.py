"""Record journey histories from real runs, as replay fixtures.

    .venv/bin/python -m tests.workflows.record_histories

Runs each scenario on the time-skipping server against the fake
collaborators and writes every run's history (`WorkflowHistory.to_json()`)
to tests/workflows/histories/<scenario>@<workflow id>[.<n>].json. The replay
test replays them all with the current workflow code: a change that is not
deterministic for a running journey fails it. Re-record only for a change
that is behind `workflow.patched(...)` AND keep the old fixtures next to the
new ones, so both code paths stay covered.
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
from tests.conftest import binary
from tests.workflows.support import (
    CaseScript,
    Journey,
    JourneyTestbed,
    journey_testbed,
    new_event_id,
    seconds_policy,
)

HISTORIES = Path(__file__).with_name("histories")
SECONDS_QUEUE = "test-journey-seconds"
HOUR = timedelta(hours=1)

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


SCENARIOS: dict[str, Scenario] = {
    "full_chain": full_chain,
    "ladder_to_expiry": ladder_to_expiry,
    "declines_and_consent": declines_and_consent,
    "clinical_windows": clinical_windows,
    "coordinators_and_closure": coordinators_and_closure,
    "continue_as_new": continue_as_new,
}


def fixed_case_ids(bed: JourneyTestbed, scenario: str) -> None:
    """Each scenario's journey gets the same (opaque-looking) case id on every
    recording, so re-recorded fixtures keep their file names."""
    start = bed.start

    async def start_with_fixed_id(**kwargs: Any) -> Journey:
        kwargs.setdefault("case_id", hashlib.sha256(scenario.encode()).hexdigest()[:16])
        return await start(**kwargs)

    bed.start = start_with_fixed_id  # type: ignore[method-assign]


async def record(names: list[str]) -> None:
    HISTORIES.mkdir(exist_ok=True)
    async with journey_testbed(
        binary("temporal-test-server"), policies={SECONDS_QUEUE: seconds_policy()}
    ) as bed:
        for name in names:
            fixed_case_ids(bed, name)
            journey = await SCENARIOS[name](bed)
            await asyncio.sleep(0.5)  # let the last workflow task complete
            for old in HISTORIES.glob(f"{name}@*.json"):
                old.unlink()
            runs = [run async for run in _runs(journey)]
            for index, history in enumerate(runs):
                suffix = f".{index}" if len(runs) > 1 else ""
                path = HISTORIES / f"{name}@{journey.handle.id}{suffix}.json"
                path.write_text(history + "\n")
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


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1:] or list(SCENARIOS)))
