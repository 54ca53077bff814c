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
    "health": 50056,
    "psychosocial": 50057,
}
# Prometheus scrape ports, one per process.
DEFAULT_METRICS_PORTS: dict[str, int] = {
    "intake": 9461,
    "shelter": 9462,
    "legal": 9463,
    "employment": 9464,
    "journey": 9465,
    "network": 9466,
    "health": 9467,
    "psychosocial": 9468,
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


def _existing_file(env: Env, name: str) -> Path | None:
    """A file named by `name`, which must exist (its content is read later)."""
    value = env.optional(name)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise SettingsError(f"{name} does not name a readable file")
    return path


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """Transport security of the services' gRPC servers and of the clients
    that call them. Off unless configured (the local stack stays on loopback
    without TLS).

    - MASAR_TLS_CERT_FILE, MASAR_TLS_KEY_FILE: the server's certificate chain
      and private key (PEM); with them the service serves TLS only;
    - MASAR_TLS_CA_FILE: the CA bundle clients verify servers against (else
      the system's roots), and servers verify client certificates against;
    - MASAR_TLS_CLIENT_CERT_FILE, MASAR_TLS_CLIENT_KEY_FILE: the certificate a
      client presents (mutual TLS between services);
    - MASAR_TLS_REQUIRE_CLIENT_CERT=true: the server refuses a client without
      a certificate signed by MASAR_TLS_CA_FILE;
    - MASAR_TLS (true/false): clients use TLS; on by default as soon as a CA
      or a server certificate is configured;
    - MASAR_TLS_SERVER_NAME: the name clients expect in servers' certificates
      (when the address is not that name)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    require_client_cert: bool = False
    client_enabled: bool = False
    server_name: str | None = None

    @property
    def server_enabled(self) -> bool:
        return self.cert_file is not None

    @classmethod
    def from_env(cls, env: Env) -> TlsSettings:
        cert = _existing_file(env, "MASAR_TLS_CERT_FILE")
        key = _existing_file(env, "MASAR_TLS_KEY_FILE")
        if (cert is None) != (key is None):
            raise SettingsError("MASAR_TLS_CERT_FILE and MASAR_TLS_KEY_FILE go together")
        client_cert = _existing_file(env, "MASAR_TLS_CLIENT_CERT_FILE")
        client_key = _existing_file(env, "MASAR_TLS_CLIENT_KEY_FILE")
        if (client_cert is None) != (client_key is None):
            raise SettingsError(
                "MASAR_TLS_CLIENT_CERT_FILE and MASAR_TLS_CLIENT_KEY_FILE go together"
            )
        ca = _existing_file(env, "MASAR_TLS_CA_FILE")
        require = env.boolean("MASAR_TLS_REQUIRE_CLIENT_CERT", False)
        if require and (ca is None or cert is None):
            raise SettingsError(
                "MASAR_TLS_REQUIRE_CLIENT_CERT needs MASAR_TLS_CERT_FILE and MASAR_TLS_CA_FILE"
            )
        enabled = env.boolean("MASAR_TLS", ca is not None or cert is not None)
        if client_cert is not None and not enabled:
            raise SettingsError("MASAR_TLS_CLIENT_CERT_FILE needs MASAR_TLS=true")
        return cls(
            cert_file=cert,
            key_file=key,
            ca_file=ca,
            client_cert_file=client_cert,
            client_key_file=client_key,
            require_client_cert=require,
            client_enabled=enabled,
            server_name=env.optional("MASAR_TLS_SERVER_NAME"),
        )


@dataclass(frozen=True, kw_only=True)
class TemporalSettings:
    """Where Temporal is and how to reach it. In production the frontend is
    reached over TLS, with a client certificate (mTLS) or an API key:

    - MASAR_TEMPORAL_TLS (true/false; on by default when any of the below is set);
    - MASAR_TEMPORAL_TLS_CA_FILE: the CA that signed the frontend's certificate
      (else the system's roots);
    - MASAR_TEMPORAL_TLS_CERT_FILE, MASAR_TEMPORAL_TLS_KEY_FILE: the client
      certificate and key (mTLS, e.g. Temporal Cloud's namespace certificates);
    - MASAR_TEMPORAL_TLS_SERVER_NAME: the name expected in its certificate;
    - MASAR_TEMPORAL_API_KEY: an API key instead of a client certificate.

    The payload codec's key ring (the processes that exchange payloads with
    journeys: intake, the sectors' activity workers, the journey worker, the
    codec server): MASAR_PAYLOAD_KEYRING ("kid:BASE64KEY,...") or
    MASAR_PAYLOAD_KEY_FILE; without either, the process's own key ring
    (masar.platform.crypto)."""

    address: str
    namespace: str
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    payload_keyring: str | None = field(default=None, repr=False)
    payload_key_file: Path | None = None

    @classmethod
    def from_env(cls, env: Env) -> TemporalSettings:
        ca = _existing_file(env, "MASAR_TEMPORAL_TLS_CA_FILE")
        cert = _existing_file(env, "MASAR_TEMPORAL_TLS_CERT_FILE")
        key = _existing_file(env, "MASAR_TEMPORAL_TLS_KEY_FILE")
        if (cert is None) != (key is None):
            raise SettingsError(
                "MASAR_TEMPORAL_TLS_CERT_FILE and MASAR_TEMPORAL_TLS_KEY_FILE go together"
            )
        api_key = env.optional("MASAR_TEMPORAL_API_KEY")
        server_name = env.optional("MASAR_TEMPORAL_TLS_SERVER_NAME")
        configured = any(v is not None for v in (ca, cert, api_key, server_name))
        tls = env.boolean("MASAR_TEMPORAL_TLS", configured)
        if configured and not tls:
            raise SettingsError(
                "MASAR_TEMPORAL_TLS=false, but a Temporal certificate or API key is set"
            )
        return cls(
            address=env.address("MASAR_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=env.text("MASAR_TEMPORAL_NAMESPACE", "default"),
            tls=tls,
            tls_ca_file=ca,
            tls_cert_file=cert,
            tls_key_file=key,
            tls_server_name=server_name,
            api_key=api_key,
            payload_keyring=env.optional("MASAR_PAYLOAD_KEYRING"),
            payload_key_file=_existing_file(env, "MASAR_PAYLOAD_KEY_FILE"),
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
    tls: TlsSettings = field(default_factory=TlsSettings)

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
            tls=TlsSettings.from_env(env),
        )


# --- key material ------------------------------------------------------------------------

KEYS_DIR = "keys"
PUBLIC_KEYS_DIR = "public"
CLIENT_KEYS_DIR = "clients"
# The local stack's key files, under $MASAR_DATA_DIR/keys/<holder>/ (private,
# 0600 in 0700 directories) and $MASAR_DATA_DIR/keys/public/ (public keys).
DATA_KEYRING_FILE = "data-keyring.json"
PAYLOAD_KEYRING_FILE = "payload-keyring.json"
TOKEN_ISSUER_FILE = "token-issuer.json"
CONSENT_KEY_FILE = "consent-signing.json"
CONSENT_PUBLIC_FILE = "consent.json"
CLIENT_KEY_FILE = "client.json"
# Who holds what: the token issuer's key only the network service (the
# identity provider); the consent key only intake; the payload codec key
# only the processes that exchange payloads with journeys (the services'
# activity workers — the network's notifications too —, the journey worker,
# the codec server).
TOKEN_ISSUER_HOLDER = "network"
CONSENT_SIGNER = "intake"
PAYLOAD_HOLDERS = frozenset(
    {
        "intake",
        "shelter",
        "legal",
        "employment",
        "network",
        "health",
        "psychosocial",
        "journey",
        "codec",
    }
)
# The local stack's own client: `masar token issue` and the CLI's
# development shortcut ask the network service for tokens with its key.
BOOTSTRAP_CLIENT = "cli"


def keys_root(data_dir: Path) -> Path:
    return data_dir / KEYS_DIR


def own_keys_dir(data_dir: Path, holder: str) -> Path:
    """$MASAR_DATA_DIR/keys/<holder>: one process's private key files."""
    return keys_root(data_dir) / holder


def public_keys_dir(data_dir: Path) -> Path:
    return keys_root(data_dir) / PUBLIC_KEYS_DIR


@dataclass(frozen=True, kw_only=True)
class KeySettings:
    """The key material of one process (`holder`: a service, "journey",
    "cli", "codec"), and nothing else: every private key it may use is its
    own, named by its own variables or found under its own directory
    $MASAR_DATA_DIR/keys/<holder>/; what it shares with others are public
    keys ($MASAR_DATA_DIR/keys/public/, or the *_PUBLIC_KEY variables).

    - data key ring (its own encrypted columns and audit head):
      MASAR_KEYRING or MASAR_KEY_FILE, else keys/<holder>/data-keyring.json;
    - token issuer (the network service only): MASAR_TOKEN_SIGNING_KEY, else
      keys/network/token-issuer.json; every process verifies tokens with
      MASAR_TOKEN_PUBLIC_KEY, else keys/public/token-issuer.json;
    - consent proofs (intake only signs): MASAR_CONSENT_SIGNING_KEY, else
      keys/intake/consent-signing.json; sectors verify with
      MASAR_CONSENT_PUBLIC_KEY, else keys/public/consent.json;
    - client key (a service asks the network service for its service
      identity's tokens with it): MASAR_CLIENT_KEY, else keys/<holder>/client.json;
      MASAR_SERVICE_TOKEN replaces it with a token given from outside;
    - the network service trusts the clients named in MASAR_NETWORK_CLIENT_KEYS
      ("name:BASE64PUBLICKEY,..."), else the files in keys/public/clients/.

    A process given MASAR_TOKEN_SIGNING_KEY is an issuer: the network
    service in production; tests and benchmarks that run every service in
    one process with one key (it then also mints its own service tokens and
    signs and verifies consent proofs with it). Never give it to another
    service."""

    holder: str
    data_dir: Path
    data_keyring: str | None = field(default=None, repr=False)
    data_key_file: Path | None = None
    token_signing_key: str | None = field(default=None, repr=False)
    token_public_keys: str | None = None
    consent_signing_key: str | None = field(default=None, repr=False)
    consent_public_keys: str | None = None
    client_key: str | None = field(default=None, repr=False)
    service_token: str | None = field(default=None, repr=False)
    trusted_clients: str | None = None

    @classmethod
    def from_env(cls, holder: str, env: Env, data_dir: Path) -> KeySettings:
        key_file = env.optional("MASAR_KEY_FILE")
        return cls(
            holder=holder,
            data_dir=data_dir,
            data_keyring=env.optional("MASAR_KEYRING"),
            data_key_file=Path(key_file).expanduser() if key_file else None,
            token_signing_key=env.optional("MASAR_TOKEN_SIGNING_KEY"),
            token_public_keys=env.optional("MASAR_TOKEN_PUBLIC_KEY"),
            consent_signing_key=(
                env.optional("MASAR_CONSENT_SIGNING_KEY") if holder == CONSENT_SIGNER else None
            ),
            consent_public_keys=env.optional("MASAR_CONSENT_PUBLIC_KEY"),
            client_key=env.optional("MASAR_CLIENT_KEY"),
            service_token=env.optional("MASAR_SERVICE_TOKEN"),
            trusted_clients=(
                env.optional("MASAR_NETWORK_CLIENT_KEYS") if holder == TOKEN_ISSUER_HOLDER else None
            ),
        )

    # --- where the local stack keeps them ---------------------------------------------

    @property
    def own_dir(self) -> Path:
        return own_keys_dir(self.data_dir, self.holder)

    @property
    def public_dir(self) -> Path:
        return public_keys_dir(self.data_dir)

    @property
    def data_keyring_path(self) -> Path:
        return self.data_key_file or self.own_dir / DATA_KEYRING_FILE

    @property
    def payload_keyring_path(self) -> Path:
        return self.own_dir / PAYLOAD_KEYRING_FILE

    @property
    def token_issuer_path(self) -> Path | None:
        """The issuer's private key file: the network service's only."""
        if self.holder != TOKEN_ISSUER_HOLDER:
            return None
        return self.own_dir / TOKEN_ISSUER_FILE

    @property
    def token_public_path(self) -> Path:
        return self.public_dir / TOKEN_ISSUER_FILE

    @property
    def consent_signing_path(self) -> Path | None:
        if self.holder != CONSENT_SIGNER:
            return None
        return self.own_dir / CONSENT_KEY_FILE

    @property
    def consent_public_path(self) -> Path:
        return self.public_dir / CONSENT_PUBLIC_FILE

    @property
    def client_key_path(self) -> Path:
        return self.own_dir / CLIENT_KEY_FILE

    @property
    def trusted_clients_dir(self) -> Path:
        return self.public_dir / CLIENT_KEYS_DIR


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
    # Its own key material only (KeySettings).
    keys: KeySettings | None = None
    # How often it asks the network service for revoked tokens
    # (MASAR_REVOCATION_POLL_SECONDS, 1 to 60).
    revocation_poll_seconds: float = 20.0

    @property
    def key_settings(self) -> KeySettings:
        return self.keys or KeySettings(holder=self.name, data_dir=self.common.data_dir)

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
            keys=KeySettings.from_env(name, env, common.data_dir),
            revocation_poll_seconds=float(
                env.integer("MASAR_REVOCATION_POLL_SECONDS", 20, minimum=1, maximum=60)
            ),
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
    acts as (MASAR_TOKEN, else the signed-in person, else on the local stack
    tokens the network service issues to the stack's bootstrap client)."""

    common: CommonSettings
    token: str | None
    token_signing_key: str | None
    token_public_key_set: bool
    keyring_configured: bool
    user: str
    # Where `masar login` keeps the signed-in session: $XDG_CONFIG_HOME/masar,
    # else ~/.config/masar.
    config_dir: Path = Path("~/.config/masar")
    # The CLI's own key material: its client key (the local stack's
    # bootstrap client) and the public keys; never a service's.
    keys: KeySettings | None = None

    @property
    def key_settings(self) -> KeySettings:
        return self.keys or KeySettings(holder=BOOTSTRAP_CLIENT, data_dir=self.common.data_dir)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CliSettings:
        env = Env(environ)
        common = CommonSettings.from_env(env)
        return cls(
            common=common,
            token=env.optional("MASAR_TOKEN"),
            token_signing_key=env.optional("MASAR_TOKEN_SIGNING_KEY"),
            token_public_key_set=env.optional("MASAR_TOKEN_PUBLIC_KEY") is not None,
            keyring_configured=bool(
                env.optional("MASAR_KEYRING") or env.optional("MASAR_KEY_FILE")
            ),
            user=env.text("MASAR_USER", "coordinator-cli"),
            config_dir=user_config_dir(env) / "masar",
            keys=KeySettings.from_env(BOOTSTRAP_CLIENT, env, common.data_dir),
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


# --- the web console ----------------------------------------------------------------------

DEFAULT_CONSOLE_ADDR = "127.0.0.1:8080"


@dataclass(frozen=True, kw_only=True)
class ConsoleSettings:
    """The web console (`python -m console`): where it listens, how long an
    idle session lives, and whether its cookies need TLS. It is a client of
    the services: it holds no key of theirs, only the signed-in people's
    tokens, in memory."""

    common: CommonSettings
    addr: str = DEFAULT_CONSOLE_ADDR
    # Shared computers are common in associations: sign out after this much idleness.
    idle_seconds: int = 15 * 60
    # `Secure` cookies: on when the console is served over TLS (a proxy in front).
    secure_cookies: bool = False
    # The address people open (links in e-mails use MASAR_CONSOLE_URL too).
    public_url: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleSettings:
        env = Env(environ)
        addr = env.address("MASAR_CONSOLE_ADDR", DEFAULT_CONSOLE_ADDR)
        return cls(
            common=CommonSettings.from_env(env),
            addr=addr,
            idle_seconds=env.integer(
                "MASAR_CONSOLE_IDLE_SECONDS", 15 * 60, minimum=1, maximum=24 * 3600
            ),
            secure_cookies=env.boolean("MASAR_CONSOLE_SECURE_COOKIES", False),
            public_url=env.text("MASAR_CONSOLE_URL", f"http://{addr}"),
        )
