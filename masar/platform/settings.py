"""Typed settings, read from the environment once per process.

This module is the only one that reads the process environment: an entry
point builds its settings object here once (`ServiceSettings`,
`WorkerSettings`, `CliSettings`) and hands it down. Every name matches
DESIGN.md and the deploy manifests. A missing or malformed value raises
`SettingsError` naming the variable; entry points turn it into a one-line
message and exit status 2.

The standard `OTEL_*` variables are left to the OpenTelemetry SDK, which reads
them itself (sampler, resource, exporter endpoint, headers, timeouts);
`TelemetrySettings` only decides which exporter the SDK builds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from masar.contract import SECTOR_TASK_QUEUES, ServiceName

# Every service's gRPC port (DESIGN.md); `masar up` starts each of them.
DEFAULT_PORTS: dict[ServiceName, int] = {
    "intake": 50051,
    "shelter": 50052,
    "legal": 50053,
    "employment": 50054,
    "network": 50055,
}
# Prometheus scrape ports, one per process.
DEFAULT_METRICS_PORTS: dict[str, int] = {
    "intake": 9461,
    "shelter": 9462,
    "legal": 9463,
    "employment": 9464,
    "journey": 9465,
    "network": 9466,
}


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def process_environ() -> Mapping[str, str]:
    """The process environment: read here and nowhere else. Code that needs
    raw variables (children's environments, key files) receives this mapping
    or a settings object from its entry point."""
    return os.environ


class Env:
    """Typed access to an environment mapping; every error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = process_environ() if environ is None else environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            if default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        return value.strip()

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value and value.strip() else None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        raw = self._environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got a malformed value") from None
        if not minimum <= value <= maximum:
            raise SettingsError(f"{name} must be between {minimum} and {maximum}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false")

    def address(self, name: str, default: str) -> str:
        value = self.text(name, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{name} must be host:port, got a malformed value")
        return value


@dataclass(frozen=True, kw_only=True)
class TemporalSettings:
    address: str
    namespace: str

    @classmethod
    def from_env(cls, env: Env) -> TemporalSettings:
        return cls(
            address=env.address("MASAR_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=env.text("MASAR_TEMPORAL_NAMESPACE", "default"),
        )


OtlpProtocol = Literal["grpc", "http/protobuf"]
OTLP_PROTOCOLS: tuple[OtlpProtocol, ...] = ("grpc", "http/protobuf")
TRACES_EXPORTERS = ("otlp", "console", "none")


@dataclass(frozen=True, kw_only=True)
class TelemetrySettings:
    """Which span exporters the OpenTelemetry SDK builds, from the standard
    variables: OTEL_TRACES_EXPORTER (default otlp; console; none),
    OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL (grpc, the Python SDK's default, or
    http/protobuf). OTLP export happens only when an endpoint is set
    (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT): without one nothing leaves the
    process. The exporters read the endpoint, headers, compression and
    timeout themselves; the tracer provider reads OTEL_TRACES_SAMPLER[_ARG];
    the resource reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME."""

    exporters: tuple[str, ...] = ("otlp",)
    otlp_protocol: OtlpProtocol = "grpc"
    otlp_endpoint_set: bool = False

    @property
    def otlp(self) -> bool:
        return "otlp" in self.exporters and self.otlp_endpoint_set

    @property
    def console(self) -> bool:
        return "console" in self.exporters

    @classmethod
    def from_env(cls, env: Env) -> TelemetrySettings:
        names = tuple(
            n.strip().lower() for n in env.text("OTEL_TRACES_EXPORTER", "otlp").split(",")
        )
        unknown = [n for n in names if n not in TRACES_EXPORTERS]
        if unknown:
            raise SettingsError(
                "OTEL_TRACES_EXPORTER must be a comma list of " + ", ".join(TRACES_EXPORTERS)
            )
        protocol_var = (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
            if env.optional("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            else "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        protocol = env.text(protocol_var, "grpc")
        if protocol not in OTLP_PROTOCOLS:
            raise SettingsError(f"{protocol_var} must be grpc or http/protobuf")
        endpoint = env.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.optional(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return cls(
            exporters=() if "none" in names else names,
            otlp_protocol=protocol,
            otlp_endpoint_set=endpoint is not None,
        )


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    data_dir: Path
    temporal: TemporalSettings
    service_addrs: dict[ServiceName, str]
    log_level: str
    log_format: Literal["json", "text"]
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)

    @classmethod
    def from_env(cls, env: Env) -> CommonSettings:
        data_dir = Path(env.text("MASAR_DATA_DIR", "./var")).expanduser()
        log_format = env.text("MASAR_LOG_FORMAT", "json")
        if log_format not in ("json", "text"):
            raise SettingsError("MASAR_LOG_FORMAT must be json or text")
        return cls(
            data_dir=data_dir,
            temporal=TemporalSettings.from_env(env),
            service_addrs={
                name: env.address(f"MASAR_{name.upper()}_ADDR", f"127.0.0.1:{port}")
                for name, port in DEFAULT_PORTS.items()
            },
            log_level=env.text("MASAR_LOG_LEVEL", "INFO").upper(),
            log_format=log_format,  # type: ignore[arg-type]
            telemetry=TelemetrySettings.from_env(env),
        )


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """How the network service tells people (issue 13): MASAR_SMTP_URL
    (smtp://host:port or smtps://user:pass@host:port; unset: e-mails are
    written as .eml files under $MASAR_DATA_DIR/mail/), MASAR_SMTP_FROM and
    MASAR_CONSOLE_URL (the base of the case links in notifications)."""

    smtp_url: str | None = None
    smtp_from: str = "Masar <masar@localhost>"
    console_url: str = "http://127.0.0.1:8080"

    @classmethod
    def from_env(cls, env: Env) -> NotifySettings:
        smtp_url = env.optional("MASAR_SMTP_URL")
        if smtp_url is not None:
            scheme, sep, rest = smtp_url.partition("://")
            host = rest.rpartition("@")[2].split("/")[0]
            if scheme not in ("smtp", "smtps") or not sep or not host:
                # Never echoed: the URL may hold a password.
                raise SettingsError(
                    "MASAR_SMTP_URL must be smtp://host:port or smtps://user:pass@host:port"
                )
        console_url = env.text("MASAR_CONSOLE_URL", cls.console_url)
        if not console_url.startswith(("http://", "https://")):
            raise SettingsError("MASAR_CONSOLE_URL must be an http:// or https:// URL")
        return cls(
            smtp_url=smtp_url,
            smtp_from=env.text("MASAR_SMTP_FROM", cls.smtp_from),
            console_url=console_url.rstrip("/"),
        )


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """Settings of one sector service process."""

    name: ServiceName
    common: CommonSettings
    addr: str
    database_url: str
    task_queue: str
    metrics_port: int
    # Read by the network service only.
    notify: NotifySettings = field(default_factory=NotifySettings)

    @classmethod
    def from_env(
        cls, name: ServiceName, environ: Mapping[str, str] | None = None
    ) -> ServiceSettings:
        env = Env(environ)
        common = CommonSettings.from_env(env)
        url = env.optional(f"MASAR_{name.upper()}_DATABASE_URL")
        if url is None:
            url = f"sqlite:///{(common.data_dir / f'{name}.db').resolve()}"
        elif not url.startswith(("sqlite:", "postgresql")):
            raise SettingsError(
                f"MASAR_{name.upper()}_DATABASE_URL must be a sqlite:/// "
                "or postgresql+psycopg:// URL"
            )
        return cls(
            name=name,
            common=common,
            addr=common.service_addrs[name],
            database_url=url,
            task_queue=SECTOR_TASK_QUEUES[name],
            metrics_port=env.integer(
                f"MASAR_{name.upper()}_METRICS_PORT", DEFAULT_METRICS_PORTS[name], maximum=65535
            ),
            notify=NotifySettings.from_env(env) if name == "network" else NotifySettings(),
        )


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Settings of the journey worker process."""

    common: CommonSettings
    policy_file: Path | None
    metrics_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = Env(environ)
        policy = env.optional("MASAR_POLICY_FILE")
        policy_file = Path(policy).expanduser() if policy else None
        if policy_file is not None and not policy_file.is_file():
            raise SettingsError("MASAR_POLICY_FILE does not name a readable file")
        return cls(
            common=CommonSettings.from_env(env),
            policy_file=policy_file,
            metrics_port=env.integer(
                "MASAR_JOURNEY_METRICS_PORT", DEFAULT_METRICS_PORTS["journey"], maximum=65535
            ),
        )


@dataclass(frozen=True, kw_only=True)
class CliSettings:
    """Settings of one `masar` command: where the stack is, and who the CLI
    acts as (MASAR_TOKEN, else tokens signed with the local issuer key)."""

    common: CommonSettings
    token: str | None
    token_signing_key: str | None
    token_public_key_set: bool
    keyring_configured: bool
    user: str
    # Where `masar login` keeps the signed-in session: $XDG_CONFIG_HOME/masar,
    # else ~/.config/masar.
    config_dir: Path = Path("~/.config/masar")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CliSettings:
        env = Env(environ)
        return cls(
            common=CommonSettings.from_env(env),
            token=env.optional("MASAR_TOKEN"),
            token_signing_key=env.optional("MASAR_TOKEN_SIGNING_KEY"),
            token_public_key_set=env.optional("MASAR_TOKEN_PUBLIC_KEY") is not None,
            keyring_configured=bool(
                env.optional("MASAR_KEYRING") or env.optional("MASAR_KEY_FILE")
            ),
            user=env.text("MASAR_USER", "coordinator-cli"),
            config_dir=user_config_dir(env) / "masar",
        )


def user_config_dir(env: Env) -> Path:
    """The XDG base directory for user configuration: $XDG_CONFIG_HOME when it
    is an absolute path (the specification ignores a relative one), else
    $HOME/.config."""
    xdg = env.optional("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    home = env.optional("HOME")
    return (Path(home) if home else Path("~").expanduser()) / ".config"
