"""`masar up` as real processes: Temporal, the four services, the journey
worker, on a temporary data dir and free ports."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.client import Client, WorkflowExecutionStatus

from masar.contract import JOURNEY_TASK_QUEUE
from masar.settings import SettingsError
from masar.stack import SERVICES, endpoints, plan_stack, port_problems
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def port_pair() -> int:
    """A free Temporal port whose web UI port (+1000) is free too."""
    for _ in range(50):
        port = free_port()
        if port > 64535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def stack_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MASAR_", "OTEL_")) or k == "MASAR_TEST_POSTGRES_URL"
    }
    env.update(
        {
            "MASAR_DATA_DIR": str(data_dir),
            "MASAR_TEMPORAL_ADDRESS": f"127.0.0.1:{port_pair()}",
            "MASAR_TEMPORAL_METRICS_PORT": str(free_port()),
            "MASAR_JOURNEY_METRICS_PORT": str(free_port()),
            "MASAR_LOG_LEVEL": "WARNING",
        }
    )
    for name in SERVICES:
        env[f"MASAR_{name.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"MASAR_{name.upper()}_METRICS_PORT"] = str(free_port())
    return env


class Up:
    """`python -m masar.stack --json` (what `masar up --json` runs)."""

    def __init__(self, env: dict[str, str], err_path: Path) -> None:
        self.err_path = err_path
        self._err = open(err_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "masar.stack", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def endpoints(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(self._lines.get(timeout=0.5)))
            except queue.Empty:
                if self.proc.poll() is not None:
                    pytest.fail(f"masar up exited ({self.proc.returncode}):\n{self.stderr()}")
        pytest.fail(f"masar up not ready after {timeout:.0f}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_stderr(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not said within {timeout:.0f}s:\n{self.stderr()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


@pytest.fixture
def up_runner(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not true within {timeout:.0f}s")
        time.sleep(0.2)


async def start_parked_workflow(address: str) -> str:
    """A workflow on a queue nobody polls: it stays open, in temporal.db."""
    client = await Client.connect(address)
    workflow_id = f"parked-{os.getpid()}-{time.monotonic_ns()}"
    await client.start_workflow("Parked", id=workflow_id, task_queue="masar-test-parked")
    return workflow_id


async def workflow_status(address: str, workflow_id: str) -> WorkflowExecutionStatus | None:
    client = await Client.connect(address)
    return (await client.get_workflow_handle(workflow_id).describe()).status


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_supervises_restarts_and_stops_cleanly(tmp_path: Path, up_runner: list[Up]) -> None:
    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up1.err")
    up_runner.append(up)
    doc = up.endpoints(timeout=120)

    # Endpoints as configured, the data dir absolute, every part running.
    assert doc["status"] == "ready"
    assert doc["data_dir"] == str((tmp_path / "data").resolve())
    temporal = doc["temporal"]
    assert temporal["address"] == env["MASAR_TEMPORAL_ADDRESS"]
    temporal_port = int(temporal["address"].rsplit(":", 1)[1])
    assert temporal["ui_url"] == f"http://127.0.0.1:{temporal_port + 1000}"
    assert temporal["db_file"] == str(tmp_path.resolve() / "data" / "temporal.db")
    services = doc["services"]
    assert set(services) == set(SERVICES)
    for name, service in services.items():
        assert service["address"] == env[f"MASAR_{name.upper()}_ADDR"]
        port = env[f"MASAR_{name.upper()}_METRICS_PORT"]
        assert service["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
        assert Path(service["log_file"]).is_file()
        assert serving(service["address"]), name
    assert doc["journey_worker"]["task_queue"] == JOURNEY_TASK_QUEUE
    pids = {name: s["pid"] for name, s in services.items()}
    pids["temporal"] = temporal["pid"]
    pids["journey"] = doc["journey_worker"]["pid"]
    assert all(alive(pid) for pid in pids.values()), pids

    # One scrape endpoint per process: per-RPC metrics (the supervisor's
    # health checks) and the Temporal SDK's metrics side by side.
    shelter_metrics = services["shelter"]["metrics_url"]
    assert 'masar_rpc_server_handled_total{code="OK",method="Check"' in scrape(shelter_metrics)
    # The activity worker connects to Temporal on its own time.
    wait_until(lambda: "temporal_request_total{" in scrape(shelter_metrics), 30, "SDK metrics")
    assert "temporal_request_total{" in scrape(doc["journey_worker"]["metrics_url"])
    assert scrape(temporal["metrics_url"])  # the server's own

    parked = asyncio.run(start_parked_workflow(temporal["address"]))

    # A crashed service is restarted, said so, and serves again.
    os.kill(pids["shelter"], signal.SIGKILL)
    up.wait_stderr("shelter service exited (signal SIGKILL); restarting", timeout=10)
    up.wait_stderr("shelter service is back", timeout=60)
    assert serving(services["shelter"]["address"])

    # SIGTERM stops everything, Temporal included, before masar up returns.
    assert up.stop() == 0
    assert "stopped." in up.stderr()
    assert not [name for name, pid in pids.items() if alive(pid)]

    # At once again on the same data dir: no "database is locked", and the
    # open workflow is still there.
    again = Up(env, tmp_path / "up2.err")
    up_runner.append(again)
    doc2 = again.endpoints(timeout=120)
    assert doc2["temporal"]["db_file"] == temporal["db_file"]
    status = asyncio.run(workflow_status(temporal["address"], parked))
    assert status == WorkflowExecutionStatus.RUNNING
    temporal_pid = doc2["temporal"]["pid"]
    assert again.stop() == 0
    assert not alive(temporal_pid)


@pytest.mark.slow
def test_port_in_use_gives_one_clear_line_and_starts_nothing(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env["MASAR_LEGAL_ADDR"] = f"127.0.0.1:{port}"
        result = subprocess.run(
            [sys.executable, "-m", "masar.stack"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"masar up: port {port} (legal gRPC) is already in use: stop what uses it "
        "or choose another with MASAR_LEGAL_ADDR"
    ]
    assert result.stdout == ""
    assert not (tmp_path / "data" / "temporal.db").exists()


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    env["MASAR_SHELTER_ADDR"] = "no-port-here"
    result = subprocess.run(
        [sys.executable, "-m", "masar.stack", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "masar up: configuration error: MASAR_SHELTER_ADDR must be host:port, got a malformed value"
    ]


def test_children_get_one_consistent_environment(tmp_path: Path) -> None:
    env = stack_env(Path("relative-data"))
    env["MASAR_SHELTER_DATABASE_URL"] = "postgresql+psycopg://masar:s3cret@db.example:5432/shelter"
    plan = plan_stack(env)
    data_dir = plan.data_dir
    assert data_dir.is_absolute() and data_dir.name == "relative-data"
    child = plan.child_env
    assert child["MASAR_DATA_DIR"] == str(data_dir)
    for name in SERVICES:
        assert child[f"MASAR_{name.upper()}_ADDR"] == env[f"MASAR_{name.upper()}_ADDR"]
        assert plan.services[name].common.data_dir == data_dir
    assert plan.services["intake"].database_url == f"sqlite:///{data_dir / 'intake.db'}"
    assert plan.ui_port == plan.temporal_port + 1000
    doc = endpoints(plan)
    # Printed endpoints never show a database password.
    assert "s3cret" not in json.dumps(doc)
    assert doc["services"]["shelter"]["database"].startswith("postgresql+psycopg://masar:***@")


def test_one_port_configured_twice_is_named(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    env["MASAR_EMPLOYMENT_METRICS_PORT"] = env["MASAR_INTAKE_METRICS_PORT"]
    problems = port_problems(plan_stack(env))
    assert problems == [
        f"port {env['MASAR_INTAKE_METRICS_PORT']} is configured for both intake metrics "
        "(MASAR_INTAKE_METRICS_PORT) and employment metrics (MASAR_EMPLOYMENT_METRICS_PORT)"
    ]
    env["MASAR_TEMPORAL_ADDRESS"] = "127.0.0.1:65000"
    with pytest.raises(SettingsError, match="MASAR_TEMPORAL_ADDRESS"):
        plan_stack(env)
