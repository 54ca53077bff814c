"""One time-skipping environment per test (see support.journey_testbed).

Per test, not per module: when the time-skipping server drops a connection
under load ("h2 protocol error"), only that test is affected, and its one
rerun (pyproject's --only-rerun) gets a fresh server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.workflows.support import JourneyTestbed, journey_testbed, seconds_policy

SECONDS_QUEUE = "test-journey-seconds"


@pytest_asyncio.fixture(loop_scope="module")
async def module_bed(temporal_test_server_path: str) -> AsyncIterator[JourneyTestbed]:
    async with journey_testbed(
        temporal_test_server_path, policies={SECONDS_QUEUE: seconds_policy()}
    ) as testbed:
        yield testbed


@pytest_asyncio.fixture(loop_scope="module")
async def bed(module_bed: JourneyTestbed) -> AsyncIterator[JourneyTestbed]:
    """This test's testbed; journeys it started are terminated after it."""
    yield module_bed
    for journey in module_bed.started:
        await journey.terminate()
    module_bed.started.clear()
