"""Case transfers end to end: intake's gRPC API, the REAL journey (the
journey worker on a Temporal dev server of the test's own, with a
seconds-scale `transfer_accept` deadline) and intake's own activity worker
recording the rungs of the ladder.

- accepted: ownership moves — the association that held the case is refused,
  the receiving centre reads it and acts on it; the flow is in the journey's
  status and timeline;
- without the survivor's consent: refused, naming the field;
- unanswered: reminder to the receiving centre, the coordinators, then the
  lapse — recorded by intake, the case staying with its holder;
- refused by the journey (a closure request is pending): undone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from masar import contract as c
from masar.platform.identity import Role
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, intake_pb2
from tests.conftest import DevServer, free_port
from tests.services.harness import error_field
from tests.services.intake.support import ALIAS, FES, Intake, key, registration, running_intake, ts
from tests.support_auth import bearer, token_for
from workflows.policy import parse_policy
from workflows.worker import build_worker

ORG_A, ORG_B = "org-assoc-fes-1", "org-centre-fes-2"
# Every wait long, but a transfer's: 4 s (reminder at 2 s, coordinators at
# 4 s, lapse at 8 s).
POLICY = "[ladder]\nreminder = 0.5\nescalate = 1.0\nexpire = 2.0\n" + "".join(
    f'[deadlines.{wait}]\ncritical = "{value}"\nhigh = "{value}"\n'
    f'medium = "{value}"\nlow = "{value}"\n'
    for wait, value in (
        ("shelter_accept", "7d"),
        ("shelter_checkin", "7d"),
        ("legal_accept", "7d"),
        ("employment_accept", "7d"),
        ("follow_up", "30d"),
        ("transfer_accept", "4s"),
    )
)


@dataclass
class Bed:
    intake: Intake
    who: dict[str, Any]

    async def journey(self, case_id: str) -> c.JourneyStatus:
        status: c.JourneyStatus = await self.intake.handle(case_id).query(
            c.QUERY_STATUS, result_type=c.JourneyStatus
        )
        return status

    async def until(self, check: Callable[[], Awaitable[Any]], *, within: float = 30.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            value = await check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError("not reached in time")
            await asyncio.sleep(0.2)

    async def register(self) -> str:
        request = registration(needs=[], consents=[])
        reply = await self.intake.stub.RegisterCase(request, metadata=self.who["a"])
        assert reply.journey_start == common_pb2.DELIVERY_STATE_DELIVERED
        return str(reply.case.summary.case_id)

    def ask(self, case_id: str, *, consent: bool = True) -> intake_pb2.RequestTransferRequest:
        return intake_pb2.RequestTransferRequest(
            case_id=case_id,
            to_organisation_id=ORG_B,
            reason=intake_pb2.TRANSFER_REASON_SPECIALISED_SERVICE,
            survivor_consents=consent,
            idempotency_key=key(),
        )


@pytest.fixture
async def bed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Bed]:
    server = DevServer(free_port())
    try:
        client = await connect_temporal(
            TemporalSettings(address=server.address, namespace=server.namespace)
        )
        async with (
            build_worker(client, parse_policy(POLICY)),
            running_intake(
                tmp_path,
                sqlite_url,
                temporal_address=server.address,
                journey_queue=c.JOURNEY_TASK_QUEUE,
                client=client,
                run_worker=True,
            ) as intake,
        ):
            who = {
                "a": bearer(token_for(Role.INTAKE_OFFICER, ORG_A, FES, subject="officer-a")),
                "b": bearer(token_for(Role.INTAKE_OFFICER, ORG_B, FES, subject="officer-b")),
                "coord": bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes")),
            }
            yield Bed(intake, who)
    finally:
        server.stop()


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call was not refused")


async def test_an_accepted_transfer_moves_the_case_and_the_old_holder_loses_it(bed: Bed) -> None:
    stub, who = bed.intake.stub, bed.who
    case_id = await bed.register()
    read = intake_pb2.GetCaseRequest(case_id=case_id)

    # Without her consent: refused, naming the field; nothing is recorded.
    error = await refused(stub.RequestTransfer(bed.ask(case_id, consent=False), metadata=who["a"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(error) == "survivor_consents"
    listed = await stub.ListTransfers(intake_pb2.ListTransfersRequest(), metadata=who["a"])
    assert not listed.transfers and not (await bed.journey(case_id)).transfers

    # With it: recorded, and the journey keeps the request under its deadline.
    asked = await stub.RequestTransfer(bed.ask(case_id), metadata=who["a"])
    assert asked.delivery == common_pb2.DELIVERY_STATE_DELIVERED
    transfer_id = asked.transfer.transfer_id
    assert asked.transfer.status == intake_pb2.TRANSFER_STATUS_PENDING
    assert asked.transfer.HasField("consent_recorded_at")
    status = await bed.journey(case_id)
    [pending] = status.transfers
    assert (pending.transfer_id, pending.status) == (transfer_id, c.TransferStatus.PENDING)
    assert (pending.from_organisation_id, pending.to_organisation_id) == (ORG_A, ORG_B)
    assert pending.reason is c.TransferReason.SPECIALISED_SERVICE

    # Centre B sees the request, not the case, until it accepts.
    error = await refused(stub.GetCase(read, metadata=who["b"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    seen = await stub.GetTransfer(
        intake_pb2.GetTransferRequest(transfer_id=transfer_id), metadata=who["b"]
    )
    assert seen.transfer.case_id == case_id
    # Only the organisation asked answers.
    decide = intake_pb2.DecideTransferRequest(
        transfer_id=transfer_id, accept=True, idempotency_key=key()
    )
    error = await refused(stub.DecideTransfer(decide, metadata=who["a"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    accepted = await stub.DecideTransfer(decide, metadata=who["b"])
    assert accepted.delivery == common_pb2.DELIVERY_STATE_DELIVERED
    assert accepted.transfer.status == intake_pb2.TRANSFER_STATUS_ACCEPTED
    assert accepted.case.holding_organisation_id == ORG_B
    assert accepted.case.source_organisation_id == ORG_A

    # The association that held it: refused, to read and to act; not in its list.
    error = await refused(stub.GetCase(read, metadata=who["a"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    follow_up = intake_pb2.RecordFollowUpRequest(
        case_id=case_id,
        contacted_at=ts(datetime.now(UTC)),
        channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
        idempotency_key=key(),
    )
    error = await refused(stub.RecordFollowUp(follow_up, metadata=who["a"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await stub.ListCases(intake_pb2.ListCasesRequest(), metadata=who["a"])
    assert case_id not in {s.case_id for s in mine.cases}

    # The centre: reads it all, and its changes reach the journey.
    case = (await stub.GetCase(read, metadata=who["b"])).case
    assert case.survivor.alias == ALIAS
    done = await stub.RecordFollowUp(follow_up, metadata=who["b"])
    assert done.delivery == common_pb2.DELIVERY_STATE_DELIVERED

    status = await bed.journey(case_id)
    [moved] = status.transfers
    assert moved.status is c.TransferStatus.ACCEPTED and moved.decided_at is not None
    events = [e.event for e in status.timeline]
    assert events.index("transfer_requested") < events.index("transfer_accepted")
    assert events.index("transfer_accepted") < events.index("follow_up_recorded")
    # The intake side of it: the case's changes, for whoever holds it now.
    kinds = [ch.kind for ch in case.changes]
    assert kinds == [
        intake_pb2.CASE_CHANGE_KIND_TRANSFER_REQUESTED,
        intake_pb2.CASE_CHANGE_KIND_TRANSFER_DECIDED,
    ]
    assert {ch.transfer_id for ch in case.changes} == {transfer_id}


async def test_an_unanswered_transfer_climbs_the_ladder_and_lapses(bed: Bed) -> None:
    stub, who = bed.intake.stub, bed.who
    case_id = await bed.register()
    asked = await stub.RequestTransfer(bed.ask(case_id), metadata=who["a"])
    transfer_id = asked.transfer.transfer_id
    get = intake_pb2.GetTransferRequest(transfer_id=transfer_id)

    async def lapsed() -> bool:
        reply = await stub.GetTransfer(get, metadata=who["a"])
        return bool(reply.transfer.status == intake_pb2.TRANSFER_STATUS_LAPSED)

    await bed.until(lapsed)
    # The rungs, in intake's inbox: the reminder addressed to the centre...
    inbox = intake_pb2.ListEscalationsRequest(case_id=case_id)
    to_b = (await stub.ListEscalations(inbox, metadata=who["b"])).escalations
    assert [(e.level, e.organisation_id, e.transfer_id) for e in to_b] == [(1, ORG_B, transfer_id)]
    # ... and every rung for the region's coordinators and the holder.
    for person in ("coord", "a"):
        rungs = (await stub.ListEscalations(inbox, metadata=who[person])).escalations
        assert sorted(e.level for e in rungs) == [1, 2, 3], person
        assert {e.wait for e in rungs} == {c.TRANSFER_ACCEPT_WAIT}

    status = await bed.journey(case_id)
    [gone] = status.transfers
    assert gone.status is c.TransferStatus.LAPSED and gone.escalation_level == c.LEVEL_REGIONAL
    ladder = [e.event for e in status.timeline if transfer_id in (e.detail or "")]
    assert ladder == ["transfer_requested", "reminder", "escalated", "transfer_lapsed"]

    # Too late to answer; the case stays with the association.
    late = intake_pb2.DecideTransferRequest(
        transfer_id=transfer_id, accept=True, idempotency_key=key()
    )
    error = await refused(stub.DecideTransfer(late, metadata=who["b"]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    read = intake_pb2.GetCaseRequest(case_id=case_id)
    held = (await stub.GetCase(read, metadata=who["a"])).case.summary
    assert held.holding_organisation_id == ORG_A


async def test_a_transfer_the_journey_refuses_is_undone(bed: Bed) -> None:
    stub, who = bed.intake.stub, bed.who
    case_id = await bed.register()
    closure = intake_pb2.RequestClosureRequest(
        case_id=case_id, reason=intake_pb2.CLOSURE_REASON_MOVED, idempotency_key=key()
    )
    await stub.RequestClosure(closure, metadata=who["a"])

    # A closure request is pending: the journey refuses the transfer.
    error = await refused(stub.RequestTransfer(bed.ask(case_id), metadata=who["a"]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = await stub.ListTransfers(
        intake_pb2.ListTransfersRequest(case_id=case_id), metadata=who["a"]
    )
    assert not listed.transfers
    case = (await stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id), metadata=who["a"])).case
    [requested] = [
        ch for ch in case.changes if ch.kind == intake_pb2.CASE_CHANGE_KIND_TRANSFER_REQUESTED
    ]
    assert requested.rejected
    assert case.summary.holding_organisation_id == ORG_A
    assert not (await bed.journey(case_id)).transfers
