"""Emergency access through intake's API: a coordinator opens a case outside
her region only under a grant she asked for with a reason and a SECOND
person approved (a coordinator of the case's region, or a supervisor of the
organisation holding it — never herself); the grant covers that case, for
her, for its window (3 h by default) counted from the approval, and then
expires by itself — with intake's clock, injected here, moved past it. Only
its holder, its approver or such a supervisor revokes it. Every step is
audited."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
PENDING = intake_pb2.EMERGENCY_GRANT_STATUS_PENDING
ACTIVE = intake_pb2.EMERGENCY_GRANT_STATUS_ACTIVE
REFUSED = intake_pb2.EMERGENCY_GRANT_STATUS_REFUSED
REVOKED = intake_pb2.EMERGENCY_GRANT_STATUS_REVOKED
ORG = "org-assoc-a"
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


async def _approved(stub: intake_pb2_grpc.IntakeServiceStub, grant: Any) -> Any:
    """A coordinator of the case's region (Fès) approves the request."""
    grant_id = grant if isinstance(grant, str) else grant.grant_id
    approver = bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes-5"))
    reply = await stub.ApproveEmergencyGrant(
        intake_pb2.ApproveEmergencyGrantRequest(grant_id=grant_id), metadata=approver
    )
    return reply.grant


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
    officer = bearer(token_for(Role.INTAKE_OFFICER, org="org-officer"))
    assert await _code(stub.OpenEmergencyGrant(ask, metadata=officer)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await _code(stub.OpenEmergencyGrant(ask, metadata=fes)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )

    requested = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    assert requested.status == PENDING and not requested.HasField("granted_at")
    # Asked is not approved: the case stays closed to her.
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED
    # Four eyes: never she herself, nor a coordinator of another region.
    decide = intake_pb2.ApproveEmergencyGrantRequest(grant_id=requested.grant_id)
    assert await _code(stub.ApproveEmergencyGrant(decide, metadata=rabat)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await _code(stub.ApproveEmergencyGrant(decide, metadata=colleague)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # A coordinator of the case's region approves, an hour later: the window starts then.
    clock.now += timedelta(hours=1)
    grant = (await stub.ApproveEmergencyGrant(decide, metadata=fes)).grant
    assert grant.status == ACTIVE and grant.decided_by == "coord-fes-1"
    assert grant.granted_at.ToDatetime(UTC) == clock.now
    window = grant.expires_at.ToDatetime(UTC) - grant.granted_at.ToDatetime(UTC)
    assert window == timedelta(hours=3)
    assert grant.reason == RELOCATED and grant.case_id == case_id
    assert await _code(stub.ApproveEmergencyGrant(decide, metadata=fes)) == (
        grpc.StatusCode.FAILED_PRECONDITION  # decided once
    )

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

    # Audited: the request with its reason, its approval, the read under it,
    # the refusals (before the grant, before its approval, after its window),
    # and the approvals the rules refused.
    entries = [(e.action, e.actor, e.reason, e.target) for e in _entries(intake, case_id)]
    assert (
        "emergency_access.requested",
        "coord-rabat-1",
        "survivor_relocated",
        grant.grant_id,
    ) in entries
    assert (
        "emergency_access.approved",
        "coord-fes-1",
        "survivor_relocated",
        grant.grant_id,
    ) in entries
    assert ("case.read", "coord-rabat-1", "emergency_grant", grant.grant_id) in entries
    assert [a for a, who, _, _ in entries if who == "coord-rabat-1"].count("case.read_refused") == 3
    denied = [(who, why) for a, who, why, _ in entries if a == "emergency_access.denied"]
    assert denied == [("coord-rabat-1", "approve"), ("coord-rabat-2", "approve")]
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
    requested = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    assert requested.ttl_seconds == 600
    grant = await _approved(stub, requested.grant_id)
    assert grant.expires_at.ToDatetime(UTC) - grant.granted_at.ToDatetime(UTC) == timedelta(
        minutes=10
    )
    read = intake_pb2.GetCaseRequest(case_id=case_id)
    assert (await stub.GetCase(read, metadata=rabat)).case.summary.case_id == case_id
    revoke = intake_pb2.RevokeEmergencyGrantRequest(grant_id=grant.grant_id)
    # Not any coordinator: another of the case's region (not its approver),
    # another of hers; nor another organisation's supervisor.
    for outsider in (
        bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes-other")),
        bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-other")),
        bearer(token_for(Role.SUPERVISOR, "org-elsewhere", FES, subject="super-elsewhere")),
    ):
        assert await _code(stub.RevokeEmergencyGrant(revoke, metadata=outsider)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    assert (await stub.GetCase(read, metadata=rabat)).case.summary.case_id == case_id
    revoked = await stub.RevokeEmergencyGrant(revoke, metadata=rabat)  # her own
    assert revoked.grant.HasField("revoked_at") and revoked.grant.status == REVOKED
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED
    too_long = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case_id, reason=RELOCATED, ttl_seconds=13 * 3600
    )
    assert await _code(stub.OpenEmergencyGrant(too_long, metadata=rabat)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    actions = [e.action for e in _entries(intake, case_id)]
    assert "emergency_access.revoked" in actions
    assert actions.count("emergency_access.denied") == 3


async def test_approvers_and_supervisors_revoke_and_lists_are_scoped(
    intake: RunningSector, clock: Clock
) -> None:
    stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
    # Held by the organisation of the officer who registered it.
    officer = bearer(token_for(Role.INTAKE_OFFICER, ORG, FES, subject="officer-a"))
    case_id = str((await stub.RegisterCase(registration(), metadata=officer)).case.summary.case_id)
    rabat = bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-5"))
    fes = bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes-5"))
    supervisor = bearer(token_for(Role.SUPERVISOR, ORG, FES, subject="super-a"))
    read = intake_pb2.GetCaseRequest(case_id=case_id)
    ask = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case_id, reason=intake_pb2.EMERGENCY_REASON_COVERING_ABSENCE
    )

    # The holder's supervisor approves; then the approver revokes it.
    first = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    approved = await stub.ApproveEmergencyGrant(
        intake_pb2.ApproveEmergencyGrantRequest(grant_id=first.grant_id), metadata=supervisor
    )
    assert approved.grant.status == ACTIVE and approved.grant.decided_by == "super-a"
    assert (await stub.GetCase(read, metadata=rabat)).case.summary.case_id == case_id
    revoke = intake_pb2.RevokeEmergencyGrantRequest(grant_id=first.grant_id)
    assert (await stub.RevokeEmergencyGrant(revoke, metadata=supervisor)).grant.status == REVOKED
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED

    # A coordinator of the region approves the next; she (its approver) revokes it.
    clock.now += timedelta(minutes=1)
    second = await _approved(stub, (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant)
    revoke = intake_pb2.RevokeEmergencyGrantRequest(grant_id=second.grant_id)
    assert (await stub.RevokeEmergencyGrant(revoke, metadata=fes)).grant.revoked_by == (
        "coord-fes-5"
    )
    # A third is refused: it never opens anything.
    clock.now += timedelta(minutes=1)
    third = (await stub.OpenEmergencyGrant(ask, metadata=rabat)).grant
    refused = await stub.RefuseEmergencyGrant(
        intake_pb2.RefuseEmergencyGrantRequest(grant_id=third.grant_id), metadata=fes
    )
    assert refused.grant.status == REFUSED
    assert await _code(stub.GetCase(read, metadata=rabat)) == grpc.StatusCode.PERMISSION_DENIED

    async def listed(who, **filters) -> list[str]:
        reply = await stub.ListEmergencyGrants(
            intake_pb2.ListEmergencyGrantsRequest(**filters), metadata=who
        )
        return [g.grant_id for g in reply.grants]

    everything = [third.grant_id, second.grant_id, first.grant_id]  # newest first
    assert await listed(rabat) == everything  # hers
    assert await listed(fes) == everything  # on her region's cases
    assert await listed(supervisor) == everything  # on her organisation's cases
    assert await listed(fes, status=REFUSED) == [third.grant_id]
    others = (
        bearer(token_for(Role.COORDINATOR, region="oriental", subject="coord-or")),
        bearer(token_for(Role.SUPERVISOR, "org-elsewhere", FES, subject="super-x")),
    )
    for other in others:
        assert await listed(other) == []
    assert await _code(
        stub.ListEmergencyGrants(intake_pb2.ListEmergencyGrantsRequest(), metadata=officer)
    ) == (grpc.StatusCode.PERMISSION_DENIED)
