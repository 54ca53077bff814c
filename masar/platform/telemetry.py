"""OpenTelemetry, set up in one place and used by every process.

Traces: the Temporal tracing interceptor (on every client, see masar.platform.temporal),
gRPC client and server instrumentation, and SQLAlchemy instrumentation give one
trace per request: CLI -> intake RPC -> journey -> activity -> sector RPC -> SQL.
They are exported with OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the
standard OTEL_* variables apply); otherwise nothing leaves the process.

Metrics: Temporal SDK metrics and per-RPC metrics, exposed for Prometheus on
the process's metrics port when one is given — one endpoint per process,
`http://127.0.0.1:<metrics_port>/metrics` (see masar.platform.metrics).

Span attributes carry ids and codes only, never personal data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanProcessor

from masar.platform.metrics import MetricsEndpoint, start_metrics_endpoint

log = logging.getLogger(__name__)

_instrumented = False


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    metrics_port: int | None = None
    processors: list[SpanProcessor] = field(default_factory=list)
    metrics: MetricsEndpoint | None = None
    # False when an earlier setup_telemetry in this process installed the
    # provider (tests): then only this call's processors are ours to stop.
    owns_provider: bool = True

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        if self.owns_provider:
            return self.tracer_provider.force_flush(timeout_millis)
        # Another setup owns the provider (and perhaps processors already shut
        # down): flush only what this setup added.
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def shutdown(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.owns_provider:
            self.tracer_provider.shutdown()
        else:
            for processor in self.processors:
                processor.shutdown()


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
    """Install the global tracer provider for this process, and with a
    `metrics_port` its Prometheus endpoint (RPC and Temporal SDK metrics,
    see masar.platform.metrics). Call it before the first Temporal client, gRPC
    server or channel, and database engine: they are instrumented when made.

    `exporters` lets tests capture spans in memory; in production the OTLP
    exporter is added when OTEL_EXPORTER_OTLP_ENDPOINT is set. A second call
    in the same process (tests) adds its exporters to the provider already
    installed, since OpenTelemetry allows one global provider per process.
    """
    current = trace.get_tracer_provider()
    owns = not isinstance(current, TracerProvider)
    if isinstance(current, TracerProvider):
        provider = current
    else:
        resource = Resource.create(
            {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", f"masar-{process_name}")}
        )
        provider = TracerProvider(resource=resource)
    processors: list[SpanProcessor] = []
    all_exporters: list[SpanExporter] = list(exporters)
    if owns and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        all_exporters.append(OTLPSpanExporter())
    for exporter in all_exporters:
        processor = BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
        processors.append(processor)
    if owns:
        trace.set_tracer_provider(provider)
    instrument_libraries()
    metrics = _start_metrics(metrics_port) if metrics_port else None
    return Telemetry(
        tracer_provider=provider,
        metrics_port=metrics_port if metrics is not None else None,
        processors=processors,
        metrics=metrics,
        owns_provider=owns,
    )


def _start_metrics(port: int) -> MetricsEndpoint | None:
    try:
        return start_metrics_endpoint(port)
    except OSError as exc:
        # A busy metrics port must not take the service down with it.
        log.error(
            "metrics endpoint not started", extra={"metrics_port": port, "error": exc.strerror}
        )
        return None
