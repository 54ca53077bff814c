"""Process-level helpers for the fault-injection tests.

The stack itself (real processes, started, killed and restarted on demand)
is `bench.procs.ProcessStack`, shared with the benchmarks; journeys are driven
through the real APIs with `bench.journeys`. Here: what the tests look at
besides the APIs — a service's SQLite database, the journey's pending
activities — and a lock that holds a service inside a call.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from bench import journeys as j
from bench.procs import ProcessStack
from bench.scale import write_policy
from masar import contract as c

__all__ = ["ProcessStack", "j", "write_policy"]


def rows(stack: ProcessStack, sector: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read a service's SQLite database directly (read-only)."""
    path = stack.database_path(sector)  # type: ignore[arg-type]
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return list(db.execute(sql, params).fetchall())


def referrals_in_db(stack: ProcessStack, sector: str, case_id: str) -> list[tuple[str, str]]:
    """(referral_id, status) of every referral the sector holds for the case."""
    return [
        (str(r[0]), str(r[1]))
        for r in rows(
            stack, sector, "SELECT referral_id, status FROM referrals WHERE case_id = ?", case_id
        )
    ]


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the write lock of an SQLite database: a service's next unit of
    work (BEGIN IMMEDIATE) waits inside the call until it is released."""
    db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        db.close()


async def activity_started(client: Client, case_id: str, sector: str) -> bool:
    """The journey's request to `sector` has been handed to a worker."""
    handle = client.get_workflow_handle(c.journey_workflow_id(case_id))
    description = await handle.describe()
    name = c.SECTOR_ACTIVITIES[c.Sector(sector)].request_referral
    return any(
        p.activity_type.name == name
        and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in description.raw_description.pending_activities
    )


def timeline_events(
    journey: c.JourneyStatus, referral_id: str, level: int
) -> list[c.TimelineEvent]:
    return [e for e in journey.timeline if e.referral_id == referral_id and e.level == level]
