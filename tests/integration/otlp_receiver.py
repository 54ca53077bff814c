"""Real OTLP trace receivers for tests, as a collector would run them: OTLP/HTTP
(`POST /v1/traces`, a protobuf `ExportTraceServiceRequest`) and OTLP/gRPC
(`TraceService/Export`), on free local ports. They keep every span they
receive with its resource's attributes."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    span: Span
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def trace_id(self) -> bytes:
        return bytes(self.span.trace_id)

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    def texts(self) -> list[str]:
        """Everything the span exports as text: name, attributes, events, status."""
        found = [self.name, self.span.status.message]
        found += [str(v) for v in self.attributes.values()]
        for event in self.span.events:
            found.append(event.name)
            found += [str(v) for v in attributes(event.attributes).values()]
        return found


class Received:
    """The spans received so far (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        found = [
            ReceivedSpan(span=span, resource=attributes(rs.resource.attributes))
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._lock:
            self.requests += 1
            self._spans += found

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class HttpReceiver(Received):
    """OTLP/HTTP with protobuf bodies (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`)."""

    def __init__(self) -> None:
        super().__init__()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.add))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(
    add: Callable[[trace_service_pb2.ExportTraceServiceRequest], None],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or "0"))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or "protobuf" not in (
                self.headers.get("Content-Type") or ""
            ):
                self.send_response(HTTPStatus.NOT_FOUND)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


class GrpcReceiver(Received):
    """OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the SDK's default)."""

    def __init__(self) -> None:
        super().__init__()
        received = self

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(
                self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
            ) -> trace_service_pb2.ExportTraceServiceResponse:
                received.add(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self._server)
        self._port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def close(self) -> None:
        self._server.stop(grace=1).wait()
