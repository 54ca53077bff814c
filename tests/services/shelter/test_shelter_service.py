"""The shelter service through a real gRPC server and a real database
(SQLite and PostgreSQL). Temporal is unreachable here unless a test says
otherwise, so staff decisions come back QUEUED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from masar.v1 import common_pb2, shelter_pb2
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.shelter.helpers import (
    FES,
    ORG,
    RABAT,
    WHEELCHAIR,
    beds,
    case_id,
    create_shelter,
    decide,
    key,
    placement,
    stub_of,
)


@pytest.fixture
async def shelter(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("shelter", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_health_and_reflection_are_reachable(tmp_path, sqlite_url) -> None:
    settings = sector_settings("shelter", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="masar.v1.ShelterService"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel)
        names: list[str] = []
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            names = [s.name for s in answer.list_services_response.service]
        assert "masar.v1.ShelterService" in names


async def test_shelters_are_created_once_and_their_address_stays_secret(shelter) -> None:
    stub = stub_of(shelter)
    request = shelter_pb2.CreateShelterRequest(
        name="Dar Al Amane",
        region=FES,
        capacity=12,
        accepts_children=True,
        accessibility=[WHEELCHAIR, shelter_pb2.ACCESSIBILITY_FEATURE_GROUND_FLOOR],
        address="7 rue confidentielle, Fes",
        idempotency_key="seed-shelter-1",
        organisation_id=ORG,
    )
    first = (await stub.CreateShelter(request)).shelter
    again = (await stub.CreateShelter(request)).shelter
    assert again.shelter_id == first.shelter_id
    assert shelter.count("shelters") == 1
    assert first.organisation_id == ORG
    assert first.free_beds == 12
    assert list(first.accessibility) == [WHEELCHAIR, shelter_pb2.ACCESSIBILITY_FEATURE_GROUND_FLOOR]

    # The same key for a different shelter is refused, naming the field.
    other = shelter_pb2.CreateShelterRequest()
    other.CopyFrom(request)
    other.capacity = 4
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateShelter(other)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(err.value) == "idempotency_key"

    stored = shelter.scalar("SELECT address FROM shelters")
    assert "confidentielle" not in stored and stored.startswith("enc1:")
    assert "confidentielle" not in str(first)

    await create_shelter(stub, region=RABAT, capacity=5)
    listed = await stub.ListShelters(shelter_pb2.ListSheltersRequest(region=RABAT))
    assert [s.region for s in listed.shelters] == [RABAT]
    capacity = await stub.GetCapacity(shelter_pb2.GetCapacityRequest())
    assert {(r.region, r.shelters, r.capacity, r.free_beds) for r in capacity.regions} == {
        (FES, 1, 12, 12),
        (RABAT, 1, 5, 5),
    }
    one = await stub.GetCapacity(shelter_pb2.GetCapacityRequest(region=RABAT))
    assert [r.region for r in one.regions] == [RABAT]


async def test_bad_input_names_the_field_and_writes_nothing(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub)
    pending = (await stub.RequestPlacement(placement())).referral
    counts = {t: shelter.count(t) for t in ("shelters", "referrals", "outbox", "idempotency_keys")}
    secret = "Fatima Zahra 0612345678"

    def shelter_request(**changes):
        request = shelter_pb2.CreateShelterRequest(
            name="Dar",
            region=FES,
            capacity=3,
            address="x",
            idempotency_key=key(),
            organisation_id=ORG,
        )
        for name, value in changes.items():
            setattr(request, name, value)
        return request

    def placement_with(**changes):
        request = placement()
        for name, value in changes.items():
            if name.startswith("needs_"):
                setattr(request.needs, name.removeprefix("needs_"), value)
            else:
                setattr(request, name, value)
        return request

    bad = [
        (stub.CreateShelter, shelter_request(region=secret), "region"),
        (stub.CreateShelter, shelter_request(capacity=0), "capacity"),
        (stub.CreateShelter, shelter_request(name=""), "name"),
        (stub.CreateShelter, shelter_request(address=""), "address"),
        (stub.CreateShelter, shelter_request(idempotency_key=""), "idempotency_key"),
        (stub.CreateShelter, shelter_request(organisation_id=""), "organisation_id"),
        (stub.CreateShelter, shelter_request(organisation_id=secret), "organisation_id"),
        (stub.ListShelters, shelter_pb2.ListSheltersRequest(region="atlantis"), "region"),
        (stub.GetCapacity, shelter_pb2.GetCapacityRequest(region="atlantis"), "region"),
        (stub.RequestPlacement, placement_with(case_id=secret), "case_id"),
        (stub.RequestPlacement, placement_with(risk=0), "risk"),
        (stub.RequestPlacement, placement_with(risk=99), "risk"),
        (stub.RequestPlacement, placement_with(region=""), "region"),
        (stub.RequestPlacement, placement_with(idempotency_key=""), "idempotency_key"),
        (stub.RequestPlacement, placement_with(needs_household_size=0), "needs.household_size"),
        (stub.RequestPlacement, placement_with(needs_children=1), "needs.children"),
        (
            stub.RequestPlacement,
            shelter_pb2.RequestPlacementRequest(
                case_id=case_id(), risk=common_pb2.RISK_LEVEL_LOW, region=FES, idempotency_key=key()
            ),
            "needs",
        ),
        (
            stub.DecideReferral,
            common_pb2.DecideReferralRequest(
                referral_id=pending.referral_id,
                decision=common_pb2.DECISION_DECLINE,
                idempotency_key=key(),
            ),
            "decline_reason",
        ),
        (
            stub.DecideReferral,
            common_pb2.DecideReferralRequest(referral_id=pending.referral_id, idempotency_key="k"),
            "decision",
        ),
        (
            stub.DecideReferral,
            common_pb2.DecideReferralRequest(
                referral_id="emp-0123456789abcdef",
                decision=common_pb2.DECISION_ACCEPT,
                idempotency_key="k",
            ),
            "referral_id",
        ),
        (
            stub.CheckOut,
            shelter_pb2.CheckOutRequest(referral_id=pending.referral_id, idempotency_key="k"),
            "exit_reason",
        ),
        (
            stub.CheckIn,
            shelter_pb2.CheckInRequest(referral_id=pending.referral_id),
            "idempotency_key",
        ),
        (
            stub.CloseReferral,
            common_pb2.CloseReferralRequest(
                referral_id=pending.referral_id,
                status=common_pb2.REFERRAL_STATUS_ACCEPTED,
                idempotency_key="k",
            ),
            "status",
        ),
        (stub.ListReferrals, common_pb2.ListReferralsRequest(page_size=-1), "page_size"),
        (stub.ListReferrals, common_pb2.ListReferralsRequest(page_token="%%%"), "page_token"),
        (stub.PurgeCase, common_pb2.PurgeCaseRequest(idempotency_key="k"), "case_id"),
    ]
    for rpc, request, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err.value) == field
        assert secret not in (err.value.details() or "")
    assert {t: shelter.count(t) for t in counts} == counts
    assert await beds(stub, home.shelter_id) == (0, 0, 3)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetReferral(common_pb2.GetReferralRequest(referral_id="shr-0123456789abcdef"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_placement_is_requested_decided_and_lived(shelter) -> None:
    stub = stub_of(shelter)
    fes = await create_shelter(stub, region=FES, capacity=4, access=[WHEELCHAIR])
    rabat = await create_shelter(stub, region=RABAT, capacity=6, children=False)

    # Same region first; a retry with the same key returns the first referral.
    case = case_id()
    request = placement(household=3, children=2, access=[WHEELCHAIR], case=case)
    referral = (await stub.RequestPlacement(request)).referral
    assert (await stub.RequestPlacement(request)).referral == referral
    assert shelter.count("referrals") == 1
    assert referral.provider_id == fes.shelter_id
    assert referral.status == common_pb2.REFERRAL_STATUS_PENDING
    assert referral.sector == common_pb2.SECTOR_SHELTER
    assert referral.referral_id.startswith("shr-")
    assert referral.risk == common_pb2.RISK_LEVEL_HIGH
    # Addressed to the organisation that runs the shelter.
    assert referral.organisation_id == fes.organisation_id == ORG

    # Providers already tried are excluded; another region is the fallback.
    elsewhere = (await stub.RequestPlacement(placement(exclude=[fes.shelter_id]))).referral
    assert elsewhere.provider_id == rabat.shelter_id
    # Nobody else takes children or wheelchairs: no eligible provider.
    for refused in (
        placement(household=2, children=1, exclude=[fes.shelter_id]),
        placement(access=[WHEELCHAIR], exclude=[fes.shelter_id]),
        placement(household=7),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestPlacement(refused)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A coordinator may name a shelter; an unknown one is refused.
    named = (await stub.RequestPlacement(placement(provider_id=rabat.shelter_id))).referral
    assert named.provider_id == rabat.shelter_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RequestPlacement(placement(provider_id="shl-unknown"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Accept reserves the household's beds; the answer says QUEUED (Temporal is down).
    decision_key = key()
    accepted = await decide(stub, referral.referral_id, idem=decision_key)
    assert accepted.delivery == common_pb2.DELIVERY_STATE_QUEUED
    assert accepted.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
    assert accepted.referral.HasField("decided_at")
    assert await beds(stub, fes.shelter_id) == (3, 0, 1)
    replay = await decide(stub, referral.referral_id, idem=decision_key)
    assert replay.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
    assert await beds(stub, fes.shelter_id) == (3, 0, 1)
    assert shelter.count("outbox") == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await decide(stub, referral.referral_id, accept=False, reason=1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Check-in: reserved beds become occupied. Check-out frees them.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CheckOut(
            shelter_pb2.CheckOutRequest(
                referral_id=referral.referral_id,
                exit_reason=shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING,
                idempotency_key=key(),
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    checkin = await stub.CheckIn(
        shelter_pb2.CheckInRequest(referral_id=referral.referral_id, idempotency_key=key())
    )
    assert checkin.delivery == common_pb2.DELIVERY_STATE_QUEUED
    assert checkin.placement.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    assert checkin.placement.HasField("checked_in_at")
    assert checkin.placement.beds == 3
    assert await beds(stub, fes.shelter_id) == (0, 3, 1)
    checkout = await stub.CheckOut(
        shelter_pb2.CheckOutRequest(
            referral_id=referral.referral_id,
            exit_reason=shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING,
            idempotency_key=key(),
        )
    )
    assert checkout.placement.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert checkout.placement.exit_reason == shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING
    assert await beds(stub, fes.shelter_id) == (0, 0, 4)
    got = await stub.GetPlacement(shelter_pb2.GetPlacementRequest(referral_id=referral.referral_id))
    assert got.placement == checkout.placement
    assert shelter.count("outbox") == 3

    # Decline with a structured reason; no beds move.
    declined = await decide(stub, elsewhere.referral_id, accept=False, reason=1)
    assert declined.referral.status == common_pb2.REFERRAL_STATUS_DECLINED
    assert declined.referral.decline_reason == common_pb2.DECLINE_REASON_NO_CAPACITY
    assert await beds(stub, rabat.shelter_id) == (0, 0, 6)

    # Reads: one referral, and filtered, paged lists.
    fetched = await stub.GetReferral(
        common_pb2.GetReferralRequest(referral_id=referral.referral_id)
    )
    assert fetched.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    by_case = await stub.ListReferrals(common_pb2.ListReferralsRequest(case_id=case))
    assert [r.referral_id for r in by_case.referrals] == [referral.referral_id]
    at_rabat = await stub.ListReferrals(
        common_pb2.ListReferralsRequest(provider_id=rabat.shelter_id)
    )
    assert {r.referral_id for r in at_rabat.referrals} == {
        elsewhere.referral_id,
        named.referral_id,
    }
    pending = await stub.ListReferrals(
        common_pb2.ListReferralsRequest(status=common_pb2.REFERRAL_STATUS_PENDING, region=FES)
    )
    assert {r.referral_id for r in pending.referrals} == {named.referral_id}
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListReferrals(
            common_pb2.ListReferralsRequest(page_size=2, page_token=token)
        )
        seen += [r.referral_id for r in page.referrals]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == shelter.count("referrals") == 3


async def test_journey_steps_remind_close_and_purge(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=5, access=[WHEELCHAIR])
    case = case_id()
    first = (await stub.RequestPlacement(placement(case=case, household=2, children=1))).referral
    second = (await stub.RequestPlacement(placement(case=case, access=[WHEELCHAIR]))).referral
    other = (await stub.RequestPlacement(placement())).referral

    # A reminder counts once per key.
    remind_key = key()
    for _ in range(2):
        reply = await stub.RemindProvider(
            common_pb2.RemindProviderRequest(
                referral_id=first.referral_id, idempotency_key=remind_key
            )
        )
    assert reply.referral.reminders == 1
    reply = await stub.RemindProvider(
        common_pb2.RemindProviderRequest(referral_id=first.referral_id, idempotency_key=key())
    )
    assert reply.referral.reminders == 2

    # Closing an accepted referral releases its beds; closing again changes nothing.
    await decide(stub, other.referral_id)
    assert await beds(stub, home.shelter_id) == (1, 0, 4)
    closed = await stub.CloseReferral(
        common_pb2.CloseReferralRequest(
            referral_id=other.referral_id,
            status=common_pb2.REFERRAL_STATUS_REROUTED,
            idempotency_key=key(),
        )
    )
    assert closed.referral.status == common_pb2.REFERRAL_STATUS_REROUTED
    assert await beds(stub, home.shelter_id) == (0, 0, 5)
    again = await stub.CloseReferral(
        common_pb2.CloseReferralRequest(
            referral_id=other.referral_id,
            status=common_pb2.REFERRAL_STATUS_EXPIRED,
            idempotency_key=key(),
        )
    )
    assert again.referral.status == common_pb2.REFERRAL_STATUS_REROUTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CloseReferral(
            common_pb2.CloseReferralRequest(
                referral_id="shr-0123456789abcdef",
                status=common_pb2.REFERRAL_STATUS_EXPIRED,
                idempotency_key=key(),
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # Consent withdrawn: open referrals are withdrawn, beds released, needs erased.
    await decide(stub, first.referral_id)
    await stub.CheckIn(
        shelter_pb2.CheckInRequest(referral_id=first.referral_id, idempotency_key=key())
    )
    assert await beds(stub, home.shelter_id) == (0, 2, 3)
    purge = common_pb2.PurgeCaseRequest(case_id=case, idempotency_key=key())
    result = await stub.PurgeCase(purge)
    assert (result.referrals_withdrawn, result.records_purged) == (2, 2)
    assert await stub.PurgeCase(purge) == result
    assert await beds(stub, home.shelter_id) == (0, 0, 5)
    for referral in (first, second):
        got = await stub.GetPlacement(
            shelter_pb2.GetPlacementRequest(referral_id=referral.referral_id)
        )
        assert got.placement.referral.status == common_pb2.REFERRAL_STATUS_WITHDRAWN
        assert got.placement.beds == 0
    assert (
        shelter.scalar(
            "SELECT count(*) FROM referrals WHERE case_id = :c AND (household_size IS NOT NULL "
            "OR children IS NOT NULL OR accessibility_needs IS NOT NULL)",
            c=case,
        )
        == 0
    )
    # A later purge with a new key finds nothing left to erase.
    later = await stub.PurgeCase(common_pb2.PurgeCaseRequest(case_id=case, idempotency_key=key()))
    assert (later.referrals_withdrawn, later.records_purged) == (0, 0)


async def test_concurrent_accepts_never_exceed_capacity(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=3)
    referrals = [
        (await stub.RequestPlacement(placement(provider_id=home.shelter_id))).referral
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
    assert await beds(stub, home.shelter_id) == (3, 0, 0)
    accepted = await stub.ListReferrals(
        common_pb2.ListReferralsRequest(status=common_pb2.REFERRAL_STATUS_ACCEPTED)
    )
    assert len(accepted.referrals) == 3
    assert shelter.count("outbox") == 3

    # Concurrent retries of one request create one referral.
    request = placement(provider_id=home.shelter_id)
    replies = await asyncio.gather(*(stub.RequestPlacement(request) for _ in range(10)))
    assert len({r.referral.referral_id for r in replies}) == 1
    assert shelter.count("referrals") == 41
