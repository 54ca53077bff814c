"""One trace per request, end to end, on the real stack: the intake RPC that
registers a case, the journey it starts, the shelter activity, the shelter's
gRPC server and its SQL — one trace id; and no span carries her alias or
contact."""

from __future__ import annotations

from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from masar import contract as c
from masar.platform.telemetry import setup_telemetry
from tests.integration.live import live_stack, referral_in, register_request, seed_region

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
