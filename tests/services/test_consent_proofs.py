"""Consent that takes effect at the sector's door: a referral request without
intake's proof of consent for that case and that sector is refused, and
intake proves only the consents it holds, to the sector they are for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest

from masar.contract import Sector
from masar.platform.identity import Role, TokenIssuer
from masar.referral.consent import PROOF_TYPE, ConsentVerifier, issue_consent_proof
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc, shelter_pb2, shelter_pb2_grpc
from services.intake.app import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from services.intake.app import build_components as intake_components
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.intake.support import registration
from tests.services.shelter.helpers import case_id, create_shelter, placement
from tests.support_auth import TEST_ISSUER, bearer, consent_proof, token_for


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
    case = (await stub.RegisterCase(registration())).case.summary.case_id
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
        (bearer(token_for(Role.INTAKE_OFFICER)), common_pb2.SECTOR_SHELTER),
        (bearer(token_for(Role.COORDINATOR, region="fes-meknes")), common_pb2.SECTOR_SHELTER),
    ):
        denied = await _refusal(stub.IssueConsentProof(ask(sector), metadata=who))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    # Withdrawn (Temporal is down: the change is queued for the journey, but
    # takes effect here at once): no more proofs.
    await stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(
            case_id=case, scope=intake_pb2.CONSENT_SCOPE_SHELTER, idempotency_key="w1"
        )
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
