"""`masar referral complete` records the outcome the person gives, against
the real sector services (in-process gRPC servers, SQLite; Temporal is
unreachable, so completions come back QUEUED). The CLI runs in-process as on
the local stack: it looks the referral up as the sector's service, then acts
as the staff of the organisation the referral is addressed to (tests let it
sign its own tokens). Without an outcome, with another sector's, or without
the extra fields an outcome needs, nothing is sent: one line, exit code 2,
naming the valid values."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from masar.cli import main as cli_main
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.support_auth import consent_proof

pytestmark = [pytest.mark.timeout(180)]

FES = "fes-meknes"
ORG = "org-0a5e00000001"
IN_SERVICE = common_pb2.REFERRAL_STATUS_IN_SERVICE
COMPLETED = common_pb2.REFERRAL_STATUS_COMPLETED
EXIT_REASONS = (
    "independent_housing, family_or_friends, transferred, returned_to_partner, "
    "left_without_notice, asked_to_leave, other"
)


def key() -> str:
    return secrets.token_hex(8)


@dataclass
class Sectors:
    shelter: RunningSector
    legal: RunningSector
    employment: RunningSector


@pytest.fixture
async def sectors(tmp_path: Path) -> AsyncIterator[Sectors]:
    from services.employment import app as employment_app
    from services.legal import app as legal_app
    from services.shelter import app as shelter_app

    def settings(name: Any) -> Any:
        return sector_settings(name, tmp_path, f"sqlite:///{tmp_path / name}.db")

    async with (
        running_sector(
            settings("shelter"), shelter_app.build_components, shelter_app.MIGRATIONS_DIR
        ) as shelter,
        running_sector(
            settings("legal"), legal_app.build_components, legal_app.MIGRATIONS_DIR
        ) as legal,
        running_sector(
            settings("employment"), employment_app.build_components, employment_app.MIGRATIONS_DIR
        ) as employment,
    ):
        yield Sectors(shelter, legal, employment)


class Cli:
    """`masar ...` in-process, with nobody signed in (the local shortcut)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    async def run(self, *argv: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(""))
        status = await asyncio.to_thread(cli_main, list(argv))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    async def json(self, *argv: str) -> Any:
        status, out, err = await self.run(*argv, "--json")
        assert status == 0, err
        return json.loads(out)

    async def refused(self, *argv: str, exit_code: int = 2) -> str:
        """One line on stderr (no traceback), nothing on stdout; that line."""
        status, out, err = await self.run(*argv)
        assert status == exit_code, (status, out, err)
        assert out == ""
        assert err.startswith("masar: ") and err.count("\n") == 1, err
        return err


@pytest.fixture
def cli(
    sectors: Sectors,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # nobody signed in
    for name in ("shelter", "legal", "employment"):
        monkeypatch.setenv(f"MASAR_{name.upper()}_ADDR", getattr(sectors, name).address)
    return Cli(capsys, monkeypatch)


async def in_service(cli: Cli, referral_id: str) -> None:
    """Accepted and started through the CLI, as staff would."""
    assert (await cli.json("referral", "decide", referral_id, "--accept"))["status"] == "ACCEPTED"
    assert (await cli.json("referral", "start", referral_id))["status"] == "IN_SERVICE"


# --- shelter ---------------------------------------------------------------------------


async def shelter_referral(sectors: Sectors) -> tuple[Any, str]:
    stub = shelter_pb2_grpc.ShelterServiceStub(sectors.shelter.channel)
    shelter = (
        await stub.CreateShelter(
            shelter_pb2.CreateShelterRequest(
                name="Dar Amane",
                region=FES,
                capacity=4,
                accepts_children=True,
                address="confidential",
                idempotency_key=key(),
                organisation_id=ORG,
            )
        )
    ).shelter
    case = secrets.token_hex(8)
    reply = await stub.RequestPlacement(
        shelter_pb2.RequestPlacementRequest(
            case_id=case,
            risk=common_pb2.RISK_LEVEL_HIGH,
            region=FES,
            needs=shelter_pb2.ShelterNeeds(household_size=2, children=1),
            provider_id=shelter.shelter_id,
            idempotency_key=key(),
            consent_proof=consent_proof(case, "shelter"),
        )
    )
    return stub, reply.referral.referral_id


async def test_shelter_check_out_records_the_exit_reason_given(sectors: Sectors, cli: Cli) -> None:
    stub, referral = await shelter_referral(sectors)
    await in_service(cli, referral)

    async def placement() -> Any:
        reply = await stub.GetPlacement(shelter_pb2.GetPlacementRequest(referral_id=referral))
        return reply.placement

    # No outcome, another sector's, or a flag of another sector: nothing sent.
    missing = await cli.refused("referral", "complete", referral)
    assert "--outcome is required" in missing and EXIT_REASONS in missing
    wrong = await cli.refused("referral", "complete", referral, "--outcome", "relief_granted")
    assert "not an outcome for shelter" in wrong and EXIT_REASONS in wrong
    await cli.refused(
        "referral", "complete", referral, "--outcome", "other", "--matter", "residency"
    )
    unchanged = await placement()
    assert unchanged.referral.status == IN_SERVICE
    assert unchanged.exit_reason == shelter_pb2.EXIT_REASON_UNSPECIFIED

    done = await cli.json("referral", "complete", referral, "--outcome", "family_or_friends")
    assert (done["status"], done["outcome"]) == ("COMPLETED", "family_or_friends")
    assert done["delivery"] == "QUEUED"  # Temporal is down: the outbox keeps it
    recorded = await placement()
    assert recorded.referral.status == COMPLETED
    assert recorded.exit_reason == shelter_pb2.EXIT_REASON_FAMILY_OR_FRIENDS


# --- legal aid -------------------------------------------------------------------------


async def test_legal_closes_the_matter_named_with_the_outcome_given(
    sectors: Sectors, cli: Cli
) -> None:
    stub = legal_pb2_grpc.LegalAidServiceStub(sectors.legal.channel)
    matters = [legal_pb2.LEGAL_MATTER_PROTECTION_ORDER, legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT]
    provider = (
        await stub.CreateProvider(
            legal_pb2.CreateLegalProviderRequest(
                kind=legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION,
                name="Association Amane",
                region=FES,
                languages=["ary", "fr"],
                matters=matters,
                idempotency_key=key(),
                organisation_id=ORG,
            )
        )
    ).provider
    case = secrets.token_hex(8)
    referral = (
        await stub.RequestLegalAid(
            legal_pb2.RequestLegalAidRequest(
                case_id=case,
                region=FES,
                risk=common_pb2.RISK_LEVEL_HIGH,
                needs=legal_pb2.LegalNeeds(matters=matters, languages=["ary"]),
                provider_id=provider.provider_id,
                idempotency_key=key(),
                consent_proof=consent_proof(case, "legal"),
            )
        )
    ).referral.referral_id
    await in_service(cli, referral)

    async def outcomes() -> dict[int, int]:
        reply = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=referral))
        return {m.matter: m.outcome for m in reply.matters}

    # Two matters are open: which one is closed must be said.
    several = await cli.refused("referral", "complete", referral, "--outcome", "relief_granted")
    assert "--matter is required" in several
    assert "protection_order, criminal_complaint" in several
    not_open = await cli.refused(
        "referral", "complete", referral, "--outcome", "settled", "--matter", "family_law"
    )
    assert "family_law is not open" in not_open
    missing = await cli.refused("referral", "complete", referral, "--matter", "protection_order")
    assert "--outcome is required" in missing and "withdrawn_by_survivor" in missing
    assert set((await outcomes()).values()) == {legal_pb2.MATTER_OUTCOME_UNSPECIFIED}

    first = await cli.json(
        "referral", "complete", referral,
        "--outcome", "relief_denied", "--matter", "protection_order",
    )  # fmt: skip
    assert first["status"] == "IN_SERVICE" and "delivery" not in first  # nothing to tell yet
    assert (first["matter"], first["outcome"]) == ("protection_order", "relief_denied")
    assert first["open_matters"] == ["criminal_complaint"]
    status, out, _ = await cli.run("referral", "complete", referral, "--outcome", "dismissed")
    assert status == 0
    assert f"completed: referral {referral} is COMPLETED" in out
    assert "matter criminal_complaint closed: dismissed" in out
    assert await outcomes() == {
        legal_pb2.LEGAL_MATTER_PROTECTION_ORDER: legal_pb2.MATTER_OUTCOME_RELIEF_DENIED,
        legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT: legal_pb2.MATTER_OUTCOME_DISMISSED,
    }
    closed = await cli.refused(
        "referral", "complete", referral, "--outcome", "settled", exit_code=1
    )
    assert "already closed" in closed


# --- employment ------------------------------------------------------------------------


async def test_employment_training_outcome_then_the_placement_given(
    sectors: Sectors, cli: Cli
) -> None:
    stub = employment_pb2_grpc.EmploymentServiceStub(sectors.employment.channel)
    starts = Timestamp()
    starts.FromDatetime(datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30))
    programme = (
        await stub.CreateProgramme(
            employment_pb2.CreateProgrammeRequest(
                name="Atelier couture",
                kind=employment_pb2.PROGRAMME_KIND_SEWING,
                region=FES,
                seats=3,
                start_date=starts,
                languages=["ary"],
                idempotency_key=key(),
                organisation_id=ORG,
            )
        )
    ).programme
    case = secrets.token_hex(8)
    referral = (
        await stub.RequestEnrolment(
            employment_pb2.RequestEnrolmentRequest(
                case_id=case,
                risk=common_pb2.RISK_LEVEL_MEDIUM,
                region=FES,
                needs=employment_pb2.EmploymentNeeds(),
                provider_id=programme.programme_id,
                idempotency_key=key(),
                consent_proof=consent_proof(case, "employment"),
            )
        )
    ).referral.referral_id
    await in_service(cli, referral)

    async def enrolment() -> Any:
        reply = await stub.GetEnrolment(employment_pb2.GetEnrolmentRequest(referral_id=referral))
        return reply.enrolment

    missing = await cli.refused("referral", "complete", referral)
    assert "certified, dropped_out, job_placed" in missing
    no_contract = await cli.refused(
        "referral", "complete", referral,
        "--outcome", "job_placed", "--employer-type", "cooperative",
    )  # fmt: skip
    assert "--contract-type is required" in no_contract and "fixed_term" in no_contract
    assert (await enrolment()).training_outcome == employment_pb2.TRAINING_OUTCOME_UNSPECIFIED

    certified = await cli.json("referral", "complete", referral, "--outcome", "certified")
    assert (certified["status"], certified["outcome"]) == ("IN_SERVICE", "certified")
    placed = await cli.json(
        "referral", "complete", referral, "--outcome", "job_placed",
        "--employer-type", "cooperative", "--contract-type", "fixed_term",
    )  # fmt: skip
    assert placed["status"] == "COMPLETED" and placed["outcome"] == "job_placed"
    assert (placed["employer_type"], placed["contract_type"]) == ("cooperative", "fixed_term")
    assert placed["training_outcome"] == "certified"
    recorded = await enrolment()
    assert recorded.referral.status == COMPLETED
    assert recorded.training_outcome == employment_pb2.TRAINING_OUTCOME_CERTIFIED
    assert recorded.employer_type == employment_pb2.EMPLOYER_TYPE_COOPERATIVE
    assert recorded.contract_type == employment_pb2.CONTRACT_TYPE_FIXED_TERM


# --- refused before anything is asked -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["shr-9a1e5c0b7d2f4a86"], "--outcome is required: how the shelter service ended"),
        (["leg-77c0e2d94b1a3f05"], "--outcome is required: how the legal service ended"),
        (["emp-5d21b8e0c4a79f13", "--outcome", "other"], "not an outcome for employment"),
        (["emp-5d21b8e0c4a79f13", "--outcome", "job_placed"], "--employer-type is required"),
        (
            ["emp-5d21b8e0c4a79f13", "--outcome", "certified", "--contract-type", "seasonal"],
            "--contract-type goes with --outcome job_placed only",
        ),
        (
            ["shr-9a1e5c0b7d2f4a86", "--outcome", "other", "--matter", "residency"],
            "--matter is for legal referrals only",
        ),
    ],
)
def test_refused_before_anything_is_sent(
    argv: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Nothing listens at the sectors' addresses: asking anything would fail otherwise.
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli_main(["referral", "complete", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
