"""The kernel's gRPC bootstrap, through a real server on a free port."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from masar.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from masar.platform.rpc import FIELD_METADATA_KEY, GrpcService, start_server

SERVICE = "masar.test.Probe"


class Probe:
    """A servicer whose handlers raise domain errors like real ones do."""

    async def invalid(self, request: bytes, context: Any) -> bytes:
        raise InvalidArgument("survivor.birth_year", "must be between 1900 and this year")

    async def missing(self, request: bytes, context: Any) -> bytes:
        raise NotFound("case not found")

    async def wrong_state(self, request: bytes, context: Any) -> bytes:
        raise FailedPrecondition("referral is not pending")

    async def crash(self, request: bytes, context: Any) -> bytes:
        raise RuntimeError("secret detail that must not leak")

    async def echo(self, request: bytes, context: Any) -> bytes:
        return request


def register(servicer: Probe, server: grpc.aio.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
        for name in ("invalid", "missing", "wrong_state", "crash", "echo")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def server():
    running = await start_server([GrpcService(SERVICE, Probe(), register)], "127.0.0.1:0")
    yield running
    await running.stop(0)


async def test_health_reports_serving_for_the_service(server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="masar.v1.Unknown"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service(server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = []
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = [s.name for s in reply.list_services_response.service]
        assert SERVICE in names
        assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "survivor.birth_year: must be between"),
        ("missing", grpc.StatusCode.NOT_FOUND, "case not found"),
        ("wrong_state", grpc.StatusCode.FAILED_PRECONDITION, "referral is not pending"),
        ("crash", grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
async def test_domain_errors_reach_the_client_mapped(server, method, code, message) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"x")
    assert err.value.code() == code
    assert err.value.details().startswith(message)
    assert "secret detail" not in (err.value.details() or "")
    if method == "invalid":
        trailing = dict(err.value.trailing_metadata() or ())
        assert trailing[FIELD_METADATA_KEY] == "survivor.birth_year"


async def test_success_passes_through(server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        assert await channel.unary_unary(f"/{SERVICE}/echo")(b"ping") == b"ping"


async def test_port_in_use_is_a_clear_error(server) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        await start_server([], f"127.0.0.1:{server.port}")
