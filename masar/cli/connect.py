"""How the CLI reaches the stack: the Temporal client and the services' gRPC APIs,
with one clear line when something is not running.

Every gRPC call carries a bearer token. With MASAR_TOKEN set, that token (the
user's own identity, from `masar token issue` or an identity provider) is used
for every command. Otherwise the CLI acts on the local stack as the role the
command stands for — an intake officer for `case open`, a coordinator of each
region for `seed`, the staff of the referral's own provider for `referral
...` — with short-lived tokens it signs with the local issuer key
(MASAR_TOKEN_SIGNING_KEY, else $MASAR_DATA_DIR/token-issuer.json, the file
`masar up` creates)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from masar.cli.output import CliError
from masar.contract import ServiceName, journey_workflow_id
from masar.platform.identity import (
    MintedToken,
    Role,
    TokenIssuer,
    TokenSource,
    bearer_interceptors,
    token_from_env,
)
from masar.platform.settings import CommonSettings, Env
from masar.platform.temporal import connect_temporal

T = TypeVar("T")


def settings() -> CommonSettings:
    return CommonSettings.from_env(Env())


async def temporal(common: CommonSettings | None = None) -> Client:
    common = common or settings()
    try:
        return await connect_temporal(common.temporal)
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


def token_source(identity: Identity) -> TokenSource:
    """MASAR_TOKEN if set; else short-lived tokens for `identity`, signed
    with the local issuer key."""
    given = token_from_env()
    if given is not None:
        return given
    return MintedToken(
        TokenIssuer.from_env(),
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
    common = common or settings()
    interceptors = bearer_interceptors(token_source(identity))
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
