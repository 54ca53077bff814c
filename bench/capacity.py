"""Benchmark 3: placements and enrolments per second through gRPC, per database.

The shelter and employment services run as their own processes (`python -m
services.<name>`), on SQLite and then on PostgreSQL (a fresh database per
service and run). A placement is the whole sector-side cycle: RequestPlacement
(the journey's activity asks; the service picks a shelter with free beds),
DecideReferral accept (staff; beds reserved under the shelter's row lock) and
CheckIn (beds occupied). An enrolment: RequestEnrolment, DecideReferral
accept (a seat taken), StartEnrolment. M cycles at a time.

No Temporal server runs here: the decisions and milestones each service owes
the journey stay QUEUED in its outbox (written in the same unit of work, as
always), so the figures are the services' and their databases' own, without
the journey's update round trip (benchmark 1 has that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import journeys as j
from bench.procs import process_stack
from bench.report import heading, latency_ms, progress, rate, say, write_result
from bench.throughput import describe_failure
from masar.contract import Sector
from masar.platform.identity import service_role
from masar.referral.consent import issue_consent_proof
from masar.v1 import common_pb2, employment_pb2, shelter_pb2

NAME = "capacity"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RPCS_PER_CYCLE = 3


def postgres_server() -> str:
    return (
        os.environ.get("MASAR_BENCH_POSTGRES_URL")
        or os.environ.get("MASAR_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES
    )


@contextlib.contextmanager
def fresh_postgres(server: str, names: list[str]) -> Any:
    """One new database per name on `server`, dropped afterwards; yields
    {name: url}. Raises ConnectionError when the server is unreachable."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    created: list[str] = []
    base, _, _ = server.rpartition("/")
    try:
        try:
            with admin.connect() as conn:
                for name in names:
                    database = f"masar_b_{name}_{secrets.token_hex(4)}"
                    conn.execute(text(f'CREATE DATABASE "{database}"'))
                    created.append(database)
        except Exception as exc:
            raise ConnectionError(f"PostgreSQL unreachable ({type(exc).__name__})") from None
        yield {name: f"{base}/{db}" for name, db in zip(names, created, strict=True)}
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            for database in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def as_journey(stubs: j.Stubs, sector: Sector, case_id: str) -> tuple[Any, str]:
    """What the journey's activity presents: the sector's service identity and
    intake's proof of the survivor's consent (signed with the stack's key)."""
    proof, _ = issue_consent_proof(stubs.credentials.issuer, case_id=case_id, sector=sector)
    return stubs.as_(service_role(sector.value)), proof


async def placement(stubs: j.Stubs) -> None:
    case_id = j.key()
    metadata, proof = as_journey(stubs, Sector.SHELTER, case_id)
    reply = await stubs.shelter.RequestPlacement(
        shelter_pb2.RequestPlacementRequest(
            case_id=case_id,
            risk=common_pb2.RISK_LEVEL_HIGH,
            region=j.REGION,
            needs=shelter_pb2.ShelterNeeds(household_size=1, children=0),
            idempotency_key=f"place-{j.key()}",
            consent_proof=proof,
        ),
        metadata=metadata,
    )
    await j.decide(stubs, "shelter", reply.referral)
    await j.check_in(stubs, reply.referral)


async def enrolment(stubs: j.Stubs) -> None:
    case_id = j.key()
    metadata, proof = as_journey(stubs, Sector.EMPLOYMENT, case_id)
    reply = await stubs.employment.RequestEnrolment(
        employment_pb2.RequestEnrolmentRequest(
            case_id=case_id,
            risk=common_pb2.RISK_LEVEL_HIGH,
            region=j.REGION,
            needs=employment_pb2.EmploymentNeeds(
                interests=[employment_pb2.PROGRAMME_KIND_SEWING], languages=["ary"]
            ),
            idempotency_key=f"enrol-{j.key()}",
            consent_proof=proof,
        ),
        metadata=metadata,
    )
    await j.decide(stubs, "employment", reply.referral)
    await j.start_enrolment(stubs, reply.referral)


async def cycles(
    count: int, concurrency: int, cycle: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []
    failures: list[str] = []

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            try:
                await cycle()
            except Exception as exc:
                failures.append(describe_failure(exc))
                return
            durations.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - start
    return {
        "cycles": len(durations),
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "wall_seconds": round(wall, 2),
        "per_second": rate(len(durations), wall),
        "rpcs_per_second": rate(len(durations) * RPCS_PER_CYCLE, wall),
        "cycle": latency_ms(durations),
    }


@contextlib.asynccontextmanager
async def services(data_dir: Path, urls: dict[str, str]) -> AsyncIterator[j.Stubs]:
    names = ("shelter", "employment")
    async with process_stack(data_dir, services=names, start=names, database_urls=urls) as stack:
        yield stack.stubs()


async def measure_database(data_dir: Path, urls: dict[str, str], count: int, concurrency: int):
    async with services(data_dir, urls) as stubs:
        await j.seed_shelters(stubs, beds=count + 10)
        await j.seed_programmes(stubs, seats=count + 10)
        # A few cycles first: the figures exclude first-call costs.
        for _ in range(3):
            await placement(stubs)
            await enrolment(stubs)
        return {
            "placements": await cycles(count, concurrency, lambda: placement(stubs)),
            "enrolments": await cycles(count, concurrency, lambda: enrolment(stubs)),
        }


async def measure(
    *, count: int, concurrency: int, data_dir: Path, postgres: str | None
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "parameters": {
            "cycles": count,
            "concurrency": concurrency,
            "placement": "RequestPlacement + DecideReferral(accept) + CheckIn",
            "enrolment": "RequestEnrolment + DecideReferral(accept) + StartEnrolment",
            "temporal": "none: journey updates stay queued in each service's outbox",
        }
    }
    progress(f"SQLite: {count} placements and {count} enrolments, {concurrency} at a time")
    figures["sqlite"] = await measure_database(data_dir / "sqlite", {}, count, concurrency)
    if postgres is None:
        figures["postgresql"] = {"skipped": "disabled with --no-postgres"}
        return figures
    try:
        with fresh_postgres(postgres, ["shelter", "employment"]) as urls:
            progress(f"PostgreSQL: {count} placements and {count} enrolments")
            figures["postgresql"] = await measure_database(
                data_dir / "postgresql", urls, count, concurrency
            )
    except ConnectionError as exc:
        say(f"   PostgreSQL skipped: {exc}; set MASAR_BENCH_POSTGRES_URL to measure it")
        figures["postgresql"] = {"skipped": str(exc)}
    return figures


def print_figures(figures: dict[str, Any]) -> None:
    heading("Service capacity through gRPC")
    p = figures["parameters"]
    say(f"   {p['cycles']} cycles each, {p['concurrency']} at a time; {p['temporal']}")
    for database in ("sqlite", "postgresql"):
        result = figures.get(database, {})
        if "skipped" in result:
            say(f"   {database:<10} skipped ({result['skipped']})")
            continue
        for kind in ("placements", "enrolments"):
            f = result[kind]
            say(
                f"   {database:<10} {kind:<10} {f['per_second']:>7.1f}/s "
                f"({f['rpcs_per_second']:.0f} RPC/s)  cycle p50 {f['cycle']['p50_ms']:.1f} ms  "
                f"p99 {f['cycle']['p99_ms']:.1f} ms  ({f['failures']} failed)"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cycles", type=int, default=500, help="placements and enrolments each (default 500)"
    )
    parser.add_argument(
        "--cycle-concurrency", type=int, default=20, help="cycles at a time (default 20)"
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="PostgreSQL server URL (default MASAR_BENCH_POSTGRES_URL, MASAR_TEST_POSTGRES_URL, "
        f"or {DEFAULT_POSTGRES}); a fresh database is created per run",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        data_dir = args.data_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="masar-bench-"))
        )
        figures = await measure(
            count=args.cycles,
            concurrency=args.cycle_concurrency,
            data_dir=Path(data_dir) / NAME,
            postgres=None if args.no_postgres else (args.postgres_url or postgres_server()),
        )
    print_figures(figures)
    path = write_result(NAME, figures, args.results_dir)
    say(f"   written to {path}")
    return figures
