"""One trace per request, end to end, on the real stack: the intake RPC that
registers a case, the journey it starts, the shelter activity, the shelter's
gRPC server and its SQL — one trace id; and no span carries her alias or
contact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from masar import contract as c
from masar.platform.telemetry import setup_telemetry
from tests.integration.live import live_stack, referral_in, register_request, seed_region
from tests.integration.otlp_receiver import GrpcReceiver, HttpReceiver, Received, ReceivedSpan
from tests.processes import Up, stack_env

ALIAS = "TraceMarker-Alias-8841"
PHONE = "+212600008841"


def _attribute_text(span) -> str:
    parts = [span.name]
    for key, value in (span.attributes or {}).items():
        parts.append(f"{key}={value}")
    for event in span.events:
        parts.append(event.name)
        parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    return " ".join(parts)


async def test_one_trace_from_registration_to_the_shelters_sql(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("integration", exporters=[exporter])
    try:
        async with live_stack(tmp_path) as stack:
            await seed_region(stack, "oriental")
            tracer = trace.get_tracer("tests")
            with tracer.start_as_current_span("coordinator registers a case") as root:
                reply = await stack.intake.RegisterCase(
                    register_request(
                        "oriental",
                        needs=("shelter",),
                        consents=("shelter",),
                        alias=ALIAS,
                        phone=PHONE,
                    )
                )
            trace_id = root.get_span_context().trace_id
            case_id = reply.case.summary.case_id
            ref = await stack.wait_status(
                case_id, referral_in(c.Sector.SHELTER, c.ReferralStatus.PENDING)
            )
    finally:
        telemetry.force_flush()
        telemetry.shutdown()

    spans = exporter.get_finished_spans()
    ours = [s for s in spans if s.context.trace_id == trace_id]
    names = [s.name for s in ours]
    assert any("RegisterCase" in n for n in names), names
    assert any(n.startswith("StartWorkflow:") for n in names), names
    assert any(n.startswith("RunWorkflow:") for n in names), names
    assert any(n == "RunActivity:shelter.request_referral" for n in names), names
    shelter_server = [
        s
        for s in ours
        if s.kind == trace.SpanKind.SERVER and "ShelterService/RequestPlacement" in s.name
    ]
    assert shelter_server, names
    by_id = {s.context.span_id: s for s in ours}

    def under(span, ancestor) -> bool:
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            if span is ancestor:
                return True
        return False

    sql = [s for s in ours if (s.attributes or {}).get("db.system") in ("sqlite", "postgresql")]
    assert any(under(q, shelter_server[0]) for q in sql), "the shelter's SQL is in the same trace"
    assert ref.referral_id

    for span in spans:
        text = _attribute_text(span)
        assert ALIAS not in text and PHONE not in text, span.name


# --- the same trace, exported by every process of `masar up` over OTLP -------------------


def _masar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "masar"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"masar {' '.join(args)}: {result.stderr}"
    return result


def _one_referral_trace(spans: list[ReceivedSpan], case_id: str) -> list[ReceivedSpan] | None:
    """The spans of the trace holding the shelter activity of `case_id`'s
    referral, once its workflow, activity, gRPC server and SQL spans arrived."""
    activity = [
        s
        for s in spans
        if s.name == "RunActivity:shelter.request_referral" and any(case_id in t for t in s.texts())
    ]
    if not activity:
        return None
    ours = [s for s in spans if s.trace_id == activity[0].trace_id]
    names = [s.name for s in ours]
    server = [
        s for s in ours if s.span.kind == PbSpan.SPAN_KIND_SERVER and "RequestPlacement" in s.name
    ]
    if not (
        server
        and any(n.startswith("RunWorkflow:") for n in names)
        and any(s.attributes.get("db.system") == "sqlite" for s in ours)
    ):
        return None
    return ours


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_every_process_exports_one_trace_over_otlp(
    protocol: str, tmp_path: Path, up_runner: list[Up]
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL / _ENDPOINT as an operator sets them for the
    whole stack: a real collector endpoint receives one trace for one referral
    — the CLI's command, the journey, the shelter activity, the shelter's gRPC
    server and its SQL — from four processes, with the resource each process
    read from the standard variables."""
    receiver: Received = HttpReceiver() if protocol == "http/protobuf" else GrpcReceiver()
    try:
        env = stack_env(tmp_path / "data")
        env.update(
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=trace-test",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            }
        )
        up = Up(env, tmp_path / "up.err")
        up_runner.append(up)
        up.endpoints(timeout=120)
        _masar(env, "seed")
        opened = _masar(
            env,
            "case",
            "open",
            "--region",
            "oriental",
            "--risk",
            "high",
            "--needs",
            "shelter",
            "--consent",
            "shelter",
            "--alias",
            ALIAS,
            "--contact",
            PHONE,
            "--json",
        )
        case_id = json.loads(opened.stdout)["case_id"]

        deadline = time.monotonic() + 60
        ours = None
        while ours is None and time.monotonic() < deadline:
            ours = _one_referral_trace(receiver.spans(), case_id)
            time.sleep(0.5)
        assert ours is not None, sorted({s.name for s in receiver.spans()})
    finally:
        receiver.close()

    names = [s.name for s in ours]
    # The CLI's command is the trace's root: one trace from the command to SQL.
    roots = [s for s in ours if not s.span.parent_span_id]
    assert [s.name for s in roots] == ["masar case open"], names
    assert any(n.startswith("StartWorkflow:") for n in names), names
    services = {s.resource.get("service.name") for s in ours}
    assert {"masar-cli", "masar-intake", "masar-journey", "masar-shelter"} <= services
    assert all(s.resource.get("deployment.environment") == "trace-test" for s in ours)
    for span in receiver.spans():
        for text in span.texts():
            assert ALIAS not in text and PHONE not in text, span.name
