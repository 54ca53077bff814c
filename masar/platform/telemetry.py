"""OpenTelemetry, set up in one place and used by every process.

Traces: the Temporal tracing interceptor (on every client, see masar.platform.temporal),
gRPC client and server instrumentation, and SQLAlchemy instrumentation give one
trace per request: CLI -> intake RPC -> journey -> activity -> sector RPC -> SQL.
They are exported with OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; otherwise nothing leaves the
process. The standard OTEL_* variables apply as the OpenTelemetry SDK defines
them: OTEL_EXPORTER_OTLP_PROTOCOL (grpc, or http/protobuf on port 4318),
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, OTEL_RESOURCE_ATTRIBUTES,
OTEL_SERVICE_NAME (default `masar-<process>`), OTEL_BSP_*, and the
exporters' headers, compression and timeout (masar.platform.settings.TelemetrySettings).

Metrics: Temporal SDK metrics and per-RPC metrics, exposed for Prometheus on
the process's metrics port when one is given — one endpoint per process,
`http://127.0.0.1:<metrics_port>/metrics` (see masar.platform.metrics).

Span attributes carry ids and codes only, never personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from masar.platform.metrics import MetricsEndpoint, start_metrics_endpoint
from masar.platform.settings import Env, TelemetrySettings

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

    # The instrumentation packages are untyped.
    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    SQLAlchemyInstrumentor().instrument(enable_commenter=False)
    _instrumented = True


def process_resource(process_name: str) -> Resource:
    """The SDK's resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME and the
    SDK's own attributes), named `masar-<process>` unless a name is given."""
    resource = Resource.create()
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"masar-{process_name}"}))
    return resource


def build_tracer_provider(process_name: str) -> TracerProvider:
    """A tracer provider as the SDK configures one from the environment: its
    sampler from OTEL_TRACES_SAMPLER[_ARG], its resource from
    `process_resource`."""
    return TracerProvider(
        sampler=sampling._get_from_env_or_default(),
        resource=process_resource(process_name),
    )


def span_exporters(settings: TelemetrySettings) -> list[SpanExporter]:
    """The exporters the settings ask for; each reads its own OTEL_EXPORTER_OTLP_*
    variables (endpoint, headers, compression, timeout)."""
    exporters: list[SpanExporter] = []
    if settings.otlp:
        if settings.otlp_protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            exporters.append(HttpSpanExporter())
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            exporters.append(GrpcSpanExporter())
    if settings.console:
        exporters.append(ConsoleSpanExporter())
    return exporters


def setup_telemetry(
    process_name: str,
    *,
    metrics_port: int | None = None,
    exporters: Sequence[SpanExporter] = (),
    settings: TelemetrySettings | None = None,
) -> Telemetry:
    """Install the global tracer provider for this process, and with a
    `metrics_port` its Prometheus endpoint (RPC and Temporal SDK metrics,
    see masar.platform.metrics). Call it before the first Temporal client, gRPC
    server or channel, and database engine: they are instrumented when made.

    `settings` are the process's (`CommonSettings.telemetry`; read from the
    environment when not given). `exporters` lets tests capture spans in
    memory. A second call in the same process (tests) adds its exporters to
    the provider already installed, since OpenTelemetry allows one global
    provider per process.
    """
    current = trace.get_tracer_provider()
    owns = not isinstance(current, TracerProvider)
    provider = current if isinstance(current, TracerProvider) else None
    all_exporters: list[SpanExporter] = list(exporters)
    if provider is None:
        provider = build_tracer_provider(process_name)
        all_exporters += span_exporters(settings or TelemetrySettings.from_env(Env()))
    processors: list[SpanProcessor] = []
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
