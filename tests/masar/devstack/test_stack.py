"""`masar up` as real processes: Temporal, the four services, the journey
worker, on a temporary data dir and free ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.client import Client, WorkflowExecutionStatus

from masar.contract import JOURNEY_TASK_QUEUE
from masar.devstack.plan import (
    PRIVATE_KEY_VARIABLES,
    SERVICES,
    endpoints,
    endpoints_table,
    plan_stack,
    port_problems,
)
from masar.platform.settings import SettingsError
from tests.processes import UP, Up, stack_env

ROOT = Path(__file__).resolve().parents[3]


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
    # The web console, started once the services were ready, answers.
    console = doc["console"]
    assert console["address"] == env["MASAR_CONSOLE_ADDR"]
    assert console["url"] == f"http://{env['MASAR_CONSOLE_ADDR']}"
    assert console["log_file"] == str(tmp_path.resolve() / "data" / "logs" / "console.log")
    assert Path(console["log_file"]).is_file()
    assert scrape(f"{console['url']}/healthz") == "ok"
    pids = {name: s["pid"] for name, s in services.items()}
    pids["temporal"] = temporal["pid"]
    pids["journey"] = doc["journey_worker"]["pid"]
    pids["console"] = console["pid"]
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
            UP,
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
        [*UP, "--json"],
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


def test_the_console_is_a_part_with_its_own_port_and_no_private_key(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    env["MASAR_TOKEN_SIGNING_KEY"] = "a-private-key-given-to-masar-up"
    plan = plan_stack(env)
    address = env["MASAR_CONSOLE_ADDR"]
    port = int(address.rsplit(":", 1)[1])
    assert [
        (listen.port, listen.variable) for listen in plan.listens() if listen.what == "console"
    ] == [(port, "MASAR_CONSOLE_ADDR")]
    # The shared environment, nothing of anyone's own key material.
    console_env = plan.part_env("console")
    assert console_env == plan.child_env
    assert console_env["MASAR_CONSOLE_ADDR"] == address
    assert not [name for name in PRIVATE_KEY_VARIABLES if name in console_env]
    assert not [name for name in console_env if name in ("MASAR_KEY_FILE", "MASAR_KEYRING")]
    # Not even a data key ring shared by every service.
    shared = plan_stack({**env, "MASAR_KEY_FILE": str(tmp_path / "shared-keyring.json")})
    assert "MASAR_KEY_FILE" in shared.part_env("shelter")
    assert "MASAR_KEY_FILE" not in shared.part_env("console")
    # Links in notifications lead to this console, unless MASAR_CONSOLE_URL says otherwise.
    assert plan.part_env("network")["MASAR_CONSOLE_URL"] == f"http://{address}"
    env["MASAR_CONSOLE_URL"] = "https://console.masar.test"
    assert plan_stack(env).child_env["MASAR_CONSOLE_URL"] == "https://console.masar.test"

    doc = endpoints(plan, {"console": 4242})
    assert doc["console"] == {
        "url": f"http://{address}",
        "address": address,
        "log_file": str((tmp_path / "data" / "logs" / "console.log").resolve()),
        "pid": 4242,
    }
    [row] = [line for line in endpoints_table(plan).splitlines() if line.split()[:1] == ["console"]]
    assert f"http://{address} (web)" in row and row.rstrip().endswith("console.log")

    # A wildcard listen address is opened on the loopback.
    env["MASAR_CONSOLE_ADDR"] = f"0.0.0.0:{port}"
    assert endpoints(plan_stack(env))["console"]["url"] == f"http://127.0.0.1:{port}"


def test_the_console_port_is_checked_with_the_others(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    env["MASAR_CONSOLE_ADDR"] = env["MASAR_SHELTER_ADDR"]
    port = env["MASAR_SHELTER_ADDR"].rsplit(":", 1)[1]
    assert port_problems(plan_stack(env)) == [
        f"port {port} is configured for both shelter gRPC (MASAR_SHELTER_ADDR) "
        "and console (MASAR_CONSOLE_ADDR)"
    ]
    env = stack_env(tmp_path / "data")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env["MASAR_CONSOLE_ADDR"] = f"127.0.0.1:{taken}"
        assert port_problems(plan_stack(env)) == [
            f"port {taken} (console) is already in use: stop what uses it "
            "or choose another with MASAR_CONSOLE_ADDR"
        ]
    env["MASAR_CONSOLE_ADDR"] = "no-port-here"
    with pytest.raises(SettingsError, match="MASAR_CONSOLE_ADDR"):
        plan_stack(env)


def test_masar_up_creates_nothing_others_can_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """`masar up` sets a private umask before anything is created, so its
    children (services, Temporal) inherit it too."""
    from masar.cli import up

    seen: list[int] = []

    async def fake_run_stack(*, json_output: bool) -> int:
        current = os.umask(0o077)
        seen.append(current)
        return 0

    previous = os.umask(0o022)
    try:
        monkeypatch.setattr(up, "run_stack", fake_run_stack)
        assert up.up_main([]) == 0
    finally:
        os.umask(previous)
    assert seen == [0o077]


def test_masar_up_says_where_e_mails_go(tmp_path: Path) -> None:
    from masar.devstack.plan import endpoints, endpoints_table, plan_stack

    env = stack_env(tmp_path / "data")
    plan = plan_stack(env)
    assert endpoints(plan)["mail"] == {"smtp": False, "eml_dir": str(tmp_path / "data" / "mail")}
    assert f"written to {tmp_path / 'data' / 'mail'}/" in endpoints_table(plan)
    env["MASAR_SMTP_URL"] = "smtps://masar:secret-password@mail.example.org:465"
    plan = plan_stack(env)
    assert endpoints(plan)["mail"] == {"smtp": True, "eml_dir": None}
    table = endpoints_table(plan)
    assert "sent through MASAR_SMTP_URL" in table and "secret-password" not in table
