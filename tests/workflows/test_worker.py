"""`python -m workflows` as a real process: refuses a malformed policy at start,
runs journeys on a real dev server, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from masar import contract as c
from masar.platform.temporal import client_options
from tests.workflows.support import TEST_KEYRING, FakeCollaborators
from workflows.policy import DEFAULT_POLICY_FILE

ROOT = Path(__file__).resolve().parents[2]


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASAR_", "OTEL_"))}
    key = base64.b64encode(TEST_KEYRING.keys[TEST_KEYRING.active_id]).decode()
    env.update(
        {
            "MASAR_DATA_DIR": str(tmp_path),
            "MASAR_KEYRING": f"{TEST_KEYRING.active_id}:{key}",
            "MASAR_JOURNEY_METRICS_PORT": "0",
            "MASAR_LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def run_worker_process(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows"],
        cwd=ROOT,
        env=worker_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_malformed_policy_stops_the_worker_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY_FILE.read_text().replace('high = "2h"', 'high = "soon"', 1))
    done = run_worker_process(
        tmp_path, MASAR_POLICY_FILE=str(policy), MASAR_TEMPORAL_ADDRESS="127.0.0.1:1"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "deadlines.shelter_accept.high" in lines[0]
    assert "MASAR_POLICY_FILE" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_missing_policy_file_is_a_configuration_error(tmp_path: Path) -> None:
    done = run_worker_process(tmp_path, MASAR_POLICY_FILE=str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "masar journey: configuration error: MASAR_POLICY_FILE does not name a readable file"
    ]


@contextlib.asynccontextmanager
async def sector_fakes(client: Client) -> AsyncIterator[FakeCollaborators]:
    fakes = FakeCollaborators()
    async with contextlib.AsyncExitStack() as stack:
        for queue, activities in fakes.activities().items():
            await stack.enter_async_context(Worker(client, task_queue=queue, activities=activities))
        yield fakes


async def read_until(stream: asyncio.StreamReader, needle: str, *, within: float) -> list[str]:
    lines: list[str] = []

    async def scan() -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"stream ended before {needle!r}: {lines}")
            lines.append(raw.decode())
            if needle in lines[-1]:
                return

    await asyncio.wait_for(scan(), timeout=within)
    return lines


async def test_runs_journeys_and_stops_on_sigterm(tmp_path: Path, temporal_dev_server: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workflows",
        cwd=ROOT,
        env=worker_env(tmp_path, MASAR_TEMPORAL_ADDRESS=temporal_dev_server.address),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        await read_until(proc.stderr, "journey worker started", within=30)
        client = await Client.connect(
            temporal_dev_server.address, **client_options(keyring=TEST_KEYRING)
        )
        async with sector_fakes(client):
            case_id = c.new_case_id()
            handle = await client.start_workflow(
                c.JOURNEY_WORKFLOW,
                c.JourneyInput(
                    case_id=case_id,
                    region="oriental",
                    risk=c.Risk.CRITICAL,
                    needs=[c.Need.SHELTER],
                    consents=[c.Sector.SHELTER],
                    opened_at=datetime.now(UTC),
                ),
                id=c.journey_workflow_id(case_id),
                task_queue=c.JOURNEY_TASK_QUEUE,
            )
            status = None
            for _ in range(200):
                with contextlib.suppress(Exception):
                    status = await handle.query(c.QUERY_STATUS, result_type=c.JourneyStatus)
                    if status.referrals:
                        break
                await asyncio.sleep(0.05)
            assert status is not None and status.referrals
            assert status.referrals[0].status is c.ReferralStatus.PENDING
            await handle.terminate("test over")
        proc.send_signal(signal.SIGTERM)
        await read_until(proc.stderr, "journey worker stopped", within=30)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
