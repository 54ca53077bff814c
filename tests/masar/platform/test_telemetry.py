"""Traces and metrics, checked against real servers.

One trace must cover workflow -> activity -> gRPC server -> SQL, and no span
may carry what a survivor said; the metrics endpoint must show per-RPC
counts, latencies and codes, and the Temporal SDK's own metrics.
"""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from masar.platform.db import Database
from masar.platform.errors import NotFound
from masar.platform.metrics import (
    RpcMetrics,
    RpcMetricsInterceptor,
    TemporalMetricsCollector,
    start_metrics_endpoint,
    temporal_metrics_runtime,
)
from masar.platform.rpc import GrpcService, start_server
from masar.platform.settings import Env, SettingsError, TelemetrySettings, TemporalSettings
from masar.platform.telemetry import (
    Telemetry,
    build_tracer_provider,
    setup_telemetry,
    span_exporters,
)
from masar.platform.temporal import client_options, connect_temporal
from tests.conftest import DevServer, free_port
from tests.masar.platform.trace_workflow import LOOKUP_ACTIVITY, ProbeRequest, TraceProbeWorkflow

PROBE_SERVICE = "masar.test.TraceProbe"
LOOKUP_METHOD = f"/{PROBE_SERVICE}/Lookup"
# PII-like markers: they travel in the workflow input, the activity input,
# the RPC request and a SQL bind parameter, and must appear in no span.
ALIAS = f"Khadija-{secrets.token_hex(4)}-PIIMARK"
CONTACT = f"+2126{secrets.randbelow(10**8):08d}PIIMARK"

Handler = Callable[[Struct, grpc.aio.ServicerContext], Awaitable[Struct]]


def probe_service(lookup: Handler) -> GrpcService:
    def register(_servicer: Any, server: grpc.aio.Server) -> None:
        method = grpc.unary_unary_rpc_method_handler(
            lookup,
            request_deserializer=Struct.FromString,
            response_serializer=Struct.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROBE_SERVICE, {"Lookup": method}),)
        )

    return GrpcService(name=PROBE_SERVICE, servicer=None, register=register)


def lookup_with_sql(database: Database) -> Handler:
    async def lookup(request: Struct, context: grpc.aio.ServicerContext) -> Struct:
        case_id = request["case_id"]
        alias = request["alias"]

        def query(session: Session) -> int:
            statement = text("SELECT length(:alias) + length(:case_id)")
            return int(
                session.execute(statement, {"alias": alias, "case_id": case_id}).scalar_one()
            )

        length = await database.run(query)
        response = Struct()
        response.update({"case_id": case_id, "length": length})
        return response

    return lookup


class ProbeActivities:
    """Calls the probe's gRPC API, as a sector activity calls its sector."""

    def __init__(self, lookup: grpc.aio.UnaryUnaryMultiCallable) -> None:
        self._lookup = lookup

    @activity.defn(name=LOOKUP_ACTIVITY)
    async def lookup(self, request: ProbeRequest) -> str:
        message = Struct()
        message.update(
            {"case_id": request.case_id, "alias": request.alias, "contact": request.contact}
        )
        response = await self._lookup(message, timeout=10)
        return str(response["case_id"])


@pytest.fixture
def captured_spans() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("trace-test", exporters=[exporter])
    yield telemetry, exporter
    # Only this test's processor: the process keeps its one tracer provider.
    for processor in telemetry.processors:
        processor.shutdown()


def texts_of(span: ReadableSpan) -> list[str]:
    """Everything a span exports as text: name, attributes, events, status."""
    found = [span.name, span.status.description or ""]
    found += [str(v) for v in (span.attributes or {}).values()]
    for event in span.events:
        found.append(event.name)
        found += [str(v) for v in (event.attributes or {}).values()]
    for link in span.links:
        found += [str(v) for v in (link.attributes or {}).values()]
    return found


async def test_one_trace_spans_workflow_activity_grpc_and_sql(
    temporal_dev_server: DevServer,
    tmp_path: Path,
    captured_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, exporter = captured_spans
    # Made after setup_telemetry: engines, servers and channels are
    # instrumented when they are created.
    database = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    server = await start_server([probe_service(lookup_with_sql(database))], "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    client = await connect_temporal(
        TemporalSettings(address=temporal_dev_server.address, namespace="default")
    )
    case_id = f"case-{secrets.token_hex(6)}"
    task_queue = f"trace-{secrets.token_hex(4)}"
    activities = ProbeActivities(
        channel.unary_unary(
            LOOKUP_METHOD,
            request_serializer=Struct.SerializeToString,
            response_deserializer=Struct.FromString,
        )
    )
    try:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[TraceProbeWorkflow],
            activities=[activities.lookup],
        ):
            result = await client.execute_workflow(
                TraceProbeWorkflow.run,
                ProbeRequest(case_id=case_id, alias=ALIAS, contact=CONTACT),
                id=f"trace-{case_id}",
                task_queue=task_queue,
            )
    finally:
        await channel.close()
        await server.stop(grace=1)
        database.dispose()
    assert result == case_id
    assert telemetry.force_flush()

    spans = [s for s in exporter.get_finished_spans() if s.context is not None]
    workflow_span = next(s for s in spans if s.name == "RunWorkflow:TraceProbe")
    trace_id = workflow_span.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in ours}
    assert "StartWorkflow:TraceProbe" in names
    assert f"RunActivity:{LOOKUP_ACTIVITY}" in names
    assert any(s.name == LOOKUP_METHOD and s.kind == SpanKind.SERVER for s in ours), names
    assert any(s.name == LOOKUP_METHOD and s.kind == SpanKind.CLIENT for s in ours), names
    sql = [
        s
        for s in ours
        if (s.attributes or {}).get("db.system") == "sqlite"
        and "length(" in str((s.attributes or {}).get("db.statement", ""))
    ]
    assert sql, f"no SQL span in the trace: {sorted(names)}"

    # Ids travel; personal data never does.
    assert any(case_id in t for s in ours for t in texts_of(s))
    for span in spans:
        for value in texts_of(span):
            assert "PIIMARK" not in value, f"span {span.name!r} carries personal data"


async def lookup_for_metrics(request: Struct, context: grpc.aio.ServicerContext) -> Struct:
    case_id = request["case_id"]
    if case_id == "missing":
        raise NotFound("case not found")
    if case_id == "broken":
        raise RuntimeError("handler bug")
    response = Struct()
    response.update({"case_id": case_id})
    return response


async def test_rpc_metrics_count_time_and_code_every_call() -> None:
    registry = CollectorRegistry()
    server = await start_server(
        [probe_service(lookup_for_metrics)],
        "127.0.0.1:0",
        interceptors=[RpcMetricsInterceptor(RpcMetrics(registry))],
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            lookup = channel.unary_unary(
                LOOKUP_METHOD,
                request_serializer=Struct.SerializeToString,
                response_deserializer=Struct.FromString,
            )
            for case_id, expected in [
                ("c1", grpc.StatusCode.OK),
                ("c2", grpc.StatusCode.OK),
                ("missing", grpc.StatusCode.NOT_FOUND),
                ("broken", grpc.StatusCode.INTERNAL),
            ]:
                request = Struct()
                request.update({"case_id": case_id, "alias": ALIAS})
                try:
                    await lookup(request, timeout=5)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                assert code == expected
    finally:
        await server.stop(grace=1)

    def sample(name: str, code: str) -> float | None:
        labels = {"service": PROBE_SERVICE, "method": "Lookup", "code": code}
        return registry.get_sample_value(name, labels)

    assert sample("masar_rpc_server_handled_total", "OK") == 2
    assert sample("masar_rpc_server_handled_total", "NOT_FOUND") == 1
    assert sample("masar_rpc_server_handled_total", "INTERNAL") == 1
    assert sample("masar_rpc_server_handling_seconds_count", "OK") == 2
    assert (sample("masar_rpc_server_handling_seconds_sum", "OK") or 0) > 0
    for family in registry.collect():
        for s in family.samples:
            assert set(s.labels) <= {"service", "method", "code", "le"}
            assert not any("PIIMARK" in v or v == "c1" for v in s.labels.values())


async def test_temporal_sdk_metrics_share_the_process_endpoint(
    temporal_dev_server: DevServer,
) -> None:
    registry = CollectorRegistry()
    endpoint = start_metrics_endpoint(free_port(), registry=registry, temporal_runtime=False)
    # The same wiring start_metrics_endpoint does for a process, on a
    # runtime of our own (the test process's default runtime is shared).
    runtime, buffer = temporal_metrics_runtime()
    collector = TemporalMetricsCollector(buffer)
    registry.register(collector)
    RpcMetrics(registry)
    try:
        client = await Client.connect(
            temporal_dev_server.address, runtime=runtime, **client_options()
        )
        # Nobody polls this queue: the start is all we need to see counted.
        handle = await client.start_workflow(
            "NobodyRunsThis",
            id=f"metrics-{secrets.token_hex(6)}",
            task_queue=f"metrics-{secrets.token_hex(4)}",
        )
        await handle.terminate()
        body = await asyncio.to_thread(_scrape, endpoint.url)
    finally:
        endpoint.close()
        registry.unregister(collector)
    assert "temporal_request_total{" in body
    assert 'operation="StartWorkflowExecution"' in body
    assert "temporal_request_latency_seconds_bucket{" in body
    assert "# TYPE masar_rpc_server_handled_total counter" in body


# --- the standard OTEL_* variables ------------------------------------------------------

OTEL_VARIABLES = (
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sampler_and_resource_come_from_the_standard_variables(
    otel_env: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    default = build_tracer_provider("shelter")
    assert isinstance(default.sampler, ParentBased)  # the SDK's default
    assert default.resource.attributes["service.name"] == "masar-shelter"

    otel_env.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    otel_env.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    otel_env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.namespace=masar"
    )
    provider = build_tracer_provider("shelter")
    assert isinstance(provider.sampler, TraceIdRatioBased) and provider.sampler.rate == 0.25
    attrs = provider.resource.attributes
    assert attrs["deployment.environment"] == "staging"
    assert attrs["service.namespace"] == "masar"
    assert attrs["service.name"] == "masar-shelter"
    assert attrs["telemetry.sdk.name"] == "opentelemetry"

    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert build_tracer_provider("shelter").resource.attributes["service.name"] == (
        "from-attributes"
    )
    otel_env.setenv("OTEL_SERVICE_NAME", "shelter-fes")
    assert build_tracer_provider("shelter").resource.attributes["service.name"] == "shelter-fes"

    otel_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    span = build_tracer_provider("shelter").get_tracer("t").start_span("nothing")
    assert not span.is_recording()


def _exporters(otel_env: pytest.MonkeyPatch, **variables: str) -> list[Any]:
    for name in OTEL_VARIABLES:
        otel_env.delenv(name, raising=False)
    for name, value in variables.items():
        otel_env.setenv(name, value)
    return span_exporters(TelemetrySettings.from_env(Env()))


def test_the_exporter_follows_the_otlp_protocol(otel_env: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    # Without an endpoint nothing leaves the process.
    assert _exporters(otel_env) == []
    assert _exporters(otel_env, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf") == []

    http = _exporters(
        otel_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
    )
    assert [type(e) for e in http] == [HttpExporter]
    assert http[0]._endpoint == "http://127.0.0.1:4318/v1/traces"

    grpc_default = _exporters(otel_env, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317")
    assert [type(e) for e in grpc_default] == [GrpcExporter]
    traces_only = _exporters(
        otel_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4318/v1/traces",
    )
    assert [type(e) for e in traces_only] == [HttpExporter]
    assert traces_only[0]._endpoint == "http://collector:4318/v1/traces"

    assert (
        _exporters(
            otel_env, OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4317"
        )
        == []
    )
    console = _exporters(otel_env, OTEL_TRACES_EXPORTER="console")
    assert [type(e) for e in console] == [ConsoleSpanExporter]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
    ],
)
def test_an_unsupported_otel_value_names_the_variable(
    otel_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    otel_env.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        TelemetrySettings.from_env(Env())


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
