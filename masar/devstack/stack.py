"""`masar up`: the whole local stack, as supervised child processes.

Parts, in start order: the Temporal dev server (SQLite file `temporal.db` in
MASAR_DATA_DIR, Masar's search attributes registered, web UI on the Temporal
port + 1000), then together the services (`python -m services.<name>`: the
four sectors, each with its activity worker, and the network service —
organisations, accounts, sign-in — which has no activities yet and so runs no
worker) and the journey worker (`python -m workflows`); once they are all
ready, the web console (`python -m console`, MASAR_CONSOLE_ADDR: a client of
the services, with the shared environment and no private key).

- Every port is checked before anything starts; one taken gets one line
  naming the port and the variable that moves it, and exit status 1.
- A part is ready when: Temporal answers for its namespace; a service's gRPC
  health says SERVING; the journey worker polls `masar-journey`; the console
  answers 200 to GET /healthz.
- Each part logs to MASAR_DATA_DIR/logs/<part>.log. A part that exits is
  restarted with exponential backoff, and the supervisor says so.
- Ctrl-C, SIGTERM or SIGHUP stops the console, services and worker first
  (the network service after the others), Temporal last,
  and returns only once the Temporal server has exited (so its SQLite file is
  released and `masar up` can start again at once). Journeys live in that
  file: running `masar up` again on the same data dir continues them.
- A stop is a stop: once one is requested nothing is restarted or said to
  be. The same stop may arrive more than once — `make` forwards the SIGTERM
  its process group received, systemd signals every process of the unit — and
  is still one ordered stop; only Ctrl-C pressed again, a moment after the
  first, kills every part at once.
- Children are in their own process group (the terminal's Ctrl-C reaches
  only the supervisor, which stops them in order) and, on Linux, get SIGTERM
  if the supervisor dies without stopping them.

Metrics: each service and the journey worker serve one Prometheus endpoint
(masar.platform.metrics; MASAR_<SECTOR>_METRICS_PORT, MASAR_JOURNEY_METRICS_PORT);
the Temporal server serves its own on MASAR_TEMPORAL_METRICS_PORT (default
9460; 0 lets the server pick one and it is not printed).

`--json` prints one JSON document describing every endpoint once the stack
is ready (human messages then go to stderr) and keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO

from masar.contract import JOURNEY_TASK_QUEUE, ServiceName
from masar.devstack.devserver import dev_server_args
from masar.devstack.plan import (
    CONSOLE,
    SERVICES,
    StackPlan,
    endpoints,
    endpoints_table,
    plan_stack,
    port_problems,
    split_address,
    url_host,
)
from masar.platform.settings import TOKEN_ISSUER_HOLDER, SettingsError

__all__ = [
    "SERVICES",
    "StackError",
    "StackPlan",
    "Supervisor",
    "endpoints",
    "guarded",
    "plan_stack",
    "port_problems",
    "run_stack",
]

# Restart backoff: doubles from the first delay up to the cap; a part that
# stayed up for RESET_AFTER seconds starts again from the first delay.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
RESET_AFTER = 60.0
# A part that exits this many times before it was ever ready fails the start.
MAX_EARLY_EXITS = 3
STOP_TIMEOUT = 15.0
TEMPORAL_STOP_TIMEOUT = 30.0
# A part that exits is restarted only if no stop is requested within this
# time: a service manager may signal the parts and the supervisor together.
STOP_SETTLE = 0.5
# A second Ctrl-C forces the stop only this long after the first (a faster
# one is the same signal delivered twice).
FORCE_AFTER = 1.0

# Run in the child between fork and exec (Linux): ask the kernel to send
# SIGTERM when the supervisor dies, so a `kill -9` of `masar up` leaves no
# orphan holding the ports or the Temporal database.
_ORPHAN_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class StackError(Exception):
    """`masar up` cannot start; the message is for the user."""


class StopRequested(Exception):
    """A signal arrived while the stack was starting."""


# --- parts and their processes ---------------------------------------------------------


ReadyCheck = Callable[["Part"], Awaitable[bool]]


@dataclass(eq=False)
class Part:
    name: str
    title: str
    command: list[str]
    log_path: Path
    ready_check: ReadyCheck
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # time.time() of the current process's start
    started_mono: float = 0.0
    restarts: int = 0
    ever_ready: bool = False
    early_exits: int = 0
    last_status: int | None = None
    stopping: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, env: Mapping[str, str]) -> bool:
        async with self.lock:
            if self.stopping:
                return False
            log = self._open_log()
            self.started_at = time.time()
            self.started_mono = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                *guarded(self.command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                process_group=0,
            )
            return True

    def _open_log(self) -> IO[bytes]:
        if self.log is None:
            self.log = open(self.log_path, "ab")  # noqa: SIM115 - kept open across restarts
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        self.log.write(f"--- masar up: starting {self.name} at {stamp} ---\n".encode())
        self.log.flush()
        return self.log

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns once it has exited."""
        async with self.lock:
            self.stopping = True
            proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, lines: int = 6) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]


def guarded(command: Sequence[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *command]


def describe_status(status: int | None) -> str:
    if status is None:
        return "an unknown status"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


# --- readiness probes -----------------------------------------------------------------


async def tcp_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_ok(host: str, port: int, path: str) -> bool:
    """Whether GET `path` on host:port answers 200 (plain HTTP/1.1) within 2 s."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    parts = status_line.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"


class Probes:
    """Readiness checks, holding the supervisor's own Temporal client and
    gRPC channels (made on first use, reused after restarts)."""

    def __init__(self, plan: StackPlan) -> None:
        self._plan = plan
        self._client: Any = None
        self._channels: dict[str, Any] = {}

    async def temporal(self, part: Part) -> bool:
        plan = self._plan
        if not await tcp_open(url_host(plan.temporal_host), plan.temporal_port):
            return False
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        try:
            if self._client is None:
                self._client = await asyncio.wait_for(
                    Client.connect(
                        plan.common.temporal.address, namespace=plan.common.temporal.namespace
                    ),
                    5,
                )
            await self._client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=plan.common.temporal.namespace),
                timeout=timedelta(seconds=2),
            )
        except Exception:
            return False
        return True

    def service(self, name: ServiceName) -> ReadyCheck:
        async def check(part: Part) -> bool:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            from masar.platform.channels import channel_credentials, client_tls, tls_options

            address = self._plan.services[name].addr
            host, port = split_address(address)
            if not await tcp_open(url_host(host), port):
                return False
            channel = self._channels.get(name)
            if channel is None:
                options = [
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ]
                tls = client_tls(self._plan.common.tls)
                if tls is None:
                    channel = grpc.aio.insecure_channel(address, options=options)
                else:  # the stack's services serve TLS (MASAR_TLS_*)
                    channel = grpc.aio.secure_channel(
                        address,
                        channel_credentials(tls),
                        options=[*options, *tls_options(tls)],
                    )
                self._channels[name] = channel
            try:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2
                )
            except grpc.aio.AioRpcError:
                return False
            return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

        return check

    async def journey_worker(self, part: Part) -> bool:
        """Ready once a poller on the journey queue showed up after this
        process started (pollers of a killed worker linger a while)."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        if self._client is None:
            return False
        try:
            response = await self._client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self._plan.common.temporal.namespace,
                    task_queue=TaskQueue(name=JOURNEY_TASK_QUEUE),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=timedelta(seconds=2),
            )
        except Exception:
            return False
        return any(
            poller.last_access_time.ToDatetime(tzinfo=UTC).timestamp() >= part.started_at - 0.05
            for poller in response.pollers
        )

    async def console(self, part: Part) -> bool:
        """Ready once GET /healthz answers 200."""
        host, port = split_address(self._plan.console.addr)
        return await http_ok(url_host(host), port, "/healthz")

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels.clear()
        self._client = None


# --- the supervisor ------------------------------------------------------------------------


class Supervisor:
    def __init__(
        self,
        plan: StackPlan,
        *,
        out: TextIO,
        ready_timeout: float = 120.0,
    ) -> None:
        self.plan = plan
        self.out = out
        self.ready_timeout = ready_timeout
        self.probes = Probes(plan)
        self.stop_requested = asyncio.Event()
        self.stopping = False
        self.temporal = Part(
            name="temporal",
            title="Temporal",
            command=dev_server_args(
                port=plan.temporal_port,
                ui_port=plan.ui_port,
                db_file=plan.temporal_db,
                ip=plan.temporal_host,
                namespace=plan.common.temporal.namespace,
                metrics_port=plan.temporal_metrics_port,
                ui_codec_endpoint="http://"
                + plan.child_env.get("MASAR_CODEC_ADDR", "127.0.0.1:8081"),
            ),
            log_path=plan.log_file("temporal"),
            ready_check=self.probes.temporal,
        )
        self.apps: list[Part] = [
            Part(
                name=name,
                title=f"{name} service",
                command=[sys.executable, "-m", f"services.{name}"],
                log_path=plan.log_file(name),
                ready_check=self.probes.service(name),
            )
            for name in plan.services
        ]
        self.apps.append(
            Part(
                name="journey",
                title="journey worker",
                command=[sys.executable, "-m", "workflows"],
                log_path=plan.log_file("journey"),
                ready_check=self.probes.journey_worker,
            )
        )
        # A client of the services: started once they are ready.
        self.console = Part(
            name=CONSOLE,
            title="web console",
            command=[sys.executable, "-m", "console"],
            log_path=plan.log_file(CONSOLE),
            ready_check=self.probes.console,
        )
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def parts(self) -> list[Part]:
        return [self.temporal, *self.apps, self.console]

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def pids(self) -> dict[str, int | None]:
        return {part.name: part.pid for part in self.parts}

    # -- start ----------------------------------------------------------------------

    async def start_all(self) -> None:
        """Start every part and wait until all are ready: StackError if one
        is not, StopRequested if a signal came first."""
        deadline = time.monotonic() + self.ready_timeout
        await self._launch(self.temporal)
        await self._wait_ready([self.temporal], deadline)
        for part in self.apps:
            await self._launch(part)
        await self._wait_ready(self.apps, deadline)
        await self._launch(self.console)
        await self._wait_ready([self.console], deadline)

    async def _launch(self, part: Part) -> None:
        try:
            await part.start(self.plan.part_env(part.name))
        except OSError as exc:
            raise StackError(f"cannot start {part.title}: {exc.strerror or exc}") from None
        self._watchers.append(asyncio.create_task(self._watch(part), name=f"watch-{part.name}"))

    async def _wait_ready(self, parts: list[Part], deadline: float) -> None:
        pending = list(parts)
        while pending:
            for part in list(pending):
                if part.early_exits >= MAX_EARLY_EXITS:
                    raise StackError(
                        self._failure(part, f"exited {part.early_exits} times before it was ready")
                    )
                if part.running and await part.ready_check(part):
                    part.ever_ready = True
                    pending.remove(part)
            if not pending:
                return
            if self.stop_requested.is_set():
                raise StopRequested
            if time.monotonic() > deadline:
                names = ", ".join(p.name for p in pending)
                raise StackError(
                    self._failure(
                        pending[0], f"not ready after {self.ready_timeout:.0f}s ({names})"
                    )
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), 0.25)

    def _failure(self, part: Part, what: str) -> str:
        tail = part.log_tail()
        lines = [f"{part.title} {what}; last lines of {part.log_path}:"]
        lines += [f"    {line}" for line in tail] or ["    (empty)"]
        return "\n".join(lines)

    # -- supervise ----------------------------------------------------------------------

    async def _watch(self, part: Part) -> None:
        """Restart `part` whenever it exits, until the stack stops."""
        backoff = FIRST_BACKOFF
        while True:
            proc = part.proc
            if proc is None:
                return
            status = await proc.wait()
            part.last_status = status
            if await self._stop_follows(part):
                return
            if not part.ever_ready:
                part.early_exits += 1
            if time.monotonic() - part.started_mono >= RESET_AFTER:
                backoff = FIRST_BACKOFF
            part.restarts += 1
            self.say(
                f"{part.title} exited ({describe_status(status)}); restarting in {backoff:.1f}s "
                f"(restart {part.restarts}; log {part.log_path})"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), max(backoff - STOP_SETTLE, 0))
            if self.stop_requested.is_set():
                return
            try:
                if not await part.start(self.plan.part_env(part.name)):
                    return
            except OSError as exc:
                self.say(f"{part.title} cannot be restarted: {exc.strerror or exc}")
                return
            backoff = min(backoff * 2, MAX_BACKOFF)
            if part.ever_ready:
                await self._announce_recovery(part)

    async def _stop_follows(self, part: Part) -> bool:
        """Whether the exit of `part` belongs to a stop (requested now or
        within STOP_SETTLE): then it is neither announced nor restarted."""
        if self.stopping or part.stopping:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), STOP_SETTLE)
        return self.stopping or part.stopping or self.stop_requested.is_set()

    async def _announce_recovery(self, part: Part) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while part.running and not self.stop_requested.is_set():
            if await part.ready_check(part):
                elapsed = time.monotonic() - part.started_mono
                self.say(f"{part.title} is back (pid {part.pid}, ready in {elapsed:.1f}s)")
                return
            if time.monotonic() > deadline:
                self.say(f"{part.title} is running but not ready; see {part.log_path}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), 0.25)

    # -- stop ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """From the first stop signal on, no part is restarted."""
        self.stopping = True
        self.stop_requested.set()

    async def stop_all(self) -> None:
        """The console, services and worker first — the network service (the
        identity provider: the others anchor their audit heads with its tokens
        as they stop) after them —, Temporal last; returns once all exited."""
        self.request_stop()
        last = [part for part in self.apps if part.name == TOKEN_ISSUER_HOLDER]
        first = [self.console, *(part for part in self.apps if part not in last)]
        await asyncio.gather(*(part.stop(STOP_TIMEOUT) for part in first))
        await asyncio.gather(*(part.stop(STOP_TIMEOUT) for part in last))
        await self.temporal.stop(TEMPORAL_STOP_TIMEOUT)
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.probes.close()
        for part in self.parts:
            part.close_log()

    def kill_all(self) -> None:
        for part in self.parts:
            part.kill_now()


def prepare_data_dir(plan: StackPlan) -> IO[str]:
    """Create the data dir, take its lock, and create the shared secrets
    before any child could race to create them. Returns the lock file."""
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    lock = open(plan.data_dir / ".masar-up.lock", "a+")  # noqa: SIM115 - held while running
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise StackError(
            f"another `masar up` (pid {holder}) is already running on {plan.data_dir}"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()

    # Every child's own keys (masar.devstack.keys), before anything starts.
    from masar.devstack.keys import prepare_keys

    prepare_keys(plan)
    # Each sending service's assertion key (keys/<service>-assertion.json,
    # 0600), made before anything starts, so that the journey worker finds
    # every public key from its first journey on.
    from masar.platform.assertions import AssertionSigner

    for service in ("intake", "shelter", "legal", "employment", "health", "psychosocial"):
        AssertionSigner.from_env(service, plan.part_env(service))
    return lock


async def run_stack(
    *,
    json_output: bool = False,
    environ: Mapping[str, str] | None = None,
    ready_timeout: float = 120.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the local stack until Ctrl-C/SIGTERM/SIGHUP; the exit status.

    Prints the endpoint table (or, with `json_output`, one JSON document on
    `out`; human messages then go to `err`). Must run in the main thread.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    human = err if json_output else out
    try:
        plan = plan_stack(environ)
    except SettingsError as exc:
        print(f"masar up: configuration error: {exc}", file=err)
        return 2
    problems = port_problems(plan)
    if problems:
        for problem in problems:
            print(f"masar up: {problem}", file=err)
        return 1
    try:
        lock = prepare_data_dir(plan)
    except (StackError, SettingsError) as exc:
        print(f"masar up: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"masar up: cannot use the data dir {plan.data_dir}: {exc.strerror}", file=err)
        return 1

    try:
        supervisor = Supervisor(plan, out=human, ready_timeout=ready_timeout)
    except FileNotFoundError as exc:  # the `temporal` binary
        lock.close()
        print(f"masar up: {exc}", file=err)
        return 1
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    stop_asked_at: list[float] = []

    def on_signal(sig: signal.Signals) -> None:
        now = time.monotonic()
        if not stop_asked_at:
            stop_asked_at.append(now)
            supervisor.say("stopping: services and worker first, Temporal last...")
            supervisor.request_stop()
        elif sig is signal.SIGINT and now - stop_asked_at[0] >= FORCE_AFTER:
            supervisor.say("Ctrl-C again: killing every part now")
            supervisor.kill_all()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    status = 0
    try:
        supervisor.say(f"starting Masar in {plan.data_dir} (logs in {plan.logs_dir})")
        try:
            await supervisor.start_all()
        except StackError as exc:
            print(f"masar up: {exc}", file=err, flush=True)
            status = 1
        except StopRequested:
            pass
        else:
            if json_output:
                print(json.dumps(endpoints(plan, supervisor.pids())), file=out, flush=True)
            else:
                supervisor.say(endpoints_table(plan))
            await supervisor.stop_requested.wait()
    finally:
        await supervisor.stop_all()
        for sig in signals:
            loop.remove_signal_handler(sig)
        lock.close()
    supervisor.say("stopped.")
    return status
