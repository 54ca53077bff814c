"""OpenTelemetry, set up in one place and used by every process.

Traces: the Temporal tracing interceptor (on every client, see masar.temporal),
gRPC client and server instrumentation, and SQLAlchemy instrumentation give one
trace per request: CLI -> intake RPC -> journey -> activity -> sector RPC -> SQL.
They are exported with OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the
standard OTEL_* variables apply); otherwise nothing leaves the process.

Metrics: Temporal SDK metrics and per-RPC metrics, exposed for Prometheus on
the process's metrics port when one is given.

Span attributes carry ids and codes only, never personal data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanProcessor

_instrumented = False


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    metrics_port: int | None = None
    processors: list[SpanProcessor] = field(default_factory=list)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()


def instrument_libraries() -> None:
    """gRPC (aio client and server) and SQLAlchemy instrumentation, once."""
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    SQLAlchemyInstrumentor().instrument(enable_commenter=False)
    _instrumented = True


def setup_telemetry(
    process_name: str,
    *,
    metrics_port: int | None = None,
    exporters: Sequence[SpanExporter] = (),
) -> Telemetry:
    """Install the global tracer provider for this process.

    `exporters` lets tests capture spans in memory; in production the OTLP
    exporter is added when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    """
    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", f"masar-{process_name}")}
    )
    provider = TracerProvider(resource=resource)
    processors: list[SpanProcessor] = []
    all_exporters: list[SpanExporter] = list(exporters)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        all_exporters.append(OTLPSpanExporter())
    for exporter in all_exporters:
        processor = BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
        processors.append(processor)
    trace.set_tracer_provider(provider)
    instrument_libraries()
    if metrics_port:
        _start_metrics(metrics_port)
    return Telemetry(tracer_provider=provider, metrics_port=metrics_port, processors=processors)


def _start_metrics(port: int) -> Any:
    from prometheus_client import start_http_server

    return start_http_server(port, addr="127.0.0.1")
