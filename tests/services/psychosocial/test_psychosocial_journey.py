"""The psychosocial service with a real Temporal dev server and a STAND-IN
journey (tests.services.journey_stub.StubJourney, not workflows.journey):
its activities run against the real service; the decision, the first
session attended (STARTED) and the end of support reach the stand-in, and
nothing else does (no session or plan detail ever leaves the service)."""

from __future__ import annotations

import functools
import secrets
from dataclasses import asdict

import grpc
import grpc.aio
import pytest
from temporalio.worker import Worker

from masar import contract
from masar.contract import PsychosocialNeeds, ReferralRequest, Risk, Sector
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, psychosocial_pb2, psychosocial_pb2_grpc
from services.psychosocial.app import MIGRATIONS_DIR, build_components
from tests.services.harness import running_sector, sector_settings
from tests.services.journey_stub import (
    ActivityCall,
    CallSectorActivity,
    StubJourney,
    seen_events,
    start_stub_journey,
)
from tests.services.psychosocial.helpers import (
    FES,
    MISSED,
    create_provider,
    days_ago,
    decide,
    key,
    session,
)
from tests.support_auth import GrantingConsent

consenting = functools.partial(build_components, consent=GrantingConsent())
DELIVERED = common_pb2.DELIVERY_STATE_DELIVERED
G = psychosocial_pb2


async def test_psychosocial_activities_and_steps_with_a_stub_journey(
    tmp_path, database_url, temporal_dev_server
) -> None:
    token = secrets.token_hex(4)
    sector_queue = f"masar-psychosocial-{token}"
    caller_queue = f"caller-{token}"
    settings = sector_settings(
        "psychosocial",
        tmp_path,
        database_url,
        temporal_address=temporal_dev_server.address,
        task_queue=sector_queue,
    )
    client = await connect_temporal(
        TemporalSettings(address=temporal_dev_server.address, namespace="default")
    )
    async with (
        running_sector(settings, consenting, MIGRATIONS_DIR, run_worker=True) as running,
        Worker(client, task_queue=caller_queue, workflows=[CallSectorActivity, StubJourney]),
    ):
        stub = psychosocial_pb2_grpc.PsychosocialServiceStub(running.channel)
        provider = await create_provider(stub)

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

        def request(case: str) -> ReferralRequest:
            return ReferralRequest(
                case_id=case,
                sector=Sector.PSYCHOSOCIAL,
                region=FES,
                risk=Risk.MEDIUM,
                idempotency_key=f"journey-{case}/psychosocial/1",
                psychosocial=PsychosocialNeeds(support=["counselling"], languages=["ary"]),
            )

        case = secrets.token_hex(8)
        created = await call(contract.PSYCHOSOCIAL_REQUEST_REFERRAL, request(case))
        assert isinstance(created, dict)
        assert created["provider_id"] == provider.provider_id
        rid = created["referral_id"]

        journey = await start_stub_journey(client, case, caller_queue)
        try:
            assert (await decide(stub, rid)).delivery == DELIVERED
            missed = await stub.RecordSession(session(rid, attendance=MISSED, held_at=days_ago(5)))
            assert missed.delivery == common_pb2.DELIVERY_STATE_UNSPECIFIED
            first = await stub.RecordSession(session(rid, held_at=days_ago(4)))
            assert first.delivery == DELIVERED
            await stub.RecordSession(session(rid, held_at=days_ago(2)))
            await stub.SetSupportPlan(
                G.SetSupportPlanRequest(
                    referral_id=rid, goals=[G.SUPPORT_GOAL_TRAUMA_RECOVERY], idempotency_key=key()
                )
            )
            done = await stub.CompleteSupport(
                G.CompleteSupportRequest(
                    referral_id=rid, outcome=G.SUPPORT_OUTCOME_ENDED_BY_HER, idempotency_key=key()
                )
            )
            assert done.delivery == DELIVERED
            events = await seen_events(journey)
            assert [(e.update, e.milestone, e.detail) for e in events] == [
                (contract.UPDATE_REFERRAL_DECISION, None, None),
                (contract.UPDATE_REFERRAL_MILESTONE, "STARTED", None),
                (contract.UPDATE_REFERRAL_MILESTONE, "COMPLETED", "support_ended_by_her"),
            ]
        finally:
            await journey.signal(StubJourney.finish)

        # A journey that refuses the first session: it is undone, staff hear "no".
        other = secrets.token_hex(8)
        second = await call(contract.PSYCHOSOCIAL_REQUEST_REFERRAL, request(other))
        assert isinstance(second, dict)
        second_id = second["referral_id"]
        accepting = await start_stub_journey(client, other, caller_queue)
        await decide(stub, second_id)
        await accepting.signal(StubJourney.finish)
        await accepting.result()
        refusing = await start_stub_journey(client, other, caller_queue, refuse=[second_id])
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RecordSession(session(second_id))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            file = (await stub.GetSupportFile(G.GetSupportFileRequest(referral_id=second_id))).file
            assert list(file.sessions) == []
            assert file.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
        finally:
            await refusing.signal(StubJourney.finish)
