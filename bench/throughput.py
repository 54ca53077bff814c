"""Benchmark 1: journeys per second through the real stack, against bare Temporal.

Masar: N journeys, M at a time, through the stack as real processes (the
Temporal dev server with its SQLite file as `masar up` runs it, the four
services on SQLite with their activity workers, the journey worker; payload
codec and tracing on, as every Masar process has them). Each journey: intake
registers the case; simulated staff find each referral in their sector's own
list and accept it through DecideReferral (shelter, then the check-in, legal,
then employment once she is safe). A journey is done when its employment
referral is accepted. Latency: from DecideReferral returning to the journey's
`status` query showing the referral ACCEPTED.

Bare: on the same Temporal server, with Masar's processes stopped, the same
N and M through `bench.bare` (3 activities, 3 updates, no gRPC, database,
codec or tracing) in a worker process of its own. Masar's throughput is
reported as a fraction of that ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from temporalio.client import Client

from bench import journeys as j
from bench.bare import STEPS, BareJourney
from bench.procs import JOURNEY, ROOT, ProcessStack, process_stack
from bench.report import heading, latency_ms, progress, rate, say, write_result
from masar import contract as c
from masar.devstack.stack import guarded
from masar.v1 import common_pb2

NAME = "throughput"
POLL = 0.25  # seconds between a simulated staff member's looks at their list


@dataclass
class Run:
    """What one side of the comparison measured."""

    started: float = 0.0
    finished: float = 0.0
    done: int = 0
    failures: list[str] = field(default_factory=list)
    journey_seconds: list[float] = field(default_factory=list)
    visible_seconds: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.finished - self.started

    def figures(self) -> dict[str, Any]:
        return {
            "journeys": self.done,
            "failures": len(self.failures),
            "failure_kinds": sorted(set(self.failures))[:5],
            "wall_seconds": round(self.wall, 2),
            "journeys_per_second": rate(self.done, self.wall),
            "decision_to_status": latency_ms(self.visible_seconds),
            "journey_duration": latency_ms(self.journey_seconds),
        }


async def run_many(
    count: int, concurrency: int, one: Callable[[Run], Awaitable[None]], run: Run
) -> Run:
    gate = asyncio.Semaphore(concurrency)

    async def guarded_one() -> None:
        async with gate:
            start = time.perf_counter()
            try:
                await one(run)
            except Exception as exc:
                run.failures.append(describe_failure(exc))
                return
            run.journey_seconds.append(time.perf_counter() - start)
            run.done += 1

    run.started = time.perf_counter()
    await asyncio.gather(*(guarded_one() for _ in range(count)))
    run.finished = time.perf_counter()
    return run


def describe_failure(exc: BaseException) -> str:
    """The kind of a failure: a status code and the server's detail (which
    names a field or a state, never a value), or an exception type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {(exc.details() or '')[:120]}"
    return f"{type(exc).__name__}: {str(exc)[:120]}"


# --- Masar ------------------------------------------------------------------------------


async def masar_journey(stubs: j.Stubs, client: Client, run: Run, *, within: float) -> None:
    accepted = c.ReferralStatus.ACCEPTED
    case_id = await j.register(stubs)
    # Staff look at their lists a few times a second, not in a tight loop:
    # the load generator shares the machine with what it measures.
    shelter = await j.wait_referral(stubs, "shelter", case_id, within=within, interval=POLL)
    legal = await j.wait_referral(stubs, "legal", case_id, within=within, interval=POLL)

    async def accept(sector: str, referral: common_pb2.Referral) -> None:
        referral_id = referral.referral_id
        await j.wait_known(client, case_id, referral_id, within=within)
        await j.decide(stubs, sector, referral)
        run.visible_seconds.append(
            await j.wait_visible(client, case_id, referral_id, accepted, within=within)
        )

    await accept("shelter", shelter)
    await j.check_in(stubs, shelter)
    await accept("legal", legal)
    employment = await j.wait_referral(stubs, "employment", case_id, within=within, interval=POLL)
    await accept("employment", employment)


async def run_masar(stack: ProcessStack, journeys: int, concurrency: int) -> Run:
    stubs = stack.stubs()
    client = await stack.client()
    await j.seed_region(stubs, cases=journeys + 1)
    # One journey first, so that the figures exclude the processes' first-call costs.
    await masar_journey(stubs, client, Run(), within=120)
    return await run_many(
        journeys,
        concurrency,
        lambda run: masar_journey(stubs, client, run, within=120),
        Run(),
    )


# --- bare Temporal --------------------------------------------------------------------------


async def bare_journey(client: Client, task_queue: str, run: Run, *, within: float) -> None:
    handle = await client.start_workflow(
        BareJourney.run, id=f"bare-{secrets.token_hex(8)}", task_queue=task_queue
    )
    for step in range(STEPS):
        await handle.execute_update(BareJourney.decide, step)
        start = time.perf_counter()
        await j.poll(partial(_bare_shows, handle, step), within=within, interval=0.005)
        run.visible_seconds.append(time.perf_counter() - start)
    await handle.result()


async def _bare_shows(handle: Any, step: int) -> bool:
    return bool(await handle.query(BareJourney.status) > step)


def spawn_bare_worker(address: str, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.bare", "--address", address, "--task-queue", task_queue]
    with open(log, "ab") as out:
        return subprocess.Popen(
            guarded(command), stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )


async def run_bare(address: str, journeys: int, concurrency: int, log: Path) -> Run:
    from temporalio.client import Client

    task_queue = f"bench-bare-{secrets.token_hex(4)}"
    worker = await asyncio.to_thread(spawn_bare_worker, address, task_queue, log)
    try:
        client = await Client.connect(address)
        await bare_journey(client, task_queue, Run(), within=120)
        return await run_many(
            journeys,
            concurrency,
            lambda run: bare_journey(client, task_queue, run, within=120),
            Run(),
        )
    finally:
        await asyncio.to_thread(stop_process, worker)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the benchmark -----------------------------------------------------------------------------


async def measure(
    *, journeys: int, concurrency: int, data_dir: Path, temporal_file: bool = True
) -> dict[str, Any]:
    async with process_stack(data_dir, persistent_temporal=temporal_file) as stack:
        progress(f"Masar: {journeys} journeys, {concurrency} at a time")
        masar = await run_masar(stack, journeys, concurrency)
        # The ceiling gets the machine Masar had: Masar's own processes stop.
        await asyncio.gather(*(stack.stop_async(name) for name in (*stack.services, JOURNEY)))
        progress(f"bare Temporal: {journeys} workflows, {concurrency} at a time")
        bare = await run_bare(
            stack.temporal_address, journeys, concurrency, data_dir / "logs" / "bare.log"
        )
    masar_rate = masar.done / masar.wall if masar.wall else 0.0
    bare_rate = bare.done / bare.wall if bare.wall else 0.0
    return {
        "parameters": {
            "journeys": journeys,
            "concurrency": concurrency,
            "temporal": "dev server, SQLite file" if temporal_file else "dev server, in memory",
            "processes": "Temporal, 4 services (SQLite), journey worker, bare worker: "
            "one process each; load generator in the benchmark process",
        },
        "masar": {
            **masar.figures(),
            "activities_per_journey": 3,
            "updates_per_journey": 4,
        },
        "bare": {
            **bare.figures(),
            "activities_per_journey": STEPS,
            "updates_per_journey": STEPS,
        },
        "ratio_to_bare": round(masar_rate / bare_rate, 3) if bare_rate else 0.0,
    }


def print_figures(figures: dict[str, Any]) -> None:
    heading("Journey throughput against bare Temporal")
    p = figures["parameters"]
    say(f"   {p['journeys']} journeys, {p['concurrency']} at a time; Temporal: {p['temporal']}")
    for side, title in (("masar", "Masar (real stack)"), ("bare", "bare Temporal")):
        f = figures[side]
        lat = f["decision_to_status"]
        say(
            f"   {title:<20} {f['journeys_per_second']:>7.2f} journeys/s  "
            f"decision->status p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms  "
            f"({f['journeys']} done, {f['failures']} failed, {f['wall_seconds']:.1f} s)"
        )
    say(f"   Masar / bare Temporal: {figures['ratio_to_bare']:.1%}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journeys", type=int, default=200, help="N journeys (default 200)")
    parser.add_argument("--concurrency", type=int, default=50, help="M at a time (default 50)")
    parser.add_argument(
        "--temporal-memory",
        action="store_true",
        help="run the dev server in memory (default: an SQLite file, as `masar up`)",
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        data_dir = args.data_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="masar-bench-"))
        )
        figures = await measure(
            journeys=args.journeys,
            concurrency=args.concurrency,
            data_dir=Path(data_dir) / NAME,
            temporal_file=not args.temporal_memory,
        )
    print_figures(figures)
    path = write_result(NAME, figures, args.results_dir)
    say(f"   written to {path}")
    return figures
