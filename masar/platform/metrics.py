"""Prometheus metrics: one scrape endpoint per process.

Every Masar process (each sector service, the journey worker) serves
`http://127.0.0.1:<metrics_port>/metrics` (ServiceSettings.metrics_port,
WorkerSettings.metrics_port; `masar up` prints them). That one endpoint holds:

- `masar_rpc_server_handled_total{service,method,code}` and
  `masar_rpc_server_handling_seconds{service,method,code}` (histogram): every
  unary RPC the process serves, from `RpcMetricsInterceptor`;
- `temporal_*`: the Temporal SDK's own metrics (client requests, worker
  polls, task latencies, slots...). The SDK's Runtime can bind a Prometheus
  port of its own; instead it records into a `MetricBuffer` that
  `TemporalMetricsCollector` drains and republishes here, so a process never
  needs two ports. Counters get the `_total` suffix and durations (seconds)
  the `_seconds` suffix;
- `process_*` / `python_*` from prometheus_client.

Labels are names and codes (gRPC service and method, status code, task queue,
workflow and activity type) — never ids, never anything a survivor said.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import Metric
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

log = logging.getLogger(__name__)

# Seconds; covers a cache hit up to a slow long poll.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


# --- per-RPC metrics ---------------------------------------------------------------


class RpcMetrics:
    """Server-side RPC counters and latencies on one registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        labels = ("service", "method", "code")
        self.handled = Counter(
            "masar_rpc_server_handled",
            "RPCs completed by the server, by gRPC service, method and status code.",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "masar_rpc_server_handling_seconds",
            "Time the server took to handle an RPC, by gRPC service, method and status code.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, service: str, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.handled.labels(service, method, code.name).inc()
        self.latency.labels(service, method, code.name).observe(seconds)


_default_rpc_metrics: RpcMetrics | None = None
_default_lock = threading.Lock()


def default_rpc_metrics() -> RpcMetrics:
    """The process's RPC metrics, on the default registry (created once)."""
    global _default_rpc_metrics
    with _default_lock:
        if _default_rpc_metrics is None:
            _default_rpc_metrics = RpcMetrics()
        return _default_rpc_metrics


def split_method(full_method: str) -> tuple[str, str]:
    """`/masar.v1.ShelterService/Decide` -> (`masar.v1.ShelterService`, `Decide`)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return (service or "unknown", method or "unknown")


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Counts and times every unary RPC with its final status code.

    Placed before masar.platform.rpc's error mapping, it sees the code that
    mapping chose (a `MasarError` becomes its code, anything else INTERNAL).
    Streaming RPCs pass through uncounted.
    """

    def __init__(self, metrics: RpcMetrics | None = None) -> None:
        self._metrics = metrics or default_rpc_metrics()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        service, method = split_method(handler_call_details.method)
        metrics = self._metrics

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                response = await inner(request, context)
                code = _status_code(context, default=grpc.StatusCode.OK)
                return response
            except grpc.aio.AbortError:
                code = _status_code(context, default=grpc.StatusCode.UNKNOWN)
                raise
            except BaseException as exc:
                cancelled = isinstance(exc, asyncio.CancelledError)
                code = grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.UNKNOWN
                raise
            finally:
                metrics.observe(service, method, code, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(context: grpc.aio.ServicerContext, *, default: grpc.StatusCode) -> grpc.StatusCode:
    """The code the handler set (by abort or set_code), else `default`."""
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    # grpc.aio hands back the raw integer once the call was aborted.
    return _CODES_BY_VALUE.get(int(code), default)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Interceptors every Masar gRPC server runs (masar.platform.process.start_sector)."""
    return [RpcMetricsInterceptor()]


# --- Temporal SDK metrics ------------------------------------------------------------


_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class _Series:
    kind: int
    description: str
    values: dict[tuple[tuple[str, str], ...], Any] = field(default_factory=dict)


@dataclass
class _HistogramState:
    buckets: list[int]
    count: int = 0
    total: float = 0.0


class TemporalMetricsCollector:
    """Republishes the Temporal SDK's buffered metrics for prometheus_client.

    The buffer is drained on every scrape and by a background thread (the
    SDK drops updates once its buffer is full), and aggregated here:
    counters summed, gauges last value, histograms into `LATENCY_BUCKETS`.
    """

    def __init__(self, buffer: MetricBuffer, *, drain_interval: float = 2.0) -> None:
        self._buffer = buffer
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._stop = threading.Event()
        self._interval = drain_interval
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._drain_loop, name="temporal-metrics-drain", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _drain_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.drain()
            except Exception:  # never let metrics kill the process
                log.exception("draining temporal metrics failed")

    def drain(self) -> None:
        with self._lock:
            for update in self._buffer.retrieve_updates():
                metric = update.metric
                name = _prometheus_name(metric.name, metric.unit, metric.kind)
                series = self._series.get(name)
                if series is None:
                    series = _Series(kind=metric.kind, description=metric.description or name)
                    self._series[name] = series
                labels = tuple(
                    sorted(
                        (_LABEL_NAME.sub("_", str(k)), str(v)) for k, v in update.attributes.items()
                    )
                )
                value = float(update.value)
                if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                    series.values[labels] = series.values.get(labels, 0.0) + value
                elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                    series.values[labels] = value
                else:
                    state = series.values.get(labels)
                    if state is None:
                        state = _HistogramState(buckets=[0] * len(LATENCY_BUCKETS))
                        series.values[labels] = state
                    for i, bound in enumerate(LATENCY_BUCKETS):
                        if value <= bound:
                            state.buckets[i] += 1
                    state.count += 1
                    state.total += value

    def describe(self) -> Iterable[Metric]:
        # Names are only known once the SDK reports; no up-front description.
        return []

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, series in sorted(self._series.items()):
                if series.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family = Metric(name, series.description, "counter")
                    for labels, total in series.values.items():
                        family.add_sample(f"{name}_total", dict(labels), total)
                elif series.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family = Metric(name, series.description, "gauge")
                    for labels, value in series.values.items():
                        family.add_sample(name, dict(labels), value)
                else:
                    family = Metric(name, series.description, "histogram")
                    for labels, state in series.values.items():
                        base = dict(labels)
                        for bound, count in zip(LATENCY_BUCKETS, state.buckets, strict=True):
                            family.add_sample(f"{name}_bucket", {**base, "le": str(bound)}, count)
                        family.add_sample(f"{name}_bucket", {**base, "le": "+Inf"}, state.count)
                        family.add_sample(f"{name}_count", base, state.count)
                        family.add_sample(f"{name}_sum", base, state.total)
                yield family


def _prometheus_name(name: str, unit: str | None, kind: int) -> str:
    name = _LABEL_NAME.sub("_", name)
    if unit == "s" and not name.endswith("_seconds"):
        name += "_seconds"
    if kind == BUFFERED_METRIC_KIND_COUNTER and name.endswith("_total"):
        name = name.removesuffix("_total")
    return name


def temporal_metrics_runtime(buffer_size: int = 100_000) -> tuple[Runtime, MetricBuffer]:
    """A Temporal Runtime that records SDK metrics into a buffer (seconds)."""
    buffer = MetricBuffer(buffer_size, MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    return runtime, buffer


# --- the scrape endpoint ---------------------------------------------------------------


@dataclass
class MetricsEndpoint:
    """A running `/metrics` HTTP endpoint and what feeds it."""

    port: int
    host: str
    collector: TemporalMetricsCollector | None
    registry: CollectorRegistry
    _server: Any = None
    _thread: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.registry.unregister(self.collector)
            self.collector = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_metrics_endpoint(
    port: int,
    *,
    host: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
    temporal_runtime: bool = True,
) -> MetricsEndpoint:
    """Serve `registry` on `host:port`; with `temporal_runtime`, also make
    the Temporal SDK record its metrics there (the default Runtime is
    replaced, so call this before the process's first Temporal client).

    Raises OSError when the port cannot be bound.
    """
    # `*_created` timestamps double the series and say nothing to an operator.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    server, thread = start_http_server(port, addr=host, registry=registry)
    collector: TemporalMetricsCollector | None = None
    if temporal_runtime:
        runtime, buffer = temporal_metrics_runtime()
        Runtime.set_default(runtime, error_if_already_set=False)
        collector = TemporalMetricsCollector(buffer)
        registry.register(collector)
        collector.start()
    return MetricsEndpoint(
        port=port,
        host=host,
        collector=collector,
        registry=registry,
        _server=server,
        _thread=thread,
    )
