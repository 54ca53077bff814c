"""The Masar stack as real processes, for benchmarks and fault-injection tests.

Like `masar up`, but every part is started, killed and restarted on demand:
the Temporal dev server (SQLite file under the data dir, or in memory), the
sector services (`python -m services.<name>`, each with its activity worker
and outbox) and the journey worker (`python -m workflows`). Every port is
picked free, every process shares one key ring (MASAR_KEYRING), and each part
logs to `<data_dir>/logs/<part>.log`.

Children get SIGTERM if this process dies (masar.devstack.stack.guarded), so a crashed
benchmark or test leaves no server holding a port or the Temporal database.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.client import Client

from masar.contract import JOURNEY_TASK_QUEUE, ServiceName
from masar.devstack.devserver import dev_server_args
from masar.devstack.stack import guarded
from masar.platform.crypto import Keyring
from masar.platform.identity import TokenIssuer
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal

ROOT = Path(__file__).resolve().parent.parent
SERVICES: tuple[ServiceName, ...] = ("intake", "shelter", "legal", "employment")
JOURNEY = "journey"
TEMPORAL = "temporal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keyring_spec(ring: Keyring) -> str:
    """A key ring as MASAR_KEYRING ("kid:BASE64KEY,..."), the active key first."""
    ordered = [ring.active_id, *(k for k in ring.keys if k != ring.active_id)]
    return ",".join(f"{k}:{base64.b64encode(ring.keys[k]).decode()}" for k in ordered)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def file_size(path: Path) -> int:
    """Size of an SQLite database with its -wal and -shm files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += (path.parent / (path.name + suffix)).stat().st_size
    return total


@dataclass
class Part:
    name: str
    command: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.time()
    log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_bytes()[-6000:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessStack:
    """Ports, environment and processes of one stack. Use `process_stack(...)`."""

    data_dir: Path
    services: tuple[ServiceName, ...] = SERVICES
    policy_file: Path | None = None
    persistent_temporal: bool = True
    database_urls: Mapping[str, str] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    keyring: Keyring = field(default_factory=lambda: Keyring.generate("stack"))
    # Every process signs and checks tokens (and consent proofs) with this key.
    issuer: TokenIssuer = field(default_factory=TokenIssuer.generate)
    temporal_port: int = field(default_factory=free_port)
    addresses: dict[str, str] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)
    _client: Client | None = None
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        for service in SERVICES:
            self.addresses.setdefault(service, f"127.0.0.1:{free_port()}")
        self.parts[TEMPORAL] = Part(
            TEMPORAL,
            dev_server_args(
                port=self.temporal_port,
                db_file=self.temporal_db if self.persistent_temporal else None,
            ),
            self.data_dir / "logs" / "temporal.log",
        )
        for name in self.services:
            self.parts[name] = Part(
                name,
                [sys.executable, "-m", f"services.{name}"],
                self.data_dir / "logs" / f"{name}.log",
            )
        self.parts[JOURNEY] = Part(
            JOURNEY, [sys.executable, "-m", "workflows"], self.data_dir / "logs" / "journey.log"
        )

    # -- configuration --

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_db(self) -> Path:
        return self.data_dir / "temporal.db"

    def database_path(self, name: ServiceName) -> Path:
        """The SQLite file of a service (when it runs on SQLite)."""
        return self.data_dir / f"{name}.db"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("MASAR_")]:
            del env[key]
        env.update(
            {
                "MASAR_DATA_DIR": str(self.data_dir),
                "MASAR_TEMPORAL_ADDRESS": self.temporal_address,
                "MASAR_KEYRING": keyring_spec(self.keyring),
                "MASAR_TOKEN_SIGNING_KEY": self.issuer.private_key_b64(),
                "MASAR_LOG_LEVEL": "WARNING",
                "MASAR_LOG_FORMAT": "json",
                "MASAR_JOURNEY_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            }
        )
        for name in SERVICES:
            env[f"MASAR_{name.upper()}_ADDR"] = self.addresses[name]
            env[f"MASAR_{name.upper()}_METRICS_PORT"] = "0"
        for service, url in self.database_urls.items():
            env[f"MASAR_{service.upper()}_DATABASE_URL"] = url
        if self.policy_file is not None:
            env["MASAR_POLICY_FILE"] = str(self.policy_file)
        env.update(self.extra_env)
        return env

    # -- processes --

    def spawn(self, name: str) -> Part:
        part = self.parts[name]
        if part.running:
            raise RuntimeError(f"{name} is already running")
        if part.log is None:
            part.log = open(part.log_path, "ab")  # noqa: SIM115 - kept across restarts
        part.log.write(f"--- starting {name} at {time.time():.3f} ---\n".encode())
        part.log.flush()
        part.started_at = time.time()
        part.proc = subprocess.Popen(
            guarded(part.command),
            stdin=subprocess.DEVNULL,
            stdout=part.log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            cwd=str(ROOT),
        )
        return part

    async def start(self, *names: str, within: float = 90.0) -> None:
        """Start the named parts (Temporal first if named) and wait until each is ready."""
        if TEMPORAL in names:
            self.spawn(TEMPORAL)
            await self.wait_ready(TEMPORAL, within=within)
        others = [n for n in names if n != TEMPORAL]
        for name in others:
            self.spawn(name)
        await asyncio.gather(*(self.wait_ready(n, within=within) for n in others))

    async def start_all(self, within: float = 90.0) -> None:
        await self.start(TEMPORAL, *self.services, JOURNEY, within=within)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (kill -9 by default) and reap the process."""
        part = self.parts[name]
        if part.proc is None or part.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            part.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self._reap(part, timeout=30.0)

    def stop(self, name: str, *, timeout: float = 30.0) -> None:
        """SIGTERM and wait for the process to exit (SIGKILL after `timeout`)."""
        part = self.parts[name]
        if part.proc is None or part.proc.poll() is not None:
            return
        part.proc.terminate()
        self._reap(part, timeout=timeout)

    @staticmethod
    def _reap(part: Part, *, timeout: float) -> None:
        assert part.proc is not None
        try:
            part.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            part.proc.kill()
            part.proc.wait()

    async def stop_async(self, name: str, *, grace: float = 30.0) -> None:
        await asyncio.to_thread(self.stop, name, timeout=grace)

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
        self._client = None
        apps = [n for n in self.parts if n != TEMPORAL]
        await asyncio.gather(*(self.stop_async(n, grace=15) for n in apps))
        await self.stop_async(TEMPORAL)
        for part in self.parts.values():
            if part.log is not None:
                part.log.close()
                part.log = None

    def pid(self, name: str) -> int | None:
        return self.parts[name].pid

    def rss(self, name: str) -> int:
        pid = self.pid(name)
        return rss_bytes(pid) if pid and self.parts[name].running else 0

    # -- readiness --

    async def wait_ready(self, name: str, *, within: float = 90.0) -> None:
        part = self.parts[name]
        deadline = time.monotonic() + within
        while True:
            if not part.running:
                raise RuntimeError(
                    f"{name} exited before it was ready; last lines of {part.log_path}:\n"
                    + part.log_tail()
                )
            if await self._ready(name):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} not ready after {within:.0f}s; last lines of {part.log_path}:\n"
                    + part.log_tail()
                )
            await asyncio.sleep(0.1)

    async def _ready(self, name: str) -> bool:
        if name == TEMPORAL:
            try:
                client = await asyncio.wait_for(self.client(), 3)
                await client.workflow_service.get_system_info(
                    _system_info_request(), timeout=timedelta(seconds=2)
                )
            except Exception:
                self._client = None
                return False
            return True
        if name == JOURNEY:
            return await self._worker_polling(self.parts[name].started_at)
        try:
            reply = await health_pb2_grpc.HealthStub(self.channel(name)).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _worker_polling(self, since: float) -> bool:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        try:
            client = await asyncio.wait_for(self.client(), 3)
            reply = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=JOURNEY_TASK_QUEUE),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=timedelta(seconds=2),
            )
        except Exception:
            return False
        # Pollers of a killed worker linger: only one seen since this start counts.
        return any(
            p.last_access_time.ToDatetime(tzinfo=UTC).timestamp() >= since - 0.05
            for p in reply.pollers
        )

    # -- clients --

    async def client(self) -> Client:
        """A Temporal client made as every Masar process makes it (codec, tracing)."""
        if self._client is None:
            self._client = await connect_temporal(
                TemporalSettings(address=self.temporal_address, namespace="default"),
                keyring=self.keyring,
            )
        return self._client

    def stubs(self) -> Any:
        """`bench.journeys.Stubs` on this stack's channels, with its token issuer."""
        from bench.journeys import Stubs

        return Stubs.of(self.channel, self.issuer)

    def channel(self, name: ServiceName | str) -> grpc.aio.Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                self.addresses[name],
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
            self._channels[name] = channel
        return channel


def _system_info_request() -> Any:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()


@contextlib.asynccontextmanager
async def process_stack(
    data_dir: Path,
    *,
    start: Iterable[str] | None = None,
    **options: Any,
) -> AsyncIterator[ProcessStack]:
    """A stack whose named parts (default: all) are started and ready; every
    process is stopped on exit, Temporal last."""
    stack = ProcessStack(data_dir, **options)
    try:
        if start is None:
            await stack.start_all()
        else:
            names = list(start)
            if names:
                await stack.start(*names)
        yield stack
    finally:
        await stack.close()
