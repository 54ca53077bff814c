"""One time-skipping environment per test module (see support.journey_testbed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.workflows.support import JourneyTestbed, journey_testbed, seconds_policy

SECONDS_QUEUE = "test-journey-seconds"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_bed(temporal_test_server_path: str) -> AsyncIterator[JourneyTestbed]:
    async with journey_testbed(
        temporal_test_server_path, policies={SECONDS_QUEUE: seconds_policy()}
    ) as testbed:
        yield testbed


@pytest_asyncio.fixture(loop_scope="module")
async def bed(module_bed: JourneyTestbed) -> AsyncIterator[JourneyTestbed]:
    """The module's testbed; journeys a test started are terminated after it,
    so they do not keep firing timers while later tests skip time."""
    yield module_bed
    for journey in module_bed.started:
        await journey.terminate()
    module_bed.started.clear()
