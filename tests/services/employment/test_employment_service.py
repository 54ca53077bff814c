"""The employment service through a real gRPC server and a real database
(SQLite and PostgreSQL). Temporal is unreachable here, so staff decisions come
back QUEUED; test_employment_journey.py runs with a real Temporal server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from masar.v1 import common_pb2, employment_pb2
from services.employment.app import MIGRATIONS_DIR, build_components
from tests.services.employment.helpers import (
    CASA,
    FES,
    GOLD,
    ORG,
    PASTRY,
    SEWING,
    create_programme,
    decide,
    enrolment,
    key,
    programme_request,
    seats,
    stub_of,
)
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings


@pytest.fixture
async def employment(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("employment", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_programmes_and_the_enrolment_lifecycle(employment) -> None:
    stub = stub_of(employment)
    health = health_pb2_grpc.HealthStub(employment.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="masar.v1.EmploymentService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(employment.channel)
    async for answer in reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        assert "masar.v1.EmploymentService" in [
            s.name for s in answer.list_services_response.service
        ]

    # Created once per key.
    request = programme_request(kind=SEWING, seats=2, month=3)
    sewing = (await stub.CreateProgramme(request)).programme
    assert (await stub.CreateProgramme(request)).programme == sewing
    assert employment.count("programmes") == 1
    assert (sewing.seats_free, list(sewing.languages)) == (2, ["ary", "fr"])
    assert sewing.organisation_id == ORG
    pastry = await create_programme(stub, kind=PASTRY, seats=4, month=1)
    casa = await create_programme(stub, kind=SEWING, region=CASA, languages=["ar"])
    listed = await stub.ListProgrammes(employment_pb2.ListProgrammesRequest(region=FES))
    assert [p.programme_id for p in listed.programmes] == [pastry.programme_id, sewing.programme_id]
    by_kind = await stub.ListProgrammes(employment_pb2.ListProgrammesRequest(kind=SEWING))
    assert {p.programme_id for p in by_kind.programmes} == {sewing.programme_id, casa.programme_id}

    # Her interests in order, same region first; languages must meet.
    case = secrets.token_hex(8)
    wanted = enrolment(interests=[SEWING, PASTRY], languages=["ary"], case=case)
    referral = (await stub.RequestEnrolment(wanted)).referral
    assert (await stub.RequestEnrolment(wanted)).referral == referral
    assert referral.provider_id == sewing.programme_id
    assert referral.sector == common_pb2.SECTOR_EMPLOYMENT
    assert referral.referral_id.startswith("emp-")
    assert referral.organisation_id == ORG
    any_kind = (await stub.RequestEnrolment(enrolment(exclude=[sewing.programme_id]))).referral
    assert any_kind.provider_id == pastry.programme_id
    elsewhere = (
        await stub.RequestEnrolment(
            enrolment(interests=[SEWING], languages=["ar"], exclude=[sewing.programme_id])
        )
    ).referral
    assert elsewhere.provider_id == casa.programme_id
    for refused in (
        enrolment(interests=[GOLD]),
        enrolment(interests=[SEWING], languages=["en"]),
        enrolment(provider_id="prg-unknown"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestEnrolment(refused)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Accept takes a seat; start, certify, place in work.
    accepted = await decide(stub, referral.referral_id)
    assert accepted.delivery == common_pb2.DELIVERY_STATE_QUEUED
    assert await seats(stub, sewing.programme_id) == (1, 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordJobPlacement(
            employment_pb2.RecordJobPlacementRequest(
                referral_id=referral.referral_id,
                employer_type=employment_pb2.EMPLOYER_TYPE_COOPERATIVE,
                contract_type=employment_pb2.CONTRACT_TYPE_FIXED_TERM,
                idempotency_key=key(),
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    started = await stub.StartEnrolment(
        employment_pb2.StartEnrolmentRequest(
            referral_id=referral.referral_id, idempotency_key=key()
        )
    )
    assert started.delivery == common_pb2.DELIVERY_STATE_QUEUED
    assert started.enrolment.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    assert started.enrolment.HasField("started_at")
    certify = employment_pb2.CompleteTrainingRequest(
        referral_id=referral.referral_id,
        outcome=employment_pb2.TRAINING_OUTCOME_CERTIFIED,
        idempotency_key=key(),
    )
    certified = await stub.CompleteTraining(certify)
    assert certified.delivery == common_pb2.DELIVERY_STATE_UNSPECIFIED
    assert certified.enrolment.training_outcome == employment_pb2.TRAINING_OUTCOME_CERTIFIED
    assert certified.enrolment.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    assert (await stub.CompleteTraining(certify)).enrolment == certified.enrolment
    certify.idempotency_key = key()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CompleteTraining(certify)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    placed = await stub.RecordJobPlacement(
        employment_pb2.RecordJobPlacementRequest(
            referral_id=referral.referral_id,
            employer_type=employment_pb2.EMPLOYER_TYPE_COOPERATIVE,
            contract_type=employment_pb2.CONTRACT_TYPE_FIXED_TERM,
            idempotency_key=key(),
        )
    )
    assert placed.enrolment.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert placed.enrolment.employer_type == employment_pb2.EMPLOYER_TYPE_COOPERATIVE
    assert placed.enrolment.contract_type == employment_pb2.CONTRACT_TYPE_FIXED_TERM
    assert placed.enrolment.HasField("placed_at")
    assert await seats(stub, sewing.programme_id) == (0, 2)
    got = await stub.GetEnrolment(
        employment_pb2.GetEnrolmentRequest(referral_id=referral.referral_id)
    )
    assert got.enrolment == placed.enrolment

    # Dropping out completes the referral and gives the seat back.
    await decide(stub, any_kind.referral_id)
    await stub.StartEnrolment(
        employment_pb2.StartEnrolmentRequest(
            referral_id=any_kind.referral_id, idempotency_key=key()
        )
    )
    assert await seats(stub, pastry.programme_id) == (1, 3)
    dropped = await stub.CompleteTraining(
        employment_pb2.CompleteTrainingRequest(
            referral_id=any_kind.referral_id,
            outcome=employment_pb2.TRAINING_OUTCOME_DROPPED_OUT,
            idempotency_key=key(),
        )
    )
    assert dropped.delivery == common_pb2.DELIVERY_STATE_QUEUED
    assert dropped.enrolment.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert await seats(stub, pastry.programme_id) == (0, 4)

    # Decline, remind, close, purge, reads.
    declined = await decide(
        stub, elsewhere.referral_id, accept=False, reason=common_pb2.DECLINE_REASON_LANGUAGE
    )
    assert declined.referral.decline_reason == common_pb2.DECLINE_REASON_LANGUAGE
    other = (await stub.RequestEnrolment(enrolment(case=case, interests=[SEWING]))).referral
    await decide(stub, other.referral_id)
    assert await seats(stub, sewing.programme_id) == (1, 1)
    reminded = await stub.RemindProvider(
        common_pb2.RemindProviderRequest(referral_id=other.referral_id, idempotency_key=key())
    )
    assert reminded.referral.reminders == 1
    purge = common_pb2.PurgeCaseRequest(case_id=case, idempotency_key=key())
    purged = await stub.PurgeCase(purge)
    assert (purged.referrals_withdrawn, purged.records_purged) == (1, 2)
    assert await stub.PurgeCase(purge) == purged
    assert await seats(stub, sewing.programme_id) == (0, 2)
    assert (
        employment.scalar(
            "SELECT count(*) FROM referrals WHERE case_id = :c "
            "AND (interests IS NOT NULL OR languages IS NOT NULL)",
            c=case,
        )
        == 0
    )
    closed = await stub.CloseReferral(
        common_pb2.CloseReferralRequest(
            referral_id=other.referral_id,
            status=common_pb2.REFERRAL_STATUS_EXPIRED,
            idempotency_key=key(),
        )
    )
    assert closed.referral.status == common_pb2.REFERRAL_STATUS_WITHDRAWN
    listed_case = await stub.ListReferrals(common_pb2.ListReferralsRequest(case_id=case))
    assert {r.referral_id for r in listed_case.referrals} == {
        referral.referral_id,
        other.referral_id,
    }
    fetched = await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=other.referral_id))
    assert fetched.referral.status == common_pb2.REFERRAL_STATUS_WITHDRAWN


async def test_bad_input_names_the_field_and_writes_nothing(employment) -> None:
    stub = stub_of(employment)
    await create_programme(stub)
    pending = (await stub.RequestEnrolment(enrolment())).referral
    tables = ("programmes", "referrals", "outbox", "idempotency_keys")
    counts = {t: employment.count(t) for t in tables}
    secret = "Khadija Benali"

    def programme_with(**changes):
        request = programme_request()
        for name, value in changes.items():
            if name == "start_date":
                request.ClearField("start_date")
            elif isinstance(value, list):
                del getattr(request, name)[:]
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    def enrolment_with(**changes):
        request = enrolment()
        for name, value in changes.items():
            if name == "needs_languages":
                request.needs.languages.append(value)
            elif name == "needs_interests":
                request.needs.interests.append(value)
            elif isinstance(value, list):
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    bad = [
        (stub.CreateProgramme, programme_with(kind=0), "kind"),
        (stub.CreateProgramme, programme_with(seats=0), "seats"),
        (stub.CreateProgramme, programme_with(seats=5000), "seats"),
        (stub.CreateProgramme, programme_with(region=secret), "region"),
        (stub.CreateProgramme, programme_with(name=" "), "name"),
        (stub.CreateProgramme, programme_with(start_date=None), "start_date"),
        (stub.CreateProgramme, programme_with(idempotency_key=""), "idempotency_key"),
        (stub.CreateProgramme, programme_with(languages=[secret]), "languages"),
        (stub.CreateProgramme, programme_with(organisation_id=""), "organisation_id"),
        (stub.CreateProgramme, programme_with(organisation_id=secret), "organisation_id"),
        (
            stub.ListProgrammes,
            employment_pb2.ListProgrammesRequest(kind=employment_pb2.ProgrammeKind.ValueType(99)),
            "kind",
        ),
        (stub.RequestEnrolment, enrolment_with(case_id=secret), "case_id"),
        (stub.RequestEnrolment, enrolment_with(risk=0), "risk"),
        (stub.RequestEnrolment, enrolment_with(needs_interests=0), "needs.interests"),
        (stub.RequestEnrolment, enrolment_with(needs_languages=secret), "needs.languages"),
        (
            stub.RequestEnrolment,
            enrolment_with(exclude_provider_ids=[secret]),
            "exclude_provider_ids",
        ),
        (stub.RequestEnrolment, enrolment_with(provider_id=secret), "provider_id"),
        (
            stub.CompleteTraining,
            employment_pb2.CompleteTrainingRequest(
                referral_id=pending.referral_id, idempotency_key=key()
            ),
            "outcome",
        ),
        (
            stub.RecordJobPlacement,
            employment_pb2.RecordJobPlacementRequest(
                referral_id=pending.referral_id,
                employer_type=employment_pb2.EMPLOYER_TYPE_PUBLIC_SECTOR,
                idempotency_key=key(),
            ),
            "contract_type",
        ),
        (
            stub.StartEnrolment,
            employment_pb2.StartEnrolmentRequest(referral_id="shr-0123456789abcdef"),
            "referral_id",
        ),
        (
            stub.RemindProvider,
            common_pb2.RemindProviderRequest(referral_id=pending.referral_id),
            "idempotency_key",
        ),
    ]
    for rpc, request, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err.value) == field
        assert secret not in (err.value.details() or "")
    assert {t: employment.count(t) for t in tables} == counts


async def test_concurrent_enrolments_never_exceed_seats(employment) -> None:
    stub = stub_of(employment)
    programme = await create_programme(stub, seats=3)
    referrals = [
        (await stub.RequestEnrolment(enrolment(provider_id=programme.programme_id))).referral
        for _ in range(40)
    ]

    async def accept(referral_id: str) -> grpc.StatusCode:
        try:
            await decide(stub, referral_id)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(accept(r.referral_id) for r in referrals))
    assert codes.count(grpc.StatusCode.OK) == 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 37
    assert await seats(stub, programme.programme_id) == (3, 0)
    assert employment.count("outbox") == 3
