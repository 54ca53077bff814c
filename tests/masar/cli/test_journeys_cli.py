"""The CLI's journey and transfer commands without a stack: the journey
API's status turns back into the journey contract's `status` answer (so
`masar case show --json` prints what it always printed), and a transfer
without her consent, or with a malformed id, is refused in one line before
anything is asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from masar import contract as c
from masar.cli import main as cli_main
from masar.cli.journeys import status_of, summary_doc
from masar.cli.output import to_jsonable
from masar.v1 import common_pb2, journey_pb2
from services.intake.journey_servicer import status_pb

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _status() -> c.JourneyStatus:
    return c.JourneyStatus(
        case_id="3f9c0d2a71be4e55",
        stage=c.Stage.SAFETY,
        risk=c.Risk.HIGH,
        region="fes-meknes",
        referrals=[
            c.ReferralView(
                sector=c.Sector.SHELTER,
                referral_id="shr-9a1e5c0b7d2f4a86",
                provider_id="shl-b77cc81eb977",
                status=c.ReferralStatus.PENDING,
                deadline=T0 + timedelta(hours=4),
                escalation_level=1,
                requested_at=T0,
            ),
            c.ReferralView(
                sector=c.Sector.LEGAL,
                referral_id="leg-77c0e2d94b1a3f05",
                provider_id="lgp-16abffabeef6",
                status=c.ReferralStatus.REROUTED,
                deadline=None,
                escalation_level=2,
                requested_at=T0,
                decline_reason="NO_CAPACITY",
            ),
        ],
        escalations=[
            c.EscalationView(
                wait="shelter_accept",
                level=1,
                at=T0 + timedelta(hours=2),
                referral_id="shr-9a1e5c0b7d2f4a86",
                sector=c.Sector.SHELTER,
            ),
            c.EscalationView(wait="transfer_accept", level=2, at=T0 + timedelta(hours=24)),
        ],
        timeline=[
            c.TimelineEvent(at=T0, event="journey_opened", detail="high"),
            c.TimelineEvent(
                at=T0 + timedelta(hours=2),
                event="reminder",
                sector=c.Sector.SHELTER,
                referral_id="shr-9a1e5c0b7d2f4a86",
                level=1,
            ),
            c.TimelineEvent(
                at=T0 + timedelta(hours=3), event="deadline_extended", actor="acc-3c81e0f2d9b7"
            ),
        ],
        clinical_windows=[
            c.ClinicalWindowView(
                item=c.ClinicalItem.PEP,
                deadline=T0 + timedelta(hours=72),
                status="MET",
                escalation_level=0,
            )
        ],
        escalation_level=2,
        next_deadline=T0 + timedelta(hours=4),
        consents=[c.Sector.SHELTER, c.Sector.LEGAL],
        closure_requested=True,
        next_follow_up=T0 + timedelta(days=14),
        transfers=[
            c.TransferView(
                transfer_id="trf-41d0c9a7e25b8f13",
                from_organisation_id="org-0177dc766cf3",
                to_organisation_id="org-6a2f0e9d41b3",
                status=c.TransferStatus.PENDING,
                deadline=T0 + timedelta(hours=24),
                escalation_level=2,
                reason=c.TransferReason.SURVIVOR_REQUEST,
                requested_at=T0,
            ),
            c.TransferView(
                transfer_id="trf-0c9a7e25b8f1341d",
                from_organisation_id="org-0177dc766cf3",
                to_organisation_id="org-5b2e9c1d7a40",
                status=c.TransferStatus.DECLINED,
                deadline=None,
                escalation_level=0,
                reason=c.TransferReason.LANGUAGE,
                requested_at=T0,
                decided_at=T0 + timedelta(hours=1),
            ),
        ],
    )


def test_the_journey_apis_status_is_the_contracts_status_answer() -> None:
    status = _status()
    assert status_of(status_pb(status)) == status
    doc = to_jsonable(status_of(status_pb(status)))
    # The --json document of DESIGN.md, unchanged.
    assert {"case_id", "stage", "risk", "region", "referrals", "escalations", "timeline"} <= set(
        doc
    )
    assert doc["referrals"][0] == {
        "sector": "shelter",
        "referral_id": "shr-9a1e5c0b7d2f4a86",
        "provider_id": "shl-b77cc81eb977",
        "status": "PENDING",
        "deadline": "2026-11-21T02:00:00Z",
        "escalation_level": 1,
        "requested_at": "2026-11-20T22:00:00Z",
        "decline_reason": None,
    }
    assert doc["transfers"][0]["reason"] == "survivor_request"


def test_a_journey_summary_is_a_row_of_masar_cases() -> None:
    row = journey_pb2.JourneySummary(
        case_id="3f9c0d2a71be4e55",
        stage=journey_pb2.JOURNEY_STAGE_JUSTICE,
        risk=common_pb2.RISK_LEVEL_MEDIUM,
        region="fes-meknes",
        escalation_level=1,
        pending_sectors=[common_pb2.SECTOR_LEGAL],
    )
    row.next_deadline.FromDatetime(T0)
    assert summary_doc(row) == {
        "case_id": "3f9c0d2a71be4e55",
        "stage": "JUSTICE",
        "risk": "medium",
        "region": "fes-meknes",
        "escalation_level": 1,
        "pending_sectors": ["legal"],
        "next_deadline": T0,
    }


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["case", "transfer", "3f9c0d2a71be4e55", "--to", "org-6a2f0e9d41b3",
             "--reason", "closer_to_home"],
            "consent to the transfer is required",
        ),
        (
            ["transfer", "redirect", "trf-41d0c9a7e25b8f13", "--to", "org-6a2f0e9d41b3"],
            "consent to the transfer is required",
        ),
        (["transfer", "accept", "41d0c9a7e25b8f13"], "TRANSFER_ID must look like"),
        (["transfer", "show", "trf-XYZ"], "TRANSFER_ID must look like"),
        (["case", "show", "not a case"], "CASE_ID is malformed"),
    ],
)  # fmt: skip
def test_refused_before_anything_is_asked(
    argv: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))  # no stack there: nothing is asked
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MASAR_TOKEN", raising=False)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert list(tmp_path.iterdir()) == []
