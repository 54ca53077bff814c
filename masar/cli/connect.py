"""How the CLI reaches the stack: the Temporal client and the services' gRPC APIs,
with one clear line when something is not running.

Every gRPC call carries a bearer token. With MASAR_TOKEN set, that token (the
user's own identity, from `masar token issue` or an identity provider) is used
for every command. Otherwise the CLI acts on the local stack as the role the
command stands for — an intake officer for `case open`, a coordinator of each
region for `seed`, the staff of the referral's own provider for `referral
...` — with short-lived tokens it signs with the local issuer key
(MASAR_TOKEN_SIGNING_KEY, else $MASAR_DATA_DIR/token-issuer.json, the file
`masar up` creates). The CLI never creates a key: a data dir that holds no
running stack's keys is one line saying so (`NoLocalStack`).

A command's settings are read from the environment once, by `masar.cli.main`
(`configured`); `settings()` returns them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from masar.cli.output import CliError
from masar.contract import ServiceName, journey_workflow_id
from masar.platform.channels import MintedToken, StaticToken, TokenSource, bearer_interceptors
from masar.platform.crypto import Keyring
from masar.platform.identity import ISSUER_FILE, Role, TokenIssuer
from masar.platform.settings import CliSettings, CommonSettings, SettingsError
from masar.platform.temporal import connect_temporal

T = TypeVar("T")

# The local stack's payload key ring, next to its issuer file (masar.platform.crypto).
KEYRING_FILE = "keyring.json"

_configured: CliSettings | None = None


@contextlib.contextmanager
def configured(cli: CliSettings) -> Iterator[CliSettings]:
    """Run one command with `cli` as its settings."""
    global _configured
    previous, _configured = _configured, cli
    try:
        yield cli
    finally:
        _configured = previous


def settings() -> CliSettings:
    """This command's settings (read here when a command runs outside `main`)."""
    return _configured if _configured is not None else CliSettings.from_env()


class NoLocalStack(CliError):
    """The data dir holds no running stack's keys, and the CLI creates none."""

    def __init__(self, data_dir: Path, missing: str, alternative: str) -> None:
        super().__init__(
            f"no local stack found in {data_dir.resolve()} (it has no {missing}): "
            "point MASAR_DATA_DIR at the data directory of a running `masar up`, "
            f"or set {alternative}"
        )


def _read_key_file(path: Path, alternative: str) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise NoLocalStack(path.parent, path.name, alternative) from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def local_issuer(cli: CliSettings, *, alternative: str = "MASAR_TOKEN") -> TokenIssuer:
    """The issuer key of the stack the CLI acts on: MASAR_TOKEN_SIGNING_KEY,
    else the local stack's issuer file, which must exist (without it, the
    error names `alternative`, the variable that would do instead)."""
    if cli.token_signing_key:
        return TokenIssuer.from_b64(cli.token_signing_key)
    if cli.token_public_key_set:
        raise CliError(
            "MASAR_TOKEN_PUBLIC_KEY is set but MASAR_TOKEN_SIGNING_KEY is not: "
            "set MASAR_TOKEN to your own token (`masar token issue` where the key is)"
        )
    path = cli.common.data_dir / ISSUER_FILE
    text = _read_key_file(path, alternative)
    try:
        return TokenIssuer.from_b64(json.loads(text)["private_key"], source=str(path))
    except (KeyError, ValueError, TypeError):
        raise SettingsError(f"{path} is not a valid token issuer file") from None


def local_keyring(cli: CliSettings) -> Keyring:
    """The payload key ring: MASAR_KEYRING / MASAR_KEY_FILE, else the local
    stack's key ring file, which must exist."""
    if cli.keyring_configured:
        return Keyring.from_env()
    path = cli.common.data_dir / KEYRING_FILE
    return Keyring.from_json(_read_key_file(path, "MASAR_KEY_FILE"), source=str(path))


async def temporal(common: CommonSettings | None = None) -> Client:
    cli = settings()
    common = common or cli.common
    keyring = local_keyring(cli)
    try:
        return await connect_temporal(common.temporal, keyring=keyring)
    except Exception:
        raise CliError(
            f"cannot reach Temporal at {common.temporal.address}: is the stack running? "
            "(start it with `masar up`)"
        ) from None


async def journey(case_id: str, client: Client | None = None) -> WorkflowHandle[Any, Any]:
    client = client or await temporal()
    return client.get_workflow_handle(journey_workflow_id(case_id))


def check_case_id(case_id: str) -> str:
    if not case_id or not all(c.isalnum() or c in "-_" for c in case_id) or len(case_id) > 64:
        raise CliError("CASE_ID is malformed", exit_code=2)
    return case_id


async def temporal_call(case_id: str, call: Awaitable[T]) -> T:
    """Await a call on a journey, turning Temporal's errors into one line."""
    try:
        return await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"unknown case {case_id}") from None
        if exc.status == RPCStatusCode.UNAVAILABLE:
            raise CliError("Temporal is unavailable: is the stack running?") from None
        raise CliError(
            f"Temporal refused the request ({exc.status.name if exc.status else 'error'})"
        ) from None


CLI_TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class Identity:
    """Who a command acts as on the local stack (without MASAR_TOKEN)."""

    role: Role
    org: str = ""
    region: str = ""


INTAKE_OFFICER = Identity(Role.INTAKE_OFFICER)


def token_source(identity: Identity, cli: CliSettings | None = None) -> TokenSource:
    """MASAR_TOKEN if set; else short-lived tokens for `identity`, signed
    with the local issuer key."""
    cli = cli or settings()
    if cli.token is not None:
        return StaticToken(cli.token)
    return MintedToken(
        local_issuer(cli),
        role=identity.role,
        subject=f"cli-{identity.role.value.replace(':', '-')}",
        org=identity.org,
        region=identity.region,
        ttl=CLI_TOKEN_TTL,
    )


@contextlib.asynccontextmanager
async def channel(
    service: ServiceName, identity: Identity, common: CommonSettings | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to `service` whose calls carry `identity`'s token."""
    cli = settings()
    common = common or cli.common
    interceptors = bearer_interceptors(token_source(identity, cli))
    async with grpc.aio.insecure_channel(
        common.service_addrs[service], interceptors=interceptors
    ) as chan:
        yield chan


async def rpc(service: ServiceName, call: Callable[[], Awaitable[T]]) -> T:
    """Run one RPC; map its status to a one-line error naming what went wrong."""
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise CliError(
                f"the {service} service is not reachable: is the stack running? (`masar up`)"
            ) from None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise CliError(
                f"{service}: {code.name.lower()}: {exc.details()} "
                "(MASAR_TOKEN, if set, must be a valid token of a role allowed to do this)"
            ) from None
        exit_code = 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
        raise CliError(
            f"{service}: {code.name.lower()}: {exc.details()}", exit_code=exit_code
        ) from None
