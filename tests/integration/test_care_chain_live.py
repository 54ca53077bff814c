"""The care-unit chain on the live local stack (issue 15, "Done when"):
`masar up` on free ports (the health and psychosocial services as real
processes), `masar seed`, then, each person signed in with her own session
(her first password changed, her own XDG_CONFIG_HOME):

- the police care unit (`careunit.fes`) registers a rape reported about 20 h
  after the incident, needing medical care and legal aid, with both
  consents, held by the association of the region;
- the medical referral goes to the seeded hospital care unit; its staff
  (`health.fes`) accept it (`masar referral decide --accept`), record PEP as
  started and issue a certificate with its ITT days (HealthService over
  gRPC: the CLI has no command for recording care);
- the legal referral is at the region's legal aid association (where
  `legal.fes` works): the matching may choose the court's care cell or a
  lawyer instead, and then the coordinator reassigns it there
  (`masar case reassign`, the local stack's shortcut);
- legal aid (`legal.fes`) sees in the legal file that a certificate exists,
  its date and ITT days, and nothing clinical;
- the care unit sees the statuses of the case's referrals (its follow-up
  view, GetCaseFollowUp: the CLI has no command for it) and is refused the
  case itself (GetCase, and `masar case show`).

The CLI's `masar case open` cannot name the holding organisation a care
unit must give, so the registration is RegisterCase over gRPC too, with the
care unit's own signed-in token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.json_format import MessageToJson

from masar.cli.intake import CONSENTS, SECTORS, VIOLENCE, unknown_checklist
from masar.cli.session import signed_in_token
from masar.contract import ServiceName
from masar.platform.channels import aio_channel, bearer_interceptors
from masar.platform.settings import CliSettings
from masar.v1 import (
    common_pb2,
    health_pb2,
    health_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
)
from tests.console.harness import ConsoleStack, console_stack_running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

T = TypeVar("T")

CARE_UNIT = "careunit.fes"
HEALTH = "health.fes"
LEGAL = "legal.fes"
HOLDER = "intake.fes"  # an officer of the association that will hold the case
ALIAS = "Canary-Zahra-7c1d9"
CONTACT = "+212600334455"
ITT_DAYS = 25  # over 20: the heavier qualification (art. 401)
CLINICAL_WORDS = ("pep", "contracept", "forensic", "prophylaxis")


def as_person(
    stack: ConsoleStack,
    username: str,
    service: ServiceName,
    call: Callable[[grpc.aio.Channel], Awaitable[T]],
) -> T:
    """One gRPC call to `service` with `username`'s own signed-in token (the
    session her password change stored in her configuration directory)."""
    stack.accounts[username]  # signed in (first password changed) once
    cli = CliSettings.from_env(stack.user_env(username))
    source = signed_in_token(cli)
    assert source is not None, f"{username} is not signed in"

    async def run() -> T:
        async with aio_channel(
            cli.common.service_addrs[service],
            tls=cli.common.tls,
            interceptors=bearer_interceptors(source),
        ) as chan:
            return await call(chan)

    return asyncio.run(run())


def wait_for(check: Callable[[], T | None], what: str, *, within: float) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {within:.0f}s")


def key() -> str:
    return uuid.uuid4().hex


def register_case(stack: ConsoleStack, incident_at: datetime, holder_org: str) -> str:
    """The care unit registers the case (as `masar case open` would, plus the
    holding organisation); its id."""
    risk = intake_pb2.RiskAssessmentInput(checklist=unknown_checklist())
    risk.override.level = common_pb2.RISK_LEVEL_HIGH
    risk.override.reason = "care unit's assessment"
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=key(),
        survivor=intake_pb2.SurvivorProfile(
            alias=ALIAS,
            region="fes-meknes",
            contact=intake_pb2.ContactDetails(phone=CONTACT),
        ),
        incident=intake_pb2.Incident(violence_type=VIOLENCE["rape"]),
        risk=risk,
        needs=[SECTORS["medical"], SECTORS["legal"]],
        consents=[CONSENTS["health"], CONSENTS["legal"]],
        legal_matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
        holding_organisation_id=holder_org,
    )
    request.incident.occurred_at.FromDatetime(incident_at)

    async def call(chan: grpc.aio.Channel) -> intake_pb2.RegisterCaseResponse:
        reply: intake_pb2.RegisterCaseResponse = await intake_pb2_grpc.IntakeServiceStub(
            chan
        ).RegisterCase(request)
        return reply

    reply = as_person(stack, CARE_UNIT, "intake", call)
    summary = reply.case.summary
    assert summary.holding_organisation_id == holder_org
    assert summary.source_organisation_id == stack.accounts[CARE_UNIT].organisation_id
    return str(summary.case_id)


def follow_up(stack: ConsoleStack, case_id: str) -> intake_pb2.CaseFollowUp:
    async def call(chan: grpc.aio.Channel) -> intake_pb2.CaseFollowUp:
        reply = await intake_pb2_grpc.IntakeServiceStub(chan).GetCaseFollowUp(
            intake_pb2.GetCaseFollowUpRequest(case_id=case_id)
        )
        view: intake_pb2.CaseFollowUp = reply.follow_up
        return view

    return as_person(stack, CARE_UNIT, "intake", call)


def referrals_of(view: intake_pb2.CaseFollowUp) -> dict[int, intake_pb2.FollowedReferral]:
    return {r.sector: r for r in view.referrals}


def health_call(stack: ConsoleStack, method: str, request: Any) -> Any:
    async def call(chan: grpc.aio.Channel) -> Any:
        return await getattr(health_pb2_grpc.HealthServiceStub(chan), method)(request)

    return as_person(stack, HEALTH, "health", call)


def legal_file(stack: ConsoleStack, referral_id: str) -> legal_pb2.GetLegalFileResponse:
    async def call(chan: grpc.aio.Channel) -> legal_pb2.GetLegalFileResponse:
        reply: legal_pb2.GetLegalFileResponse = await legal_pb2_grpc.LegalAidServiceStub(
            chan
        ).GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=referral_id))
        return reply

    return as_person(stack, LEGAL, "legal", call)


def legal_aid_association_referral(stack: ConsoleStack, case_id: str, referral_id: str) -> str:
    """The case's legal referral at the region's legal aid association (where
    `legal.fes` works): the matching may have chosen the court's care cell or
    a lawyer, so the local stack's coordinator reassigns it there; the id of
    the referral that association holds."""
    providers = stack.masar_json("providers", "--sector", "legal", "--region", "fes-meknes")
    association = next(p for p in providers if p["kind"] == "legal_aid_association")
    status = stack.masar_json("case", "show", case_id)
    current = next(r for r in status["referrals"] if r["referral_id"] == referral_id)
    if current["provider_id"] == association["provider_id"]:
        return referral_id
    stack.masar_json(
        "case",
        "reassign",
        case_id,
        referral_id,
        "--provider",
        association["provider_id"],
        "--reason",
        "legal aid association of the region",
    )

    def moved() -> str | None:
        shown = stack.masar_json("case", "show", case_id)
        for r in shown["referrals"]:
            if (
                r["sector"] == "legal"
                and r["provider_id"] == association["provider_id"]
                and r["status"] == "PENDING"
            ):
                return str(r["referral_id"])
        return None

    return wait_for(moved, "the legal referral at the legal aid association", within=60)


def test_a_police_care_unit_case_reaches_the_hospital_and_legal_aid_sees_the_certificate(
    tmp_path: Path,
) -> None:
    with console_stack_running(tmp_path / "stack", log_level="WARNING") as stack:
        endpoints = stack.endpoints
        for service in ("health", "psychosocial"):
            assert service in str(endpoints), f"masar up did not start {service}: {endpoints}"
        holder_org = stack.accounts[HOLDER].organisation_id
        hospital_org = stack.accounts[HEALTH].organisation_id
        assert stack.accounts[CARE_UNIT].role == "care_unit_officer"

        # About 20 h after the incident (kept to the hour by intake).
        now = datetime.now(UTC)
        incident_at = (now - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
        case_id = register_case(stack, incident_at, holder_org)

        # The care unit's follow-up view shows both referrals once the journey made them.
        def both() -> dict[int, intake_pb2.FollowedReferral] | None:
            found = referrals_of(follow_up(stack, case_id))
            wanted = {common_pb2.SECTOR_MEDICAL, common_pb2.SECTOR_LEGAL}
            return found if wanted <= set(found) else None

        made = wait_for(both, "the medical and legal referrals", within=60)
        medical = made[common_pb2.SECTOR_MEDICAL].referral_id
        legal = made[common_pb2.SECTOR_LEGAL].referral_id
        assert medical.startswith("hlt-") and legal.startswith("leg-"), made
        legal = legal_aid_association_referral(stack, case_id, legal)

        # The hospital care unit's staff accept it and record the care.
        referral = health_call(
            stack, "GetReferral", common_pb2.GetReferralRequest(referral_id=medical)
        ).referral
        assert referral.organisation_id == hospital_org, referral
        stack.masar_json("referral", "decide", medical, "--accept", as_user=HEALTH)
        pep = health_pb2.RecordPepRequest(
            referral_id=medical, outcome=health_pb2.PEP_OUTCOME_STARTED, idempotency_key=key()
        )
        pep.at.FromDatetime(now - timedelta(minutes=30))
        health_call(stack, "RecordPep", pep)
        issued_at = (now - timedelta(minutes=10)).replace(microsecond=0)
        certificate = health_pb2.IssueCertificateRequest(
            referral_id=medical, itt_days=ITT_DAYS, idempotency_key=key()
        )
        certificate.issued_at.FromDatetime(issued_at)
        recorded = health_call(stack, "IssueCertificate", certificate).record
        assert recorded.certificate_itt_days == ITT_DAYS

        # Legal aid sees that a certificate exists, its date and ITT days; nothing clinical.
        def noted() -> legal_pb2.GetLegalFileResponse | None:
            file = legal_file(stack, legal)
            return file if file.HasField("certificate") else None

        file = wait_for(noted, "the certificate in the legal file", within=60)
        assert file.certificate.itt_days == ITT_DAYS
        assert file.certificate.itt_over_20_days is True
        assert file.certificate.issued_at.ToDatetime(tzinfo=UTC) == issued_at
        assert {f.name for f, _ in file.certificate.ListFields()} <= {
            "issued_at",
            "itt_days",
            "itt_over_20_days",
        }
        text = MessageToJson(file).lower()
        for word in CLINICAL_WORDS:
            assert word not in text, word
        assert ALIAS.lower() not in text and CONTACT not in text

        # The care unit sees the statuses of the referrals, nothing else.
        view = follow_up(stack, case_id)
        statuses = {r.referral_id: (r.sector, r.status) for r in view.referrals}
        assert statuses[medical] == (
            common_pb2.SECTOR_MEDICAL,
            common_pb2.REFERRAL_STATUS_ACCEPTED,
        ), statuses
        assert statuses[legal] == (
            common_pb2.SECTOR_LEGAL,
            common_pb2.REFERRAL_STATUS_PENDING,
        ), statuses
        seen = MessageToJson(view)
        assert ALIAS not in seen and CONTACT not in seen

        async def get_case(chan: grpc.aio.Channel) -> Any:
            return await intake_pb2_grpc.IntakeServiceStub(chan).GetCase(
                intake_pb2.GetCaseRequest(case_id=case_id)
            )

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            as_person(stack, CARE_UNIT, "intake", get_case)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        shown = stack.masar("case", "show", case_id, "--json", as_user=CARE_UNIT)
        assert shown.returncode != 0, shown.stdout
        assert "permission_denied" in shown.stderr, shown.stderr
