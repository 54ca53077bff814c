"""The canary: journeys on the real stack with a unique marker in every field
of personal data, then a search for the markers everywhere data goes.

Markers go in the survivor's alias, phone, e-mail, address and safe-contact
instructions, the incident narrative, the risk override reasons, the
follow-up notes, a coordinator's emergency-grant note, a shelter's address
and a lawyer's hearing note. Three journeys: one walked through every sector
to its closure, one whose consent is withdrawn mid-referral (the sector
purges), one that fails (no shelter can take her household: the Temporal SDK
logs the activity's failure); and a case referred to a hospital care unit
and to psychosocial support, through those services' own APIs with intake's
proof of consent (what the health and psychosocial databases receive).

No marker may appear in plaintext in the Temporal server's database file or
its log, in any exported span, in any log line of the process (Python logging
and the SDK's own output), in any metric, or in the raw bytes of the
services' databases. The databases, read through the key ring, do hold them:
the markers are there, encrypted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from masar import contract as c
from masar.cli import main as cli_main
from masar.cli.audit import audit_verify_main
from masar.platform.crypto import Keyring, process_keyring
from masar.platform.db import make_engine
from masar.platform.identity import Role
from masar.platform.logs import JsonFormatter
from masar.platform.telemetry import setup_telemetry
from masar.v1 import common_pb2, health_pb2, intake_pb2, psychosocial_pb2, shelter_pb2
from tests.conftest import free_port
from tests.integration.confidentiality import (
    METADATA,
    Markers,
    decrypted_dump,
    files_under,
    plaintext_hits,
    text_hits,
    walk_to_closure,
)
from tests.integration.live import live_stack, referral_in, register_request, seed_region
from tests.support_auth import bearer, token_for

FES, RABAT = "fes-meknes", "rabat-sale-kenitra"


def _registration(
    markers: Markers, region: str, tag: str, **kwargs
) -> intake_pb2.RegisterCaseRequest:
    request = register_request(
        region,
        alias=markers.text(f"{tag}_alias"),
        phone=markers.phone(f"{tag}_phone"),
        narrative=markers.text(f"{tag}_narrative"),
        **kwargs,
    )
    contact = request.survivor.contact
    contact.email = markers.email(f"{tag}_email")
    contact.address = markers.text(f"{tag}_address")
    contact.safe_contact_instructions = markers.text(f"{tag}_safe_contact")
    if request.risk.HasField("override"):
        request.risk.override.reason = markers.text(f"{tag}_override_reason")
    return request


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def _keyring_spec(ring: Keyring) -> str:
    order = [ring.active_id, *(k for k in ring.keys if k != ring.active_id)]
    return ",".join(f"{k}:{base64.b64encode(ring.keys[k]).decode()}" for k in order)


async def test_no_marker_reaches_temporal_spans_logs_or_metrics_in_plaintext(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = Markers()
    data_dir = tmp_path / "data"
    temporal_db = tmp_path / "temporal" / "temporal.db"
    temporal_db.parent.mkdir()
    temporal_log = tmp_path / "temporal.log"
    log_file = tmp_path / "masar.log"

    root = logging.getLogger()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter("canary"))
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)  # the services' default level
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("canary", exporters=[exporter], metrics_port=free_port())
    scraped = ""
    try:
        async with live_stack(
            data_dir, temporal_db=temporal_db, temporal_log=temporal_log
        ) as stack:
            await seed_region(stack, FES)
            await stack.shelter.CreateShelter(
                shelter_pb2.CreateShelterRequest(
                    name="Dar Canary",
                    region=FES,
                    capacity=4,
                    accepts_children=True,
                    address=markers.text("shelter_address"),
                    organisation_id="org-canary-shelter",
                    idempotency_key="canary-shelter",
                )
            )

            # 1. A whole journey, to its closure.
            full = await stack.intake.RegisterCase(_registration(markers, FES, "full"))
            case_id = full.case.summary.case_id
            assessed = full.case.risk_assessment
            await stack.intake.ReassessRisk(
                intake_pb2.ReassessRiskRequest(
                    case_id=case_id,
                    risk=intake_pb2.RiskAssessmentInput(
                        checklist=assessed.checklist,
                        override=intake_pb2.RiskOverride(
                            level=assessed.level, reason=markers.text("reassessment_reason")
                        ),
                    ),
                    idempotency_key="reassess",
                )
            )
            # A Rabat coordinator opens the case under an emergency grant.
            rabat = bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat"))
            asked = await stack.intake.OpenEmergencyGrant(
                intake_pb2.OpenEmergencyGrantRequest(
                    case_id=case_id,
                    reason=intake_pb2.EMERGENCY_REASON_SURVIVOR_RELOCATED,
                    note=markers.text("grant_note"),
                ),
                metadata=rabat,
            )
            # Four eyes: a coordinator of the case's region approves it.
            await stack.intake.ApproveEmergencyGrant(
                intake_pb2.ApproveEmergencyGrantRequest(grant_id=asked.grant.grant_id),
                metadata=bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes")),
            )
            seen = await stack.intake.GetCase(
                intake_pb2.GetCaseRequest(case_id=case_id), metadata=rabat
            )
            assert seen.case.survivor.alias == markers.by_field["full_alias"]
            closed = await walk_to_closure(
                stack,
                case_id,
                hearing_note=markers.text("hearing_note"),
                follow_up_note=markers.text("follow_up_note"),
            )
            assert closed.stage == c.Stage.CLOSED

            # 2. Consent withdrawn while the shelter referral waits: the sector purges.
            withdrawn = await stack.intake.RegisterCase(
                _registration(markers, FES, "withdrawn", needs=("shelter",), consents=("shelter",))
            )
            other = withdrawn.case.summary.case_id
            await stack.wait_status(other, referral_in(c.Sector.SHELTER, c.ReferralStatus.PENDING))
            await stack.intake.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id=other, scope=intake_pb2.CONSENT_SCOPE_SHELTER, idempotency_key="w"
                )
            )
            await stack.wait_status(
                other, lambda s: any(e.event == "case_purged" for e in s.timeline)
            )

            # 3. No shelter can take her household: the activity fails, and the
            # Temporal SDK logs the failure.
            too_many = _registration(
                markers, RABAT, "failing", needs=("shelter",), consents=("shelter",)
            )
            too_many.survivor.accompanying_children = 19
            failing = await stack.intake.RegisterCase(too_many)
            await stack.wait_status(failing.case.summary.case_id, lambda s: s.escalations)

            # 4. Health care and psychosocial support, each asked with intake's
            # proof of her consent: what those services receive never names her.
            cared = await stack.intake.RegisterCase(
                _registration(
                    markers,
                    FES,
                    "care",
                    needs=("shelter",),
                    consents=("shelter", "health", "psychosocial"),
                )
            )
            cared_id = cared.case.summary.case_id
            health_proof = await stack.intake.IssueConsentProof(
                intake_pb2.IssueConsentProofRequest(
                    case_id=cared_id, sector=common_pb2.SECTOR_MEDICAL
                )
            )
            medical = await stack.health.RequestMedicalCare(
                health_pb2.RequestMedicalCareRequest(
                    case_id=cared_id,
                    risk=common_pb2.RISK_LEVEL_HIGH,
                    region=FES,
                    needs=health_pb2.HealthNeeds(
                        care=[health_pb2.CARE_SERVICE_CERTIFICATE], languages=["ary"]
                    ),
                    idempotency_key="canary-health",
                    consent_proof=health_proof.proof,
                )
            )
            assert medical.referral.status == common_pb2.REFERRAL_STATUS_PENDING
            support_proof = await stack.intake.IssueConsentProof(
                intake_pb2.IssueConsentProofRequest(
                    case_id=cared_id, sector=common_pb2.SECTOR_PSYCHOSOCIAL
                )
            )
            support = await stack.psychosocial.RequestSupport(
                psychosocial_pb2.RequestSupportRequest(
                    case_id=cared_id,
                    risk=common_pb2.RISK_LEVEL_HIGH,
                    region=FES,
                    needs=psychosocial_pb2.PsychosocialNeeds(languages=["ary"]),
                    idempotency_key="canary-psychosocial",
                    consent_proof=support_proof.proof,
                )
            )
            assert support.referral.status == common_pb2.REFERRAL_STATUS_PENDING

            for processor in telemetry.processors:
                processor.force_flush()
            assert telemetry.metrics is not None
            scraped = await asyncio.to_thread(_scrape, telemetry.metrics.url)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        # Not the process's tracer provider, nor this test's processor: a
        # processor shut down stays on the provider and fails every later
        # force_flush (the exporter is emptied below instead).
        if telemetry.metrics is not None:
            telemetry.metrics.close()

    spans = exporter.get_finished_spans()
    exporter.clear()
    assert spans and scraped
    captured = capfd.readouterr()
    watched = {
        "spans": "\n".join(span.to_json() for span in spans),
        "metrics (scraped)": scraped,
        "metrics (registry)": generate_latest().decode(),
        "stdout/stderr": captured.out + captured.err,
    }
    # Positive controls: the places searched did record these journeys.
    logged = log_file.read_text()
    assert "Completing activity as failed" in logged and "RESOURCE_EXHAUSTED" in logged
    assert any("IntakeService/GetCase" in s.name for s in spans)
    assert "masar_rpc_server_handled_total" in scraped
    assert c.journey_workflow_id(case_id).encode() in temporal_db.read_bytes() + b"".join(
        p.read_bytes() for p in files_under(temporal_db.parent)
    )
    assert not text_hits(watched, markers.values)
    temporal_files = [*files_under(temporal_db.parent), temporal_log, log_file]
    assert not plaintext_hits(temporal_files, markers.values)

    # The services' databases: never in plaintext, but there, encrypted.
    databases = [p for p in files_under(data_dir) if ".db" in p.name]
    assert {p.name for p in databases} >= {f"{n}.db" for n in METADATA}
    assert not plaintext_hits(databases, markers.values)
    dumps: dict[str, str] = {}
    for name, metadata in METADATA.items():
        engine = make_engine(f"sqlite:///{data_dir / name}.db")
        try:
            dumps[name] = decrypted_dump(engine, metadata)
        finally:
            engine.dispose()
    found = text_hits(dumps, markers.values)
    stored = {
        "intake": [
            v for k, v in markers.by_field.items() if not k.startswith(("shelter", "hearing"))
        ],
        "shelter": [markers.by_field["shelter_address"]],
        "legal": [markers.by_field["hearing_note"]],
    }
    for service, values in stored.items():
        for value in values:
            assert found.get(value) == [service], (service, value, found.get(value))
    assert "enc1:" in (data_dir / "intake.db").read_bytes().decode("latin-1")

    # Every service's audit log is intact (`masar audit verify`).
    ring = process_keyring()
    env = {"MASAR_DATA_DIR": str(data_dir), "MASAR_KEYRING": _keyring_spec(ring)}
    capfd.readouterr()
    assert audit_verify_main(["--json"], environ=env) == 0
    report = json.loads(capfd.readouterr().out)
    for name in METADATA:
        assert report["services"][name]["status"] == "intact", report
        assert report["services"][name]["entries"] > 0

    # Someone with write access to two databases edits one entry and deletes
    # another: `masar audit verify` names both.
    for name, sql in (
        ("legal", "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2"),
        ("employment", "DELETE FROM audit_log WHERE seq = 1"),
    ):
        with sqlite3.connect(data_dir / f"{name}.db") as conn:
            for verb in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
            conn.execute(sql)
    monkeypatch.setenv("MASAR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MASAR_KEYRING", env["MASAR_KEYRING"])
    assert cli_main(["audit", "verify", "--json"]) == 1
    report = json.loads(capfd.readouterr().out)
    statuses = {name: r["status"] for name, r in report["services"].items()}
    assert statuses["legal"] == statuses["employment"] == "tampered", report
    assert statuses["intake"] == statuses["shelter"] == "intact", report
    kinds = {p["kind"] for p in report["services"]["legal"]["problems"]}
    assert "altered" in kinds
