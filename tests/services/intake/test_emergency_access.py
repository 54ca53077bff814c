"""Emergency access through intake's API: a coordinator opens a case outside
her region only under a grant she opened with a reason; the grant covers that
case, for her, for its window (3 h by default), and then expires by itself —
with intake's clock, injected here, moved past it. Every step is audited."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from sqlalchemy.orm import Session

from masar.platform import audit
from masar.platform.identity import Role
from masar.v1 import intake_pb2, intake_pb2_grpc
from services.intake.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.services.intake.support import ALIAS, FES, RABAT, registration
from tests.support_auth import bearer, token_for

RELOCATED = intake_pb2.EMERGENCY_REASON_SURVIVOR_RELOCATED
GRANT_NOTE = "GrantNote-she-arrived-at-the-rabat-centre"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def intake(tmp_path, sqlite_url, clock: Clock) -> AsyncIterator[RunningSector]:
    # Temporal is down: registrations are saved and their journeys queued.
    settings = sector_settings("intake", tmp_path, sqlite_url)
    factory = functools.partial(build_components, clock=clock)
    async with running_sector(settings, factory, MIGRATIONS_DIR) as running:
        yield running


async def _register(stub: intake_pb2_grpc.IntakeServiceStub) -> str:
    reply = await stub.RegisterCase(registration())  # an intake officer, in Fes
    return str(reply.case.summary.case_id)


async def _code(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _entries(running: RunningSector, case_id: str) -> list[audit.AuditEntry]:
    with Session(running.process.database.engine) as session:
        return audit.entries_for_case(session, case_id)


async def test_a_grant_opens_one_case_for_its_reason_and_window_then_expires(
    intake: RunningSector, clock: Clock
) -> None:
    stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
    case_id = await _register(stub)
    other_case = await _register(stub)
    # A Rabat coordinator (a stable subject: a grant is hers, not her role's).
    rabat = bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-1"))
    colleague = bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-2"))
    fes = bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes-1"))
    read = intake_pb2.GetCaseRequest(case_id=case_id)

    # Her own region's cases she reads; another region's, not without a grant.
    assert (await stub.GetCase(read, metadata=fes)).case.survivor.alias == ALIAS
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED

    # A grant needs a reason; it is for coordinators only, and only outside their region.
    no_reason = intake_pb2.OpenEmergencyGrantRequest(case_id=case_id)
    assert await _code(stub.OpenEmergencyGrant(no_reason, metadata=rabat)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    ask = intake_pb2.OpenEmergencyGrantRequest(case_id=case_id, reason=RELOCATED, note=GRANT_NOTE)
    officer = bearer(token_for(Role.INTAKE_OFFICER))
    assert await _code(stub.OpenEmergencyGrant(ask, metadata=officer)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await _code(stub.OpenEmergencyGrant(ask, metadata=fes)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )

    grant = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    window = grant.expires_at.ToDatetime(UTC) - grant.granted_at.ToDatetime(UTC)
    assert window == timedelta(hours=3)
    assert grant.reason == RELOCATED and grant.case_id == case_id

    # Within the window: that case, for her — not another case, not a colleague.
    assert (await stub.GetCase(read, metadata=rabat)).case.survivor.alias == ALIAS
    other = intake_pb2.GetCaseRequest(case_id=other_case)
    assert await _code(stub.GetCase(other, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(stub.GetCase(read, metadata=colleague)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )

    # Lists stay regional, grant or not.
    listed = intake_pb2.ListCasesRequest(region=FES)
    assert await _code(stub.ListCases(listed, metadata=rabat)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert not (await stub.ListCases(intake_pb2.ListCasesRequest(), metadata=rabat)).cases

    # Nobody ends it: past its window it opens nothing.
    clock.now += timedelta(hours=3, seconds=1)
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED

    # Audited: the grant with its reason, the read under it, the refusals.
    entries = [(e.action, e.actor, e.reason, e.target) for e in _entries(intake, case_id)]
    assert ("emergency_access.granted", "coord-rabat-1", "survivor_relocated", grant.grant_id) in (
        entries
    )
    assert ("case.read", "coord-rabat-1", "emergency_grant", grant.grant_id) in entries
    assert [a for a, who, _, _ in entries if who == "coord-rabat-1"].count("case.read_refused") == 2
    # The note is kept encrypted, and never in the audit log.
    raw = intake.scalar("SELECT note FROM emergency_grants WHERE grant_id = :g", g=grant.grant_id)
    assert raw.startswith("enc1:") and GRANT_NOTE not in raw
    assert GRANT_NOTE not in repr(_entries(intake, case_id))
    assert audit.verify(intake.process.database.engine).ok


async def test_a_revoked_grant_opens_nothing(intake: RunningSector) -> None:
    stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
    case_id = await _register(stub)
    rabat = bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-3"))
    ask = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case_id, reason=intake_pb2.EMERGENCY_REASON_IMMINENT_DANGER, ttl_seconds=600
    )
    grant = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    assert grant.expires_at.ToDatetime(UTC) - grant.granted_at.ToDatetime(UTC) == timedelta(
        minutes=10
    )
    read = intake_pb2.GetCaseRequest(case_id=case_id)
    assert (await stub.GetCase(read, metadata=rabat)).case.summary.case_id == case_id
    revoked = await stub.RevokeEmergencyGrant(
        intake_pb2.RevokeEmergencyGrantRequest(grant_id=grant.grant_id), metadata=rabat
    )
    assert revoked.grant.HasField("revoked_at")
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED
    too_long = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case_id, reason=RELOCATED, ttl_seconds=13 * 3600
    )
    assert await _code(stub.OpenEmergencyGrant(too_long, metadata=rabat)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    actions = [e.action for e in _entries(intake, case_id)]
    assert "emergency_access.revoked" in actions
