"""The shelter service with a real Temporal dev server and a STAND-IN journey
(tests.services.journey_stub.StubJourney, not workflows.journey): staff
actions reach the stand-in (at once, or later through the outbox when
Temporal was down), a refusal from it is reverted, and the shelter's
activities run against the real service. The real journey is
test_shelter_contract.py's."""

from __future__ import annotations

import asyncio
import functools
import secrets
from dataclasses import asdict

import grpc
import grpc.aio
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from masar import contract
from masar.contract import (
    CasePurge,
    ProviderReminder,
    ReferralClosure,
    ReferralRequest,
    ReferralStatus,
    Risk,
    Sector,
    ShelterNeeds,
)
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, shelter_pb2, shelter_pb2_grpc
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.conftest import free_port
from tests.services.harness import running_sector, sector_settings
from tests.services.journey_stub import (
    ActivityCall,
    CallSectorActivity,
    SeenEvent,
    StubJourney,
    TcpGate,
    seen_events,
    start_stub_journey,
)
from tests.services.shelter.helpers import (
    FES,
    beds,
    create_shelter,
    decide,
    key,
    placement,
)
from tests.support_auth import GrantingConsent

# Intake does not run here: the activities get their consent proofs from a stand-in.
consenting = functools.partial(build_components, consent=GrantingConsent())


async def client_for(address: str) -> Client:
    return await connect_temporal(TemporalSettings(address=address, namespace="default"))


async def wait_for_events(handle, count: int, within: float = 20.0) -> list[SeenEvent]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        events = await seen_events(handle)
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.2)


async def test_decision_made_while_temporal_is_down_reaches_the_stub_journey_once(
    tmp_path, database_url, temporal_dev_server
) -> None:
    client = await client_for(temporal_dev_server.address)
    gate = TcpGate(free_port(), temporal_dev_server.address)
    journey_queue = f"stub-journey-{secrets.token_hex(4)}"
    settings = sector_settings("shelter", tmp_path, database_url, temporal_address=gate.address)
    async with (
        Worker(client, task_queue=journey_queue, workflows=[StubJourney]),
        running_sector(settings, build_components, MIGRATIONS_DIR) as running,
    ):
        stub = shelter_pb2_grpc.ShelterServiceStub(running.channel)
        await create_shelter(stub, capacity=2)
        case = secrets.token_hex(8)
        referral = (await stub.RequestPlacement(placement(case=case))).referral
        handle = await start_stub_journey(client, case, journey_queue)
        try:
            decision_key = key()
            reply = await decide(stub, referral.referral_id, idem=decision_key)
            assert reply.delivery == common_pb2.DELIVERY_STATE_QUEUED
            assert reply.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED

            await gate.open()  # Temporal is back: the dispatcher delivers.
            events = await wait_for_events(handle, 1)
            assert [(e.referral_id, e.accepted) for e in events] == [(referral.referral_id, True)]
            outbox = running.process.components.outbox
            assert outbox is not None
            event_id = events[0].event_id
            assert (
                running.scalar("SELECT status FROM outbox WHERE event_id = :e", e=event_id)
                == "DELIVERED"
            )

            # Staff retrying, and a delivery repeated after a crash, change nothing.
            again = await decide(stub, referral.referral_id, idem=decision_key)
            assert again.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            running.process.database.call(
                lambda s: s.execute(
                    outbox._table.update()  # a crash before the delivery was marked
                    .where(outbox._table.c.event_id == event_id)
                    .values(status="QUEUED")
                )
            )
            outcome, _ = await outbox.deliver(event_id)
            assert outcome.value == "DELIVERED"
            await asyncio.sleep(0.3)
            assert len(await seen_events(handle)) == 1
        finally:
            await handle.signal(StubJourney.finish)
    await gate.close()


async def test_stub_journey_answers_staff_at_once_and_a_refusal_is_reverted(
    tmp_path, database_url, temporal_dev_server
) -> None:
    client = await client_for(temporal_dev_server.address)
    journey_queue = f"stub-journey-{secrets.token_hex(4)}"
    settings = sector_settings(
        "shelter", tmp_path, database_url, temporal_address=temporal_dev_server.address
    )
    async with (
        Worker(client, task_queue=journey_queue, workflows=[StubJourney]),
        running_sector(settings, build_components, MIGRATIONS_DIR) as running,
    ):
        stub = shelter_pb2_grpc.ShelterServiceStub(running.channel)
        home = await create_shelter(stub, capacity=4)
        case = secrets.token_hex(8)
        good = (await stub.RequestPlacement(placement(case=case, household=2, children=1))).referral
        stale = (await stub.RequestPlacement(placement(case=case))).referral
        handle = await start_stub_journey(client, case, journey_queue, refuse=[stale.referral_id])
        try:
            accepted = await decide(stub, good.referral_id)
            assert accepted.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            checked_in = await stub.CheckIn(
                shelter_pb2.CheckInRequest(referral_id=good.referral_id, idempotency_key=key())
            )
            assert checked_in.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            events = await seen_events(handle)
            assert [(e.update, e.milestone) for e in events] == [
                (contract.UPDATE_REFERRAL_DECISION, None),
                (contract.UPDATE_REFERRAL_MILESTONE, "STARTED"),
            ]
            assert await beds(stub, home.shelter_id) == (0, 2, 2)

            # The journey refuses: staff hear it at once, and nothing stays changed.
            refused_key = key()
            for _ in range(2):  # a retry gets the same answer
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await decide(stub, stale.referral_id, idem=refused_key)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "StaleReferral" in (err.value.details() or "")
            got = await stub.GetReferral(
                common_pb2.GetReferralRequest(referral_id=stale.referral_id)
            )
            assert got.referral.status == common_pb2.REFERRAL_STATUS_PENDING
            assert not got.referral.HasField("decided_at")
            assert await beds(stub, home.shelter_id) == (0, 2, 2)
            assert len(await seen_events(handle)) == 2
        finally:
            await handle.signal(StubJourney.finish)

        # A referral whose journey is not running is refused the same way.
        orphan = (await stub.RequestPlacement(placement())).referral
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await decide(stub, orphan.referral_id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert await beds(stub, home.shelter_id) == (0, 2, 2)


async def test_shelter_activities_run_against_the_real_service(
    tmp_path, database_url, temporal_dev_server
) -> None:
    token = secrets.token_hex(4)
    sector_queue = f"masar-shelter-{token}"
    caller_queue = f"caller-{token}"
    settings = sector_settings(
        "shelter",
        tmp_path,
        database_url,
        temporal_address=temporal_dev_server.address,
        task_queue=sector_queue,
    )
    client = await client_for(temporal_dev_server.address)
    async with (
        running_sector(settings, consenting, MIGRATIONS_DIR, run_worker=True) as running,
        Worker(client, task_queue=caller_queue, workflows=[CallSectorActivity, StubJourney]),
    ):
        stub = shelter_pb2_grpc.ShelterServiceStub(running.channel)
        home = await create_shelter(stub, capacity=2)

        async def call(name: str, arg: object) -> object:
            return await client.execute_workflow(
                CallSectorActivity.run,
                ActivityCall(
                    activity=name,
                    task_queue=sector_queue,
                    arg=asdict(arg),  # type: ignore[call-overload]
                ),
                id=f"call-{secrets.token_hex(6)}",
                task_queue=caller_queue,
            )

        case = secrets.token_hex(8)
        request = ReferralRequest(
            case_id=case,
            sector=Sector.SHELTER,
            region=FES,
            risk=Risk.CRITICAL,
            idempotency_key=f"journey-{case}/request/1",
            shelter=ShelterNeeds(household_size=2, children=1),
        )
        created = await call(contract.SHELTER_REQUEST_REFERRAL, request)
        assert isinstance(created, dict)
        assert created["provider_id"] == home.shelter_id
        assert created["region"] == FES
        assert (
            await call(contract.SHELTER_REQUEST_REFERRAL, request) == created
        )  # retried: same one
        referral_id = created["referral_id"]
        journey = await start_stub_journey(client, case, caller_queue)

        await call(
            contract.SHELTER_REMIND_PROVIDER,
            ProviderReminder(referral_id=referral_id, idempotency_key=f"journey-{case}/remind/1"),
        )
        got = await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=referral_id))
        assert got.referral.reminders == 1
        assert got.referral.risk == common_pb2.RISK_LEVEL_CRITICAL

        await decide(stub, referral_id)
        assert await beds(stub, home.shelter_id) == (2, 0, 0)
        await call(
            contract.SHELTER_CLOSE_REFERRAL,
            ReferralClosure(
                referral_id=referral_id,
                status=ReferralStatus.REROUTED,
                idempotency_key=f"journey-{case}/close/1",
            ),
        )
        got = await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=referral_id))
        assert got.referral.status == common_pb2.REFERRAL_STATUS_REROUTED
        assert await beds(stub, home.shelter_id) == (0, 0, 2)

        second = await call(
            contract.SHELTER_REQUEST_REFERRAL,
            ReferralRequest(
                case_id=case,
                sector=Sector.SHELTER,
                region=FES,
                risk=Risk.HIGH,
                idempotency_key=f"journey-{case}/request/2",
            ),
        )
        purged = await call(
            contract.SHELTER_PURGE_CASE,
            CasePurge(case_id=case, sector=Sector.SHELTER, idempotency_key=f"journey-{case}/p"),
        )
        assert purged == {"referrals_withdrawn": 1, "records_purged": 2}
        assert isinstance(second, dict)
        await journey.signal(StubJourney.finish)

        # Business refusals fail at once, with the contract's error types.
        refusals = [
            (
                contract.SHELTER_REQUEST_REFERRAL,
                ReferralRequest(
                    case_id=case,
                    sector=Sector.SHELTER,
                    region=FES,
                    risk=Risk.HIGH,
                    idempotency_key=f"journey-{case}/request/3",
                    shelter=ShelterNeeds(household_size=5, children=4),
                ),
                contract.ERR_NO_PROVIDER,
            ),
            (
                contract.SHELTER_REQUEST_REFERRAL,
                ReferralRequest(
                    case_id=case,
                    sector=Sector.SHELTER,
                    region="atlantis",
                    risk=Risk.HIGH,
                    idempotency_key=f"journey-{case}/request/4",
                ),
                contract.ERR_INVALID,
            ),
            (
                contract.SHELTER_CLOSE_REFERRAL,
                ReferralClosure(
                    referral_id="shr-0123456789abcdef",
                    status=ReferralStatus.EXPIRED,
                    idempotency_key=f"journey-{case}/close/2",
                ),
                contract.ERR_UNKNOWN_REFERRAL,
            ),
        ]
        for name, arg, error_type in refusals:
            with pytest.raises(WorkflowFailureError) as err:
                await call(name, arg)
            activity_error = err.value.cause
            assert isinstance(activity_error, ActivityError)
            assert activity_error.retry_state is not None
            cause = activity_error.cause
            assert isinstance(cause, ApplicationError)
            assert cause.type == error_type
            assert cause.non_retryable
