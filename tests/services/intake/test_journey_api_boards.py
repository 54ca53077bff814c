"""The journey API's lists and live boards against the REAL journey on a
Temporal dev server of the test's own (tests/services/intake/journey_support.py):
ListJourneys agrees with `temporal workflow list --query` (filters, pages,
page tokens bound to their list); WatchJourneys delivers a change within
about two seconds and ends when the caller's token does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest

from masar.platform.identity import Role
from masar.v1 import common_pb2, intake_pb2, journey_pb2
from tests.conftest import binary
from tests.services.harness import error_field
from tests.services.intake.journey_support import (
    Bed,
    journey_bed,
    until,
)
from tests.services.intake.support import (
    FES,
    RABAT,
    key,
    ts,
)
from tests.support_auth import bearer, token_for


@pytest.fixture
async def sqlite_bed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Bed]:
    async with journey_bed(tmp_path, sqlite_url) as running:
        yield running


def _temporal_list(bed: Bed, query: str) -> set[str]:
    out = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "list",
            "--address",
            bed.server.address,
            "--namespace",
            bed.server.namespace,
            "--query",
            query,
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    text = out.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    return {r["execution"]["workflowId"].removeprefix("journey-") for r in rows}


async def test_lists_agree_with_temporal_and_boards_see_changes_within_two_seconds(
    sqlite_bed: Bed,
) -> None:
    bed = sqlite_bed
    who, journeys = bed.who, bed.journeys
    cases = [await bed.register("officer_a") for _ in range(3)]
    rabat = await bed.register("officer_b", region=RABAT)

    async def all_listed() -> bool:
        listed = await bed.listed("coord_fes")
        return isinstance(listed, set) and set(cases) <= listed

    await until(all_listed)
    running = "WorkflowType = 'SurvivorJourney' AND ExecutionStatus = 'Running'"
    fes = f"{running} AND MasarRegion = '{FES}'"
    assert await bed.listed("coord_fes") == _temporal_list(bed, fes) == set(cases)
    assert (
        await bed.listed("coord_rabat")
        == _temporal_list(bed, f"{running} AND MasarRegion = '{RABAT}'")
        == {rabat}
    )

    # Pages: two coordinators' pages of two; an officer's walk of her cases.
    first = await journeys.ListJourneys(
        journey_pb2.ListJourneysRequest(page_size=2), metadata=who["coord_fes"]
    )
    assert len(first.journeys) == 2 and first.next_page_token
    rest = await journeys.ListJourneys(
        journey_pb2.ListJourneysRequest(page_size=2, page_token=first.next_page_token),
        metadata=who["coord_fes"],
    )
    assert {j.case_id for j in [*first.journeys, *rest.journeys]} == set(cases)
    # A token is for its own list: another filter or another caller is refused.
    for person, request in (
        (
            "coord_fes",
            journey_pb2.ListJourneysRequest(
                page_size=2,
                page_token=first.next_page_token,
                filter=journey_pb2.JourneyFilter(risk=common_pb2.RISK_LEVEL_HIGH),
            ),
        ),
        (
            "coord_rabat",
            journey_pb2.ListJourneysRequest(page_size=2, page_token=first.next_page_token),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await journeys.ListJourneys(request, metadata=who[person])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_field(error.value) == "page_token"
    seen: set[str] = set()
    token = ""
    while True:
        page = await journeys.ListJourneys(
            journey_pb2.ListJourneysRequest(page_size=1, page_token=token),
            metadata=who["officer_a"],
        )
        seen |= {j.case_id for j in page.journeys}
        token = page.next_page_token
        if not token:
            break
    assert seen == set(cases)

    # A live board: a closure request moves one journey to CLOSURE_PENDING.
    call = journeys.WatchJourneys(
        journey_pb2.WatchJourneysRequest(
            filter=journey_pb2.JourneyFilter(stage=journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING)
        ),
        metadata=who["coord_fes"],
    )
    events: asyncio.Queue[journey_pb2.JourneyEvent] = asyncio.Queue()

    async def read() -> None:
        async for event in call:
            await events.put(event)

    reader = asyncio.create_task(read())
    try:
        synced = await asyncio.wait_for(events.get(), timeout=15)
        assert synced.kind == journey_pb2.JOURNEY_EVENT_KIND_SYNCED  # nothing pending yet
        await journeys.RequestClosure(
            intake_pb2.RequestClosureRequest(
                case_id=cases[0],
                reason=intake_pb2.CLOSURE_REASON_SURVIVOR_REQUEST,
                idempotency_key=key(),
            ),
            metadata=who["officer_a"],
        )
        asked = asyncio.get_running_loop().time()
        added = await asyncio.wait_for(events.get(), timeout=10)
        delay = asyncio.get_running_loop().time() - asked
        assert added.kind == journey_pb2.JOURNEY_EVENT_KIND_ADDED
        assert added.journey.case_id == cases[0]
        assert added.journey.stage == journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING
        # Polled every 1.5 s; visibility is near-immediate on the dev server.
        assert delay < 2.5, delay
        pending = f"{fes} AND MasarStage = 'CLOSURE_PENDING'"
        listed = await bed.listed("coord_fes", stage=journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING)
        assert listed == _temporal_list(bed, pending) == {cases[0]}

        # The coordinator refuses: the journey leaves CLOSURE_PENDING, and the board says so.
        await journeys.DecideClosure(
            journey_pb2.DecideClosureRequest(
                case_id=cases[0],
                verdict=journey_pb2.CLOSURE_VERDICT_REFUSE,
                reason="not yet",
                idempotency_key=key(),
            ),
            metadata=who["coord_fes"],
        )
        removed = await asyncio.wait_for(events.get(), timeout=10)
        assert removed.kind == journey_pb2.JOURNEY_EVENT_KIND_REMOVED
        assert removed.journey.case_id == cases[0]
    finally:
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    # A board ends when its token does.
    brief = bearer(
        token_for(Role.COORDINATOR, region=FES, subject="coord-fes", ttl=timedelta(seconds=3))
    )
    ending = journeys.WatchJourneys(journey_pb2.WatchJourneysRequest(), metadata=brief, timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in ending:
            pass
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Escalation and deadline filters agree with Temporal too.
    soon = datetime.now(UTC) + timedelta(days=400)
    before = ts(soon)
    listed = await bed.listed("coord_fes", next_deadline_before=before)
    stamp = soon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert listed == _temporal_list(bed, f"{fes} AND MasarNextDeadline < '{stamp}'")
    assert await bed.listed("coord_fes", escalated_only=True) == _temporal_list(
        bed, f"{fes} AND MasarEscalationLevel >= 1"
    )
