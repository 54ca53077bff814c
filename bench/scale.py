"""Benchmark 2: open journeys at scale, then a burst of deadlines.

N journeys (medium risk) are registered through intake and left open: each
parks with a PENDING shelter referral and a PENDING legal referral under
their deadlines (24 h and 72 h by the shipped policy), plus its follow-up
timer. Then the resident memory of the journey worker and of each service,
and the size of the Temporal database (the dev server's SQLite file, as
`masar up` keeps it) are read.

The burst: B more journeys at high risk, whose shelter_accept deadline is
seconds long (a MASAR_POLICY_FILE), so their reminder rungs (50 % of the
deadline) fall due together. To bunch the deadlines, the shelter service is
stopped while the B cases are registered and started again once they all
are: the referrals, and so the ladders, start as fast as the shelter drains
its backlog. The lag of each reminder is the time from its due time (the
referral's deadline minus half the deadline) to the journey showing it: in
its search attributes (MasarEscalationLevel >= 1, polled as a coordinator's
`masar cases --escalated` would) and in its timeline (the rung's own time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench import journeys as j
from bench.procs import JOURNEY, TEMPORAL, ProcessStack, file_size, process_stack
from bench.report import heading, latency_ms, mib, progress, rate, say, write_result
from masar import contract as c

NAME = "scale"
REMINDER, ESCALATE, EXPIRE = 0.5, 1.0, 2.0

POLICY = """
[ladder]
reminder = {reminder}
escalate = {escalate}
expire = {expire}

[deadlines.shelter_accept]
critical = "{burst}s"
high = "{burst}s"
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


def write_policy(path: Path, burst_seconds: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        POLICY.format(reminder=REMINDER, escalate=ESCALATE, expire=EXPIRE, burst=burst_seconds)
    )
    return path


def pending_referrals(stack: ProcessStack, sector: str) -> int:
    """PENDING referrals in a sector's SQLite database (a read-only probe)."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{stack.database_path(sector)}?mode=ro", uri=True, timeout=5)  # type: ignore[arg-type]
        ) as db:
            row = db.execute("SELECT count(*) FROM referrals WHERE status = 'PENDING'").fetchone()
            return int(row[0])
    except sqlite3.Error:
        return -1


async def wait_pending(stack: ProcessStack, sector: str, count: int, *, within: float) -> None:
    await j.poll(
        lambda: _at_least(stack, sector, count),
        within=within,
        interval=0.5,
        what=f"{count} PENDING {sector} referrals",
    )


async def _at_least(stack: ProcessStack, sector: str, count: int) -> bool:
    return await asyncio.to_thread(pending_referrals, stack, sector) >= count


async def register_many(stubs: j.Stubs, count: int, concurrency: int, **options: Any) -> list[str]:
    gate = asyncio.Semaphore(concurrency)
    cases: list[str] = []

    async def one() -> None:
        async with gate:
            cases.append(await j.register(stubs, **options))

    await asyncio.gather(*(one() for _ in range(count)))
    return cases


def memory(stack: ProcessStack) -> dict[str, float]:
    parts = [TEMPORAL, *stack.services, JOURNEY]
    return {f"{name}_rss_mib": mib(stack.rss(name)) for name in parts}


def storage(stack: ProcessStack) -> dict[str, float]:
    sizes = {"temporal_db_mib": mib(file_size(stack.temporal_db))}
    for name in stack.services:
        sizes[f"{name}_db_mib"] = mib(file_size(stack.database_path(name)))
    return sizes


async def watch_escalations(client: Client, cases: set[str], *, within: float) -> dict[str, float]:
    """When each case first showed MasarEscalationLevel >= 1 (time.time())."""
    wanted = {c.journey_workflow_id(case): case for case in cases}
    seen: dict[str, float] = {}
    deadline = time.monotonic() + within
    query = f"{c.SA_ESCALATION_LEVEL} >= 1 AND ExecutionStatus = 'Running'"
    while len(seen) < len(wanted) and time.monotonic() < deadline:
        now = time.time()
        async for execution in client.list_workflows(query, page_size=1000):
            case = wanted.get(execution.id)
            if case is not None and case not in seen:
                seen[case] = now
        await asyncio.sleep(0.2)
    return seen


async def reminder_lags(
    client: Client, cases: list[str], seen: dict[str, float], burst_seconds: int
) -> dict[str, Any]:
    """Due time of each shelter reminder, and how late it showed."""
    gate = asyncio.Semaphore(10)
    dues: list[float] = []
    visible: list[float] = []
    in_timeline: list[float] = []
    to_due = timedelta(seconds=(ESCALATE - REMINDER) * burst_seconds)

    async def one(case: str) -> None:
        async with gate:
            journey = await j.status(client, case)
        shelter = [r for r in journey.referrals if r.sector == c.Sector.SHELTER]
        if not shelter or shelter[0].deadline is None:
            return
        ref = shelter[0]
        assert ref.deadline is not None
        due = (ref.deadline - to_due).astimezone(UTC)
        dues.append(due.timestamp())
        if case in seen:
            visible.append(max(seen[case] - due.timestamp(), 0.0))
        rungs = [
            e.at
            for e in journey.timeline
            if e.referral_id == ref.referral_id and e.level == c.LEVEL_REMINDER
        ]
        if rungs:
            in_timeline.append(max((min(rungs) - due).total_seconds(), 0.0))

    await asyncio.gather(*(one(case) for case in cases))
    return {
        "deadlines": len(dues),
        "deadline_spread_seconds": round(max(dues) - min(dues), 2) if dues else 0.0,
        "visible_in_search_attributes": {
            **latency_ms(visible),
            "missing": len(cases) - len(visible),
        },
        "in_timeline": latency_ms(in_timeline),
    }


async def measure(
    *, journeys: int, burst: int, burst_seconds: int, concurrency: int, data_dir: Path
) -> dict[str, Any]:
    policy = write_policy(data_dir / "policy.toml", burst_seconds)
    # Parked journeys never reach employment (it waits until she is safe).
    services = ("intake", "shelter", "legal")
    async with process_stack(data_dir, policy_file=policy, services=services) as stack:
        stubs = stack.stubs()
        client = await stack.client()
        await j.seed_region(stubs, cases=10, sectors=("shelter", "legal"))
        baseline = memory(stack)
        base_storage = storage(stack)

        progress(f"registering {journeys} open journeys, {concurrency} at a time")
        start = time.perf_counter()
        await register_many(stubs, journeys, concurrency, risk="medium")
        registered = time.perf_counter() - start
        settle_timeout = max(120.0, journeys / 2)
        for sector in ("shelter", "legal"):
            await wait_pending(stack, sector, journeys, within=settle_timeout)
        settled = time.perf_counter() - start
        open_memory = memory(stack)
        open_storage = storage(stack)

        progress(f"burst: {burst} journeys whose reminders fall due together")
        await stack.stop_async("shelter")
        cases = await register_many(stubs, burst, concurrency, risk="high")
        await stack.start("shelter")
        drained = time.perf_counter()
        await wait_pending(stack, "shelter", journeys + burst, within=settle_timeout)
        drain = time.perf_counter() - drained
        seen = await watch_escalations(client, set(cases), within=burst_seconds * 2 + 120)
        lags = await reminder_lags(client, cases, seen, burst_seconds)
        after_memory = memory(stack)

    cores_note = (
        "creation is bounded by the machine: every journey is a registration, two "
        "activities calling two services, and their workflow tasks"
    )
    return {
        "parameters": {
            "open_journeys": journeys,
            "burst_journeys": burst,
            "burst_shelter_accept_seconds": burst_seconds,
            "reminder_fraction": REMINDER,
            "concurrency": concurrency,
            "temporal": "dev server, SQLite file",
        },
        "creation": {
            "registered_seconds": round(registered, 2),
            "registrations_per_second": rate(journeys, registered),
            "parked_seconds": round(settled, 2),
            "parked_journeys_per_second": rate(journeys, settled),
            "note": cores_note,
        },
        "memory_before_mib": baseline,
        "memory_open_mib": open_memory,
        "memory_after_burst_mib": after_memory,
        "journey_worker_kib_per_open_journey": round(
            (open_memory[f"{JOURNEY}_rss_mib"] - baseline[f"{JOURNEY}_rss_mib"])
            * 1024
            / max(journeys, 1),
            2,
        ),
        "storage_before": base_storage,
        "storage_open": open_storage,
        "temporal_db_kib_per_open_journey": round(
            (open_storage["temporal_db_mib"] - base_storage["temporal_db_mib"])
            * 1024
            / max(journeys, 1),
            2,
        ),
        "burst": {"shelter_backlog_drain_seconds": round(drain, 2), **lags},
    }


def print_figures(figures: dict[str, Any]) -> None:
    heading("Open journeys at scale, then a burst of deadlines")
    p, cr = figures["parameters"], figures["creation"]
    say(
        f"   {p['open_journeys']} open journeys parked in {cr['parked_seconds']:.0f} s "
        f"({cr['parked_journeys_per_second']:.1f} journeys/s; registration "
        f"{cr['registrations_per_second']:.1f}/s)"
    )
    mem = figures["memory_open_mib"]
    say(
        "   resident memory: "
        + ", ".join(f"{k.removesuffix('_rss_mib')} {v:.0f} MiB" for k, v in mem.items())
    )
    st = figures["storage_open"]
    say(
        f"   Temporal database {st['temporal_db_mib']:.1f} MiB "
        f"({figures['temporal_db_kib_per_open_journey']:.1f} KiB per open journey); "
        + ", ".join(
            f"{k.removesuffix('_db_mib')} {v:.1f} MiB"
            for k, v in st.items()
            if k != "temporal_db_mib"
        )
    )
    b = figures["burst"]
    vis, tl = b["visible_in_search_attributes"], b["in_timeline"]
    say(
        f"   burst: {p['burst_journeys']} reminders due within "
        f"{b['deadline_spread_seconds']:.1f} s; lag to search attributes p50 "
        f"{vis['p50_ms']:.0f} ms, p99 {vis['p99_ms']:.0f} ms, max {vis['max_ms']:.0f} ms "
        f"({vis['missing']} not seen); to timeline p50 {tl['p50_ms']:.0f} ms, "
        f"p99 {tl['p99_ms']:.0f} ms, max {tl['max_ms']:.0f} ms"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--open", type=int, default=10_000, help="open journeys to park (default 10000)"
    )
    parser.add_argument(
        "--burst", type=int, default=500, help="journeys in the deadline burst (default 500)"
    )
    parser.add_argument(
        "--burst-deadline",
        type=int,
        default=60,
        help="their shelter_accept deadline in seconds; the reminder is due at half (default 60)",
    )
    parser.add_argument(
        "--register-concurrency",
        type=int,
        default=20,
        help="registrations at a time (default 20)",
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        data_dir = args.data_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="masar-bench-"))
        )
        figures = await measure(
            journeys=args.open,
            burst=args.burst,
            burst_seconds=args.burst_deadline,
            concurrency=args.register_concurrency,
            data_dir=Path(data_dir) / NAME,
        )
    print_figures(figures)
    path = write_result(NAME, figures, args.results_dir)
    say(f"   written to {path}")
    return figures
