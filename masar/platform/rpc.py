"""gRPC server bootstrap shared by every service (grpc.aio).

Health (per-service status) and reflection are always on; one interceptor maps
`MasarError`s to status codes so that no handler does it by hand, and turns
anything unexpected into INTERNAL with a message that carries no data.

Transport: plaintext unless the settings name a server certificate
(masar.platform.settings.TlsSettings: MASAR_TLS_CERT_FILE, MASAR_TLS_KEY_FILE);
then TLS only, and with MASAR_TLS_REQUIRE_CLIENT_CERT mutual TLS (client
certificates signed by MASAR_TLS_CA_FILE).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from masar.platform.errors import InvalidArgument, MasarError
from masar.platform.settings import TlsSettings

log = logging.getLogger(__name__)

FIELD_METADATA_KEY = "masar-field"


def grpc_status(error: MasarError) -> grpc.StatusCode:
    """The one place a Masar error becomes a gRPC status."""
    return grpc.StatusCode[error.code.value]


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Maps domain errors to gRPC status codes, in one place for every service."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except MasarError as exc:
                if isinstance(exc, InvalidArgument):
                    context.set_trailing_metadata(((FIELD_METADATA_KEY, exc.field),))
                await context.abort(grpc_status(exc), exc.message)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                # The traceback goes to the log; the caller learns nothing of our data.
                log.exception("unhandled error", extra={"rpc": method})
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class GrpcService:
    """One servicer to mount: its full name (for health and reflection) and
    the generated `add_XServicer_to_server` function."""

    name: str
    servicer: Any
    register: Callable[[Any, grpc.aio.Server], None]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def start_server(
    services: Sequence[GrpcService],
    address: str,
    *,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    tls: TlsSettings | None = None,
) -> RunningServer:
    """Start a server on `address` ("host:port"; port 0 picks a free one):
    TLS when `tls` names a server certificate, plaintext otherwise."""
    server = grpc.aio.server(
        interceptors=[*interceptors, ErrorMappingInterceptor()],
        # Without this gRPC shares a port with another process silently.
        options=[("grpc.so_reuseport", 0)],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.name for s in services]
    for service in services:
        service.register(service.servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        if tls is not None and tls.server_enabled:
            port = server.add_secure_port(address, server_credentials(tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not available")
    await server.start()
    running = RunningServer(server=server, port=port, health=health_servicer, service_names=names)
    await running.set_serving(True)
    return running


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """The server's certificate and key; with `require_client_cert`, clients
    must present a certificate signed by the CA file."""
    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("a TLS server needs a certificate and its key")
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.ca_file.read_bytes()
        if tls.require_client_cert and tls.ca_file
        else None,
        require_client_auth=tls.require_client_cert,
    )


def install_shutdown_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop`, so the process drains and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
