"""SetProgrammeSeats through a real gRPC server and a real database (SQLite
and PostgreSQL): the employment officers of the organisation that runs a
programme and the region's coordinator keep its seats up to date; nobody else
may; never below the seats taken; audited; one unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from masar.platform.identity import Role
from masar.v1 import employment_pb2, employment_pb2_grpc
from services.employment.app import MIGRATIONS_DIR, build_components
from tests.services.employment.helpers import (
    CASA,
    FES,
    ORG,
    create_programme,
    decide,
    enrolment,
    key,
    seats,
    stub_of,
)
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings

OTHER_ORG = "org-e3910e000002"


@pytest.fixture
async def employment(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("employment", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


def as_(running: RunningSector, role: Role | str, org: str = "", region: str = ""):
    return employment_pb2_grpc.EmploymentServiceStub(running.channel_as(role, org, region))


def set_seats(
    programme_id: str, count: int, idem: str = ""
) -> employment_pb2.SetProgrammeSeatsRequest:
    return employment_pb2.SetProgrammeSeatsRequest(
        programme_id=programme_id, seats=count, idempotency_key=idem
    )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def taken_by(stub, programme_id: str, count: int) -> None:
    """`count` accepted enrolments in the programme."""
    for _ in range(count):
        referral = (await stub.RequestEnrolment(enrolment(provider_id=programme_id))).referral
        await decide(stub, referral.referral_id)


def seat_changes(running: RunningSector, programme_id: str) -> int:
    return int(
        running.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'programme.seats_set' AND target = :t",
            t=programme_id,
        )
    )


async def test_officers_of_the_programmes_organisation_keep_its_seats_up_to_date(
    employment,
) -> None:
    stub = stub_of(employment)
    programme = await create_programme(stub, seats=3)
    await taken_by(stub, programme.programme_id, 2)
    officer = as_(employment, Role.EMPLOYMENT_OFFICER, org=ORG)

    first = key()
    reply = await officer.SetProgrammeSeats(set_seats(programme.programme_id, 8, first))
    assert (reply.programme.seats, reply.programme.seats_taken, reply.programme.seats_free) == (
        8,
        2,
        6,
    )
    assert await seats(stub, programme.programme_id) == (2, 6)
    assert seat_changes(employment, programme.programme_id) == 1
    assert (
        employment.scalar(
            "SELECT role || ' ' || org || ' ' || reason FROM audit_log "
            "WHERE action = 'programme.seats_set'"
        )
        == f"employment_officer {ORG} seats:8"
    )

    # A retry with the same key changes nothing again; the same key for
    # another number is refused, naming the key.
    await officer.SetProgrammeSeats(set_seats(programme.programme_id, 5))
    again = await officer.SetProgrammeSeats(set_seats(programme.programme_id, 8, first))
    assert again.programme.seats == 5
    err = await refused(officer.SetProgrammeSeats(set_seats(programme.programme_id, 9, first)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(err) == "idempotency_key"
    assert seat_changes(employment, programme.programme_id) == 2

    # Down to the seats taken: full, and a further accept is refused.
    full = await officer.SetProgrammeSeats(set_seats(programme.programme_id, 2, key()))
    assert (full.programme.seats, full.programme.seats_free) == (2, 0)
    other = (await stub.RequestEnrolment(enrolment(provider_id=programme.programme_id))).referral
    err = await refused(decide(stub, other.referral_id))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # The region's coordinator may too; another region's may not.
    coordinator = as_(employment, Role.COORDINATOR, region=FES)
    reply = await coordinator.SetProgrammeSeats(set_seats(programme.programme_id, 4))
    assert reply.programme.seats == 4
    elsewhere = as_(employment, Role.COORDINATOR, region=CASA)
    err = await refused(elsewhere.SetProgrammeSeats(set_seats(programme.programme_id, 9)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await seats(stub, programme.programme_id) == (2, 2)


async def test_another_organisations_officers_and_other_roles_are_refused(employment) -> None:
    stub = stub_of(employment)
    programme = await create_programme(stub, seats=3)
    changes = employment.count("audit_log")
    for caller in (
        as_(employment, Role.EMPLOYMENT_OFFICER, org=OTHER_ORG),
        as_(employment, Role.EMPLOYMENT_OFFICER, org=programme.programme_id),
        as_(employment, Role.SHELTER_STAFF, org=ORG),
        as_(employment, Role.INTAKE_OFFICER, org=ORG),
        as_(employment, "service:employment"),
    ):
        for count in (10, -1):  # refused before the number is read
            err = await refused(caller.SetProgrammeSeats(set_seats(programme.programme_id, count)))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await seats(stub, programme.programme_id) == (0, 3)
    assert employment.count("audit_log") == changes

    officer = as_(employment, Role.EMPLOYMENT_OFFICER, org=ORG)
    err = await refused(officer.SetProgrammeSeats(set_seats("prg-000000000000", 3)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    for bad in ("", "prg 1; drop table programmes"):
        err = await refused(officer.SetProgrammeSeats(set_seats(bad, 3)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_field(err) == "programme_id"


async def test_never_below_the_seats_taken_nor_beyond_the_maximum(employment) -> None:
    stub = stub_of(employment)
    programme = await create_programme(stub, seats=4)
    await taken_by(stub, programme.programme_id, 3)
    officer = as_(employment, Role.EMPLOYMENT_OFFICER, org=ORG)
    tables = ("idempotency_keys", "audit_log", "outbox")
    counts = {t: employment.count(t) for t in tables}

    for count, says in (
        (2, "at least 3"),
        (0, "at least 3"),
        (-1, "between 0"),
        (1001, "between 0"),
    ):
        err = await refused(
            officer.SetProgrammeSeats(set_seats(programme.programme_id, count, key()))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, count
        assert error_field(err) == "seats"
        assert says in (err.details() or "")
    assert await seats(stub, programme.programme_id) == (3, 1)
    assert employment.scalar("SELECT seats FROM programmes") == 4
    assert {t: employment.count(t) for t in tables} == counts

    reply = await officer.SetProgrammeSeats(set_seats(programme.programme_id, 3))
    assert (reply.programme.seats, reply.programme.seats_free) == (3, 0)
    # A programme with no seat taken may take nobody new for a while.
    empty = await create_programme(stub, seats=2)
    closed = await officer.SetProgrammeSeats(set_seats(empty.programme_id, 0))
    assert closed.programme.seats == 0


async def test_concurrent_accepts_and_fewer_seats_never_over_allocate(employment) -> None:
    stub = stub_of(employment)
    programme = await create_programme(stub, seats=4)
    referrals = [
        (await stub.RequestEnrolment(enrolment(provider_id=programme.programme_id))).referral
        for _ in range(6)
    ]
    officer = as_(employment, Role.EMPLOYMENT_OFFICER, org=ORG)

    async def outcome(call) -> grpc.StatusCode:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    calls = [outcome(decide(stub, r.referral_id)) for r in referrals]
    calls.insert(3, outcome(officer.SetProgrammeSeats(set_seats(programme.programme_id, 2))))
    codes = await asyncio.gather(*calls)
    resized = codes.pop(3)
    assert resized in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    total = 2 if resized == grpc.StatusCode.OK else 4
    taken, free = await seats(stub, programme.programme_id)
    assert taken == codes.count(grpc.StatusCode.OK) <= total
    assert taken + free == total
