"""SetShelterCapacity through a real gRPC server and a real database (SQLite
and PostgreSQL): the staff of the organisation that runs a shelter and the
region's coordinator keep its beds up to date; nobody else may; never below
the beds reserved or occupied; audited; one unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from masar.platform.identity import Role
from masar.v1 import shelter_pb2, shelter_pb2_grpc
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.shelter.helpers import (
    FES,
    ORG,
    RABAT,
    beds,
    create_shelter,
    decide,
    key,
    placement,
    stub_of,
)

OTHER_ORG = "org-5e1e75000002"


@pytest.fixture
async def shelter(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("shelter", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


def as_(running: RunningSector, role: Role, org: str = "", region: str = ""):
    return shelter_pb2_grpc.ShelterServiceStub(running.channel_as(role, org, region))


def set_capacity(
    shelter_id: str, capacity: int, idem: str = ""
) -> shelter_pb2.SetShelterCapacityRequest:
    return shelter_pb2.SetShelterCapacityRequest(
        shelter_id=shelter_id, capacity=capacity, idempotency_key=idem
    )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def capacity_changes(running: RunningSector, shelter_id: str) -> int:
    return int(
        running.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'shelter.capacity_set' AND target = :t",
            t=shelter_id,
        )
    )


async def test_staff_of_the_shelters_organisation_keep_its_beds_up_to_date(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=3)
    accepted = (
        await stub.RequestPlacement(placement(provider_id=home.shelter_id, household=2))
    ).referral
    await decide(stub, accepted.referral_id)
    staff = as_(shelter, Role.SHELTER_STAFF, org=ORG)

    # More beds: the new ones are free at once, the reserved ones stay.
    first = key()
    reply = await staff.SetShelterCapacity(set_capacity(home.shelter_id, 6, first))
    assert (reply.shelter.capacity, reply.shelter.reserved_beds, reply.shelter.free_beds) == (
        6,
        2,
        4,
    )
    assert await beds(stub, home.shelter_id) == (2, 0, 4)
    assert capacity_changes(shelter, home.shelter_id) == 1
    actor = shelter.scalar(
        "SELECT role || ' ' || org || ' ' || reason FROM audit_log "
        "WHERE action = 'shelter.capacity_set'"
    )
    assert actor == f"shelter_staff {ORG} capacity:6"

    # A retry with the same key changes nothing again, even after a later
    # change; the same key for another number is refused, naming the key.
    await staff.SetShelterCapacity(set_capacity(home.shelter_id, 5))
    again = await staff.SetShelterCapacity(set_capacity(home.shelter_id, 6, first))
    assert again.shelter.capacity == 5
    err = await refused(staff.SetShelterCapacity(set_capacity(home.shelter_id, 7, first)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(err) == "idempotency_key"
    assert capacity_changes(shelter, home.shelter_id) == 2

    # Down to exactly the beds in use: the shelter is full, and stays so.
    full = await staff.SetShelterCapacity(set_capacity(home.shelter_id, 2, key()))
    assert (full.shelter.capacity, full.shelter.free_beds) == (2, 0)
    other = (await stub.RequestPlacement(placement(provider_id=home.shelter_id))).referral
    err = await refused(decide(stub, other.referral_id))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # An empty shelter may take nobody for a while (all its beds out of use).
    empty = await create_shelter(stub, capacity=4, name="Dar Nour")
    closed = await staff.SetShelterCapacity(set_capacity(empty.shelter_id, 0))
    assert (closed.shelter.capacity, closed.shelter.free_beds) == (0, 0)
    reopened = await staff.SetShelterCapacity(set_capacity(empty.shelter_id, 4))
    assert reopened.shelter.free_beds == 4

    # The region's coordinator may too; another region's may not.
    coordinator = as_(shelter, Role.COORDINATOR, region=FES)
    assert (
        await coordinator.SetShelterCapacity(set_capacity(home.shelter_id, 3))
    ).shelter.capacity == 3
    elsewhere = as_(shelter, Role.COORDINATOR, region=RABAT)
    err = await refused(elsewhere.SetShelterCapacity(set_capacity(home.shelter_id, 9)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await beds(stub, home.shelter_id)) == (2, 0, 1)


async def test_another_organisations_staff_and_other_roles_are_refused(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=3)
    changes = shelter.count("audit_log")
    for caller in (
        as_(shelter, Role.SHELTER_STAFF, org=OTHER_ORG),
        as_(shelter, Role.SHELTER_STAFF, org=home.shelter_id),  # a shelter is no organisation
        as_(shelter, Role.LEGAL_AID, org=ORG),
        as_(shelter, Role.EMPLOYMENT_OFFICER, org=ORG),
        as_(shelter, Role.INTAKE_OFFICER, org=ORG),
        shelter_pb2_grpc.ShelterServiceStub(shelter.channel_as("service:shelter")),
    ):
        # Refused before the rest of the request is read: a bad number too.
        for capacity in (10, -1):
            err = await refused(caller.SetShelterCapacity(set_capacity(home.shelter_id, capacity)))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await stub.ListShelters(shelter_pb2.ListSheltersRequest())).shelters[0].capacity == 3
    assert shelter.count("audit_log") == changes

    # An unknown shelter is not found; a malformed or missing id is named.
    staff = as_(shelter, Role.SHELTER_STAFF, org=ORG)
    err = await refused(staff.SetShelterCapacity(set_capacity("shl-000000000000", 3)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    for bad in ("", "shl 1; drop table shelters"):
        err = await refused(staff.SetShelterCapacity(set_capacity(bad, 3)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_field(err) == "shelter_id"


async def test_never_below_the_beds_in_use_nor_beyond_the_maximum(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=4)
    reserved = (
        await stub.RequestPlacement(placement(provider_id=home.shelter_id, household=2))
    ).referral
    await decide(stub, reserved.referral_id)
    arrived = (await stub.RequestPlacement(placement(provider_id=home.shelter_id))).referral
    await decide(stub, arrived.referral_id)
    await stub.CheckIn(
        shelter_pb2.CheckInRequest(referral_id=arrived.referral_id, idempotency_key=key())
    )
    assert await beds(stub, home.shelter_id) == (2, 1, 1)
    staff = as_(shelter, Role.SHELTER_STAFF, org=ORG)
    tables = ("idempotency_keys", "audit_log", "outbox")
    counts = {t: shelter.count(t) for t in tables}

    for capacity, says in (
        (2, "at least 3"),
        (0, "at least 3"),
        (-1, "between 0"),
        (501, "between 0"),
    ):
        err = await refused(
            staff.SetShelterCapacity(set_capacity(home.shelter_id, capacity, key()))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, capacity
        assert error_field(err) == "capacity"
        assert says in (err.details() or "")
    # Nothing changed, nothing written.
    assert await beds(stub, home.shelter_id) == (2, 1, 1)
    assert shelter.scalar("SELECT capacity FROM shelters") == 4
    assert {t: shelter.count(t) for t in tables} == counts

    # Exactly the beds in use is allowed.
    reply = await staff.SetShelterCapacity(set_capacity(home.shelter_id, 3))
    assert (reply.shelter.capacity, reply.shelter.free_beds) == (3, 0)


async def test_concurrent_accepts_and_a_smaller_capacity_never_over_allocate(shelter) -> None:
    stub = stub_of(shelter)
    home = await create_shelter(stub, capacity=4)
    referrals = [
        (await stub.RequestPlacement(placement(provider_id=home.shelter_id))).referral
        for _ in range(6)
    ]
    staff = as_(shelter, Role.SHELTER_STAFF, org=ORG)

    async def outcome(call) -> grpc.StatusCode:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    calls = [outcome(decide(stub, r.referral_id)) for r in referrals]
    calls.insert(3, outcome(staff.SetShelterCapacity(set_capacity(home.shelter_id, 2))))
    codes = await asyncio.gather(*calls)
    resized = codes.pop(3)
    assert resized in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    capacity = 2 if resized == grpc.StatusCode.OK else 4
    reserved, occupied, free = await beds(stub, home.shelter_id)
    assert reserved == codes.count(grpc.StatusCode.OK) <= capacity
    assert reserved + free == capacity and occupied == 0
