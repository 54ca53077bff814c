"""How the CLI reaches the stack: the Temporal client and the services' gRPC APIs,
with one clear line when something is not running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from masar.cli.output import CliError
from masar.contract import ServiceName, journey_workflow_id
from masar.settings import CommonSettings, Env
from masar.temporal import connect_temporal

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


@contextlib.asynccontextmanager
async def channel(
    service: ServiceName, common: CommonSettings | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    common = common or settings()
    async with grpc.aio.insecure_channel(common.service_addrs[service]) as chan:
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
        exit_code = 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
        raise CliError(
            f"{service}: {code.name.lower()}: {exc.details()}", exit_code=exit_code
        ) from None
