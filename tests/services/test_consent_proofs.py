"""Consent that takes effect at the sector's door: a referral request without
intake's proof of consent for that case and that sector is refused, intake
proves only the consents it holds, to the sector they are for, and a proof
stops working at the sector once it is told the consent was withdrawn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from temporalio.exceptions import ApplicationError

from masar.contract import CasePurge, Sector
from masar.platform.identity import Role, TokenIssuer
from masar.referral._activities import IntakeConsent  # the sector activities' proof source
from masar.referral.consent import (
    MAX_CLOCK_SKEW,
    PROOF_TYPE,
    ConsentVerifier,
    issue_consent_proof,
    withdrawal_time,
)
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc, shelter_pb2, shelter_pb2_grpc
from services.intake.app import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from services.intake.app import build_components as intake_components
from services.shelter.activities import ShelterActivities
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.intake.support import registration
from tests.services.shelter.helpers import case_id, create_shelter, placement
from tests.support_auth import TEST_ISSUER, bearer, consent_proof, token_for

# The officer of the organisation that holds the cases registered here.
OFFICER = bearer(token_for(Role.INTAKE_OFFICER, "org-assoc-a", "fes-meknes", subject="officer-a"))


@pytest.fixture
async def shelter(tmp_path, sqlite_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("shelter", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


@pytest.fixture
async def intake(tmp_path, sqlite_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("intake", tmp_path / "intake", f"sqlite:///{tmp_path}/intake.db")
    async with running_sector(settings, intake_components, INTAKE_MIGRATIONS) as running:
        yield running


async def _refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_a_sector_refuses_a_referral_without_proof_of_consent(
    shelter: RunningSector,
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    await create_shelter(stub)
    case = case_id()

    def request(proof: str) -> shelter_pb2.RequestPlacementRequest:
        asked = placement(case=case)
        asked.consent_proof = proof
        return asked

    missing = await _refusal(stub.RequestPlacement(request("")))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(missing) == "consent_proof"
    stale = issue_consent_proof(
        TEST_ISSUER,
        case_id=case,
        sector=Sector.SHELTER,
        ttl=timedelta(minutes=10),
        now=datetime.now(UTC) - timedelta(hours=1),
    )[0]
    not_proofs = {
        "another case": consent_proof(case_id(), "shelter"),
        "another sector": consent_proof(case, "legal"),
        "expired": stale,
        "another issuer": issue_consent_proof(
            TokenIssuer.generate(), case_id=case, sector=Sector.SHELTER
        )[0],
        # A bearer token, even of intake's own identity, proves no consent.
        "a token": token_for(Role.SERVICE_INTAKE),
        "garbage": "x.y.z",
    }
    for what, proof in not_proofs.items():
        refused = await _refusal(stub.RequestPlacement(request(proof)))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, what
        assert "consent_proof" in (refused.details() or ""), what
    assert shelter.count("referrals") == 0

    made = await stub.RequestPlacement(request(consent_proof(case, "shelter")))
    assert made.referral.status == common_pb2.REFERRAL_STATUS_PENDING
    # A proof is no bearer token either.
    as_token = await _refusal(
        stub.ListShelters(
            shelter_pb2.ListSheltersRequest(), metadata=bearer(consent_proof(case, "shelter"))
        )
    )
    assert as_token.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_intake_proves_only_the_consents_it_holds(intake: RunningSector) -> None:
    stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
    # Consents: shelter, legal and reporting; employment needed but not consented.
    case = (await stub.RegisterCase(registration(), metadata=OFFICER)).case.summary.case_id
    verifier = TEST_ISSUER.verifier()

    def ask(sector: common_pb2.Sector.ValueType) -> intake_pb2.IssueConsentProofRequest:
        return intake_pb2.IssueConsentProofRequest(case_id=case, sector=sector)

    as_shelter = bearer(token_for(Role.SERVICE_SHELTER))
    reply = await stub.IssueConsentProof(ask(common_pb2.SECTOR_SHELTER), metadata=as_shelter)
    proof = ConsentVerifier(verifier, Sector.SHELTER).check(reply.proof, case)
    assert proof.case_id == case and proof.expires_at == reply.expires_at.ToDatetime(UTC)
    assert verifier.verify_document(reply.proof, PROOF_TYPE)["sub"] == "service:intake"

    as_employment = bearer(token_for(Role.SERVICE_EMPLOYMENT))
    no_consent = await _refusal(
        stub.IssueConsentProof(ask(common_pb2.SECTOR_EMPLOYMENT), metadata=as_employment)
    )
    assert no_consent.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A sector asks for its own sector only; people do not ask at all.
    for who, sector in (
        (as_employment, common_pb2.SECTOR_SHELTER),
        (OFFICER, common_pb2.SECTOR_SHELTER),
        (bearer(token_for(Role.COORDINATOR, region="fes-meknes")), common_pb2.SECTOR_SHELTER),
    ):
        denied = await _refusal(stub.IssueConsentProof(ask(sector), metadata=who))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    # Withdrawn (Temporal is down: the change is queued for the journey, but
    # takes effect here at once): no more proofs.
    await stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(
            case_id=case, scope=intake_pb2.CONSENT_SCOPE_SHELTER, idempotency_key="w1"
        ),
        metadata=OFFICER,
    )
    withdrawn = await _refusal(
        stub.IssueConsentProof(ask(common_pb2.SECTOR_SHELTER), metadata=as_shelter)
    )
    assert withdrawn.code() == grpc.StatusCode.FAILED_PRECONDITION
    issued = intake.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'consent.proof_issued' AND case_id = :c",
        c=case,
    )
    assert issued == 1


async def test_a_proof_stops_working_once_its_consent_is_withdrawn(
    intake: RunningSector, shelter: RunningSector
) -> None:
    """End to end through real intake and shelter servers, with the shelter's
    own activity code: a proof intake issued before a withdrawal, replayed to
    the sector after the purge the withdrawal caused, is refused — the sector
    never calls intake; the purge told it when the consent was withdrawn. A
    consent given again proves anew."""
    intake_stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
    shelter_stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    await create_shelter(shelter_stub, capacity=5)
    case = (await intake_stub.RegisterCase(registration(), metadata=OFFICER)).case.summary.case_id
    # The shelter's activities get proofs from intake as the shelter's identity...
    proofs = IntakeConsent(intake_stub)
    # ...and call the shelter's own API (the channel carries its service identity).
    activities = ShelterActivities(shelter_stub)
    scope = intake_pb2.CONSENT_SCOPE_SHELTER

    def request(proof: str) -> shelter_pb2.RequestPlacementRequest:
        asked = placement(case=case)
        asked.consent_proof = proof
        return asked

    first = await proofs.proof(case, Sector.SHELTER)
    made = await shelter_stub.RequestPlacement(request(first))
    assert made.referral.status == common_pb2.REFERRAL_STATUS_PENDING

    # She withdraws; the journey purges the shelter, telling it when.
    withdrawn = await intake_stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(case_id=case, scope=scope, idempotency_key="w1"),
        metadata=OFFICER,
    )
    withdrawn_at = withdrawn.consent.updated_at.ToDatetime(tzinfo=UTC)
    purged = await activities.purge_case(
        CasePurge(
            case_id=case, sector=Sector.SHELTER, idempotency_key="p1", withdrawn_at=withdrawn_at
        )
    )
    assert purged.referrals_withdrawn == 1

    # The proof is unexpired and well signed, but its consent is gone.
    replayed = await _refusal(shelter_stub.RequestPlacement(request(first)))
    assert replayed.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "consent_proof" in (replayed.details() or "")
    assert "withdrawn" in (replayed.details() or "")
    assert shelter.count("referrals") == 1
    # (Intake itself gives no new proof meanwhile.)
    with pytest.raises(ApplicationError):
        await proofs.proof(case, Sector.SHELTER)

    # Consent given again: a new proof, for the consent given after the withdrawal.
    await intake_stub.RecordConsent(
        intake_pb2.RecordConsentRequest(case_id=case, scope=scope, idempotency_key="c2"),
        metadata=OFFICER,
    )
    second = await proofs.proof(case, Sector.SHELTER)
    again = await shelter_stub.RequestPlacement(request(second))
    assert again.referral.status == common_pb2.REFERRAL_STATUS_PENDING
    assert shelter.count("referrals") == 2

    # A purge from a journey that carried no time counts from when the shelter
    # recorded it: the second consent's proof stops working too.
    await intake_stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(case_id=case, scope=scope, idempotency_key="w2"),
        metadata=OFFICER,
    )
    await shelter_stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=case, idempotency_key="p2"),
        metadata=bearer(token_for(Role.SERVICE_SHELTER)),
    )
    refused = await _refusal(shelter_stub.RequestPlacement(request(second)))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert shelter.count("referrals") == 2


def test_a_proof_names_when_its_consent_was_given() -> None:
    given = datetime(2026, 5, 1, 9, 30, 15, 250000, tzinfo=UTC)
    document, proof = issue_consent_proof(
        TEST_ISSUER, case_id="c-1", sector=Sector.LEGAL, consented_at=given
    )
    checked = ConsentVerifier(TEST_ISSUER.verifier(), Sector.LEGAL).check(document, "c-1")
    assert proof.consented_at == checked.consented_at == checked.given_at == given
    # A proof from before names none: its issue time stands for it.
    older = ConsentVerifier(TEST_ISSUER.verifier(), Sector.LEGAL).check(
        issue_consent_proof(TEST_ISSUER, case_id="c-1", sector=Sector.LEGAL)[0], "c-1"
    )
    assert older.consented_at is None and older.given_at == older.issued_at


def test_a_sector_records_no_withdrawal_from_the_future() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert withdrawal_time(None, now) == now  # told none: the purge's own moment
    earlier = now - timedelta(seconds=3)
    assert withdrawal_time(earlier, now) == earlier
    # Intake's clock a little ahead is believed; a time far ahead is not.
    assert withdrawal_time(now + timedelta(minutes=1), now) == now + timedelta(minutes=1)
    assert withdrawal_time(now + timedelta(days=400), now) == now + MAX_CLOCK_SKEW
