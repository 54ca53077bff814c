"""What `masar up` runs where: every process's settings, read from the
environment as the children will read them, the ports they take and the
endpoints it prints once the stack is ready.

Each child's environment names its own key material only (`part_env`): its
data key ring, its copy of the payload key ring if it exchanges payloads
with journeys, the network service alone the token-signing key, intake alone
the consent key; everyone the public keys. The files are under
$MASAR_DATA_DIR/keys/<part>/ (masar.platform.settings.KeySettings), made by
`masar up` before anything starts (masar.devstack.keys).

The web console (`python -m console`, MASAR_CONSOLE_ADDR) is a client of
the services, like the CLI: it gets the shared environment only, never a
private key — it acts with the signed-in people's own tokens."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masar.contract import JOURNEY_TASK_QUEUE, ServiceName
from masar.platform.settings import (
    CONSENT_SIGNER,
    DATA_KEYRING_FILE,
    DEFAULT_PORTS,
    PAYLOAD_HOLDERS,
    PAYLOAD_KEYRING_FILE,
    TOKEN_ISSUER_HOLDER,
    CommonSettings,
    ConsoleSettings,
    Env,
    KeySettings,
    ServiceSettings,
    SettingsError,
    WorkerSettings,
    own_keys_dir,
    process_environ,
)

SERVICES: tuple[ServiceName, ...] = tuple(DEFAULT_PORTS)
DEFAULT_TEMPORAL_METRICS_PORT = 9460
UI_PORT_OFFSET = 1000
JOURNEY = "journey"
CONSOLE = "console"

# Key material a child gets only when it is its own (given to `masar up`, or
# made by it): never passed to every child.
PRIVATE_KEY_VARIABLES = (
    "MASAR_TOKEN_SIGNING_KEY",
    "MASAR_CONSENT_SIGNING_KEY",
    "MASAR_CLIENT_KEY",
    "MASAR_SERVICE_TOKEN",
    "MASAR_PAYLOAD_KEYRING",
    "MASAR_PAYLOAD_KEY_FILE",
    "MASAR_NETWORK_CLIENT_KEYS",
    "MASAR_TOKEN",
)
# A shared data key ring given to `masar up` (MASAR_KEYRING / MASAR_KEY_FILE)
# is passed on as it is: every service then encrypts with it (as before the
# keys were separated); without one each service has its own.
DATA_KEY_VARIABLES = ("MASAR_KEYRING", "MASAR_KEY_FILE")


@dataclass(frozen=True, kw_only=True)
class Listen:
    host: str
    port: int
    what: str
    variable: str


@dataclass(frozen=True, kw_only=True)
class StackPlan:
    data_dir: Path
    common: CommonSettings
    temporal_host: str
    temporal_port: int
    ui_port: int
    temporal_metrics_port: int | None
    services: dict[ServiceName, ServiceSettings]
    worker: WorkerSettings
    console: ConsoleSettings
    # What every child shares: no private key material.
    child_env: dict[str, str]
    # The private key variables `masar up` was given (routed to their holder).
    given_keys: dict[str, str] = field(default_factory=dict)

    def keys_of(self, part: str) -> KeySettings:
        """The key settings of a child, as it will read them."""
        return KeySettings.from_env(part, Env(self.part_env(part)), self.data_dir)

    def part_env(self, part: str) -> dict[str, str]:
        """The environment of one child: the shared one, plus its own keys."""
        env = dict(self.child_env)
        if part == CONSOLE:
            # A client: not even a shared data key ring (it reads no database).
            return {k: v for k, v in env.items() if k not in DATA_KEY_VARIABLES}
        if part == "temporal":
            return env
        given = self.given_keys
        own = own_keys_dir(self.data_dir, part)
        if part in SERVICES and not any(env.get(v) for v in DATA_KEY_VARIABLES):
            env["MASAR_KEY_FILE"] = str(own / DATA_KEYRING_FILE)
        if part in PAYLOAD_HOLDERS:
            if given.get("MASAR_PAYLOAD_KEYRING"):
                env["MASAR_PAYLOAD_KEYRING"] = given["MASAR_PAYLOAD_KEYRING"]
            elif given.get("MASAR_PAYLOAD_KEY_FILE"):
                env["MASAR_PAYLOAD_KEY_FILE"] = given["MASAR_PAYLOAD_KEY_FILE"]
            else:
                env["MASAR_PAYLOAD_KEY_FILE"] = str(own / PAYLOAD_KEYRING_FILE)
        if part == TOKEN_ISSUER_HOLDER:
            for name in ("MASAR_TOKEN_SIGNING_KEY", "MASAR_NETWORK_CLIENT_KEYS"):
                if given.get(name):
                    env[name] = given[name]
        if part == CONSENT_SIGNER and given.get("MASAR_CONSENT_SIGNING_KEY"):
            env["MASAR_CONSENT_SIGNING_KEY"] = given["MASAR_CONSENT_SIGNING_KEY"]
        return env

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def temporal_db(self) -> Path:
        return self.data_dir / "temporal.db"

    def log_file(self, part: str) -> Path:
        return self.logs_dir / f"{part}.log"

    @property
    def console_url(self) -> str:
        """Where the console answers on this machine (its listen address;
        a wildcard host is reached on the loopback)."""
        return local_url(self.console.addr)

    def listens(self) -> list[Listen]:
        t = self.temporal_host
        found = [
            Listen(
                host=t, port=self.temporal_port, what="Temporal", variable="MASAR_TEMPORAL_ADDRESS"
            ),
            Listen(
                host=t,
                port=self.ui_port,
                what="Temporal web UI (Temporal port + 1000)",
                variable="MASAR_TEMPORAL_ADDRESS",
            ),
        ]
        if self.temporal_metrics_port:
            found.append(
                Listen(
                    host=t,
                    port=self.temporal_metrics_port,
                    what="Temporal metrics",
                    variable="MASAR_TEMPORAL_METRICS_PORT",
                )
            )
        for name, service in self.services.items():
            host, port = split_address(service.addr)
            found.append(
                Listen(
                    host=host, port=port, what=f"{name} gRPC", variable=f"MASAR_{name.upper()}_ADDR"
                )
            )
            found.append(
                Listen(
                    host="127.0.0.1",
                    port=service.metrics_port,
                    what=f"{name} metrics",
                    variable=f"MASAR_{name.upper()}_METRICS_PORT",
                )
            )
        found.append(
            Listen(
                host="127.0.0.1",
                port=self.worker.metrics_port,
                what="journey worker metrics",
                variable="MASAR_JOURNEY_METRICS_PORT",
            )
        )
        host, port = split_address(self.console.addr)
        found.append(Listen(host=host, port=port, what="console", variable="MASAR_CONSOLE_ADDR"))
        return found


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def url_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def local_url(address: str) -> str:
    """http://host:port for a listen address (IPv6 hosts in brackets)."""
    host, port = split_address(address)
    host = url_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def project_root() -> Path:
    """The directory holding the `masar`, `services` and `workflows` packages."""
    return Path(__file__).resolve().parents[2]


def plan_stack(environ: Mapping[str, str] | None = None) -> StackPlan:
    """Read every process's settings from the environment, as the children
    will. Raises SettingsError naming the variable."""
    source = dict(process_environ() if environ is None else environ)
    env = Env(source)
    data_dir = Path(env.text("MASAR_DATA_DIR", "./var")).expanduser().resolve()
    source["MASAR_DATA_DIR"] = str(data_dir)
    common = CommonSettings.from_env(Env(source))
    services = {name: ServiceSettings.from_env(name, source) for name in SERVICES}
    worker = WorkerSettings.from_env(source)
    console = ConsoleSettings.from_env(source)
    temporal_host, temporal_port = split_address(common.temporal.address)
    ui_port = temporal_port + UI_PORT_OFFSET
    if ui_port > 65535:
        raise SettingsError(
            "MASAR_TEMPORAL_ADDRESS: the port must be at most 64535 (the web UI uses port + 1000)"
        )
    metrics_port = env.integer(
        "MASAR_TEMPORAL_METRICS_PORT", DEFAULT_TEMPORAL_METRICS_PORT, maximum=65535
    )

    given_keys = {k: source[k] for k in PRIVATE_KEY_VARIABLES if source.get(k, "").strip()}
    child_env = {k: v for k, v in source.items() if k not in PRIVATE_KEY_VARIABLES}
    child_env.update(
        {
            "MASAR_DATA_DIR": str(data_dir),
            "MASAR_TEMPORAL_ADDRESS": common.temporal.address,
            "MASAR_TEMPORAL_NAMESPACE": common.temporal.namespace,
            "MASAR_JOURNEY_METRICS_PORT": str(worker.metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name, service in services.items():
        child_env[f"MASAR_{name.upper()}_ADDR"] = service.addr
        child_env[f"MASAR_{name.upper()}_METRICS_PORT"] = str(service.metrics_port)
    child_env["MASAR_CONSOLE_ADDR"] = console.addr
    # Links in notifications lead to this stack's console unless told otherwise.
    if not child_env.get("MASAR_CONSOLE_URL", "").strip():
        child_env["MASAR_CONSOLE_URL"] = local_url(console.addr)
    if worker.policy_file is not None:
        child_env["MASAR_POLICY_FILE"] = str(worker.policy_file.resolve())
    root = project_root()
    if (root / "services").is_dir():
        # Children find the project's packages wherever `masar up` is run from.
        path = child_env.get("PYTHONPATH", "")
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), path) if p)
    return StackPlan(
        data_dir=data_dir,
        common=common,
        temporal_host=temporal_host,
        temporal_port=temporal_port,
        ui_port=ui_port,
        temporal_metrics_port=metrics_port or None,
        services=services,
        worker=worker,
        console=console,
        child_env=child_env,
        given_keys=given_keys,
    )


def port_problems(plan: StackPlan) -> list[str]:
    """One line per port that is taken (or configured twice)."""
    problems: list[str] = []
    seen: dict[int, Listen] = {}
    for listen in plan.listens():
        other = seen.get(listen.port)
        if other is not None:
            problems.append(
                f"port {listen.port} is configured for both {other.what} ({other.variable}) "
                f"and {listen.what} ({listen.variable})"
            )
            continue
        seen[listen.port] = listen
        reason = _bind_problem(listen.host, listen.port)
        if reason is not None:
            problems.append(
                f"port {listen.port} ({listen.what}) {reason}: stop what uses it "
                f"or choose another with {listen.variable}"
            )
    return problems


def _bind_problem(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"cannot be bound: unknown host {host!r}"
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As servers do: a port left in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use"
            return f"cannot be bound ({exc.strerror})"
    return None


def endpoints(plan: StackPlan, pids: Mapping[str, int | None] | None = None) -> dict[str, Any]:
    """The JSON document `masar up --json` prints once the stack is ready."""
    pids = pids or {}
    host = url_host(plan.temporal_host)
    temporal_metrics = (
        f"http://{host}:{plan.temporal_metrics_port}/metrics"
        if plan.temporal_metrics_port
        else None
    )
    return {
        "status": "ready",
        "data_dir": str(plan.data_dir),
        "logs_dir": str(plan.logs_dir),
        "temporal": {
            "address": plan.common.temporal.address,
            "namespace": plan.common.temporal.namespace,
            "ui_url": f"http://{host}:{plan.ui_port}",
            "metrics_url": temporal_metrics,
            "db_file": str(plan.temporal_db),
            "log_file": str(plan.log_file("temporal")),
            "pid": pids.get("temporal"),
        },
        "services": {
            name: {
                "address": service.addr,
                "task_queue": service.task_queue,
                "metrics_url": f"http://127.0.0.1:{service.metrics_port}/metrics",
                "database": _safe_url(service.database_url),
                "log_file": str(plan.log_file(name)),
                "pid": pids.get(name),
            }
            for name, service in plan.services.items()
        },
        "journey_worker": {
            "task_queue": JOURNEY_TASK_QUEUE,
            "metrics_url": f"http://127.0.0.1:{plan.worker.metrics_port}/metrics",
            "log_file": str(plan.log_file("journey")),
            "pid": pids.get("journey"),
        },
        "console": {
            "url": plan.console_url,
            "address": plan.console.addr,
            "log_file": str(plan.log_file(CONSOLE)),
            "pid": pids.get(CONSOLE),
        },
        "mail": _mail(plan),
        "supervisor_pid": os.getpid(),
    }


def _mail(plan: StackPlan) -> dict[str, Any]:
    """Where the network service's e-mails go: SMTP (never echoed: the URL may
    hold a password) or, without MASAR_SMTP_URL, .eml files a newcomer can read."""
    network = plan.services.get("network")
    if network is not None and network.notify.smtp_url:
        return {"smtp": True, "eml_dir": None}
    return {"smtp": False, "eml_dir": str(plan.data_dir / "mail")}


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable database URL)"


def endpoints_table(plan: StackPlan) -> str:
    doc = endpoints(plan)
    temporal = doc["temporal"]
    rows: list[tuple[str, str, str, str]] = [
        ("part", "listens on", "metrics", "log"),
        (
            "temporal",
            f"{temporal['address']} (namespace {temporal['namespace']})",
            temporal["metrics_url"] or "-",
            temporal["log_file"],
        ),
        ("temporal UI", temporal["ui_url"], "", ""),
    ]
    for name, service in doc["services"].items():
        rows.append(
            (name, f"{service['address']} (gRPC)", service["metrics_url"], service["log_file"])
        )
    worker = doc["journey_worker"]
    rows.append(
        ("journey", f"task queue {worker['task_queue']}", worker["metrics_url"], worker["log_file"])
    )
    console = doc["console"]
    rows.append((CONSOLE, f"{console['url']} (web)", "", console["log_file"]))
    w0, w1, w2 = (max(len(row[i]) for row in rows) for i in range(3))
    lines = [f"  {a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}".rstrip() for a, b, c, d in rows]
    lines.insert(1, f"  {'-' * w0}  {'-' * w1}  {'-' * w2}  ---")
    return "\n".join(
        [
            f"Masar is up. Data: {plan.data_dir} (Temporal: {plan.temporal_db.name})",
            "",
            *lines,
            "",
            (
                "E-mails: sent through MASAR_SMTP_URL."
                if doc["mail"]["smtp"]
                else f"E-mails: no MASAR_SMTP_URL, so they are written to {doc['mail']['eml_dir']}/"
                " (one .eml file each)."
            ),
            f"The web console: open {doc['console']['url']} and sign in.",
            "Ctrl-C stops everything (console, services and worker first, Temporal last).",
        ]
    )
