"""Legal aid with a real Temporal dev server and a STAND-IN journey
(tests.services.journey_stub.StubJourney, not workflows.journey): staff
decisions and milestones reach the stand-in (also when Temporal was down when
they were made), a refused update is undone, and the legal activities run
against the real service. The real journey is test_legal_contract.py's."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from masar import contract
from masar.contract import LegalNeeds, ReferralRequest, ReferralStatus, Risk, Sector
from masar.platform.temporal import client_options
from masar.v1 import common_pb2, legal_pb2
from services.legal.app import MIGRATIONS_DIR, build_components
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
from tests.services.legal.helpers import (
    COMPLAINT,
    FES,
    PROTECTION,
    ago,
    ahead,
    aid_request,
    case_id,
    create_provider,
    decide,
    first_meeting,
    key,
    stub_of,
)
from tests.support_auth import GrantingConsent

# Intake does not run here: the activities get their consent proofs from a stand-in.
consenting = functools.partial(build_components, consent=GrantingConsent())

DELIVERED = common_pb2.DELIVERY_STATE_DELIVERED
QUEUED = common_pb2.DELIVERY_STATE_QUEUED


@pytest.fixture
async def client(temporal_dev_server) -> Client:
    return await Client.connect(temporal_dev_server.address, **client_options())


@pytest.fixture
async def journeys(client) -> AsyncIterator[str]:
    """A worker for the stub journey and the activity caller, on its own queue."""
    task_queue = f"legal-test-{secrets.token_hex(4)}"
    async with Worker(client, task_queue=task_queue, workflows=[StubJourney, CallSectorActivity]):
        yield task_queue


async def events_until(handle, count: int, within: float = 20.0) -> list[SeenEvent]:
    """The journey's events once it has seen `count` (or what it saw in time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        events = await seen_events(handle)
        if len(events) >= count or loop.time() > deadline:
            return events
        await asyncio.sleep(0.2)


async def test_decisions_reach_the_stub_journey_also_after_temporal_was_down(
    tmp_path, database_url, temporal_dev_server, client, journeys
) -> None:
    gate = TcpGate(free_port(), temporal_dev_server.address)  # closed: Temporal is "down"
    settings = sector_settings("legal", tmp_path, database_url, temporal_address=gate.address)
    try:
        async with running_sector(settings, build_components, MIGRATIONS_DIR) as legal:
            stub = stub_of(legal)
            await create_provider(stub)
            case = case_id()
            journey = await start_stub_journey(client, case, journeys)
            request = aid_request(case=case, matters=[COMPLAINT])
            rid = (await stub.RequestLegalAid(request)).referral.referral_id

            accepted = await decide(stub, rid)
            assert accepted.delivery == QUEUED
            assert accepted.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
            assert legal.scalar("SELECT status FROM outbox") == "QUEUED"

            await gate.open()  # Temporal is back: the outbox delivers the decision.
            (seen,) = await events_until(journey, 1)
            assert (seen.update, seen.referral_id, seen.accepted) == (
                contract.UPDATE_REFERRAL_DECISION,
                rid,
                True,
            )

            met = await first_meeting(stub, rid)
            assert met.delivery == DELIVERED
            closed = await stub.CloseMatter(
                legal_pb2.CloseMatterRequest(
                    referral_id=rid,
                    matter=COMPLAINT,
                    outcome=legal_pb2.MATTER_OUTCOME_CONVICTION,
                    closed_at=ago(minutes=1),
                    idempotency_key=key(),
                )
            )
            assert closed.delivery == DELIVERED
            assert closed.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
            events = await seen_events(journey)
            assert [(e.update, e.milestone, e.detail) for e in events[1:]] == [
                (contract.UPDATE_REFERRAL_MILESTONE, "STARTED", None),
                (contract.UPDATE_REFERRAL_MILESTONE, "COMPLETED", "CONVICTION"),
            ]
            assert len({e.event_id for e in events}) == 3

            # The journey refuses a stale referral: staff hear "no", nothing stays changed.
            stale_case = case_id()
            stale = (await stub.RequestLegalAid(aid_request(case=stale_case))).referral
            refusing = await start_stub_journey(
                client, stale_case, journeys, refuse=[stale.referral_id]
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await decide(stub, stale.referral_id)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            got = await stub.GetReferral(
                common_pb2.GetReferralRequest(referral_id=stale.referral_id)
            )
            assert got.referral.status == common_pb2.REFERRAL_STATUS_PENDING
            assert await seen_events(refusing) == []

            # No journey at all for the case: refused too.
            orphan = (await stub.RequestLegalAid(aid_request())).referral
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await decide(stub, orphan.referral_id, accept=False, reason=1)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            for handle in (journey, refusing):
                await handle.terminate()
    finally:
        await gate.close()


async def test_a_breach_reaches_the_stub_journey_and_a_refused_one_is_undone(
    tmp_path, database_url, temporal_dev_server, client, journeys
) -> None:
    """A protection order recorded as BREACHED is the contract's
    ProtectionOrderBreach (issue 15, item 6), delivered at once; a breach the
    journey refuses leaves the order as it was."""
    settings = sector_settings(
        "legal", tmp_path, database_url, temporal_address=temporal_dev_server.address
    )
    order_ = legal_pb2.ProtectionOrderStatus

    async def granted_order(stub: Any, rid: str) -> str:
        order = await stub.RecordProtectionOrder(
            legal_pb2.RecordProtectionOrderRequest(
                referral_id=rid,
                measure=legal_pb2.PROTECTION_MEASURE_NO_CONTACT_DURING_PROSECUTION,
                status=order_.PROTECTION_ORDER_STATUS_GRANTED,
                at=ago(hours=2),
                effective_until=ahead(days=90),
                idempotency_key=key(),
            )
        )
        return str(order.order.order_id)

    breached_at = ago(minutes=30)

    def breach(stub: Any, rid: str, order_id: str, idem: str | None = None) -> Any:
        return stub.RecordProtectionOrder(
            legal_pb2.RecordProtectionOrderRequest(
                referral_id=rid,
                order_id=order_id,
                status=order_.PROTECTION_ORDER_STATUS_BREACHED,
                at=breached_at,
                idempotency_key=idem or key(),
            )
        )

    async with running_sector(settings, build_components, MIGRATIONS_DIR) as legal:
        stub = stub_of(legal)
        await create_provider(stub)
        case = case_id()
        journey = await start_stub_journey(client, case, journeys)
        request = aid_request(case=case, matters=[PROTECTION, COMPLAINT])
        rid = (await stub.RequestLegalAid(request)).referral.referral_id
        assert (await decide(stub, rid)).delivery == DELIVERED
        order_id = await granted_order(stub, rid)
        breach_key = key()
        breached = (await breach(stub, rid, order_id, breach_key)).order
        assert breached.status == order_.PROTECTION_ORDER_STATUS_BREACHED
        assert breached.breaches == 1
        # Delivered once, also when staff send it again.
        assert (await breach(stub, rid, order_id, breach_key)).order.breaches == 1
        events = await events_until(journey, 2)
        assert [(e.update, e.referral_id) for e in events] == [
            (contract.UPDATE_REFERRAL_DECISION, rid),
            (contract.UPDATE_BREACH, rid),
        ]
        assert (
            legal.scalar(
                "SELECT status FROM outbox WHERE update_name = 'protection_order_breached'"
            )
            == "DELIVERED"
        )
        await journey.terminate()

        # The journey refuses it: staff hear "no", the order stays as it was.
        other = case_id()
        accepting = await start_stub_journey(client, other, journeys)
        second = (await stub.RequestLegalAid(aid_request(case=other))).referral.referral_id
        await decide(stub, second)
        second_order = await granted_order(stub, second)
        await accepting.terminate()
        refusing = await start_stub_journey(client, other, journeys, refuse=[second])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await breach(stub, second, second_order)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=second))
        (kept,) = file.protection_orders
        assert (kept.status, kept.breaches) == (order_.PROTECTION_ORDER_STATUS_GRANTED, 0)
        assert not kept.HasField("breached_at")
        assert await seen_events(refusing) == []
        await refusing.terminate()


async def call_activity(client: Client, task_queue: str, name: str, arg: Any) -> Any:
    return await client.execute_workflow(
        CallSectorActivity.run,
        ActivityCall(
            activity=name,
            task_queue=settings_queue(task_queue),
            arg=arg,
        ),
        id=f"call-legal-{secrets.token_hex(6)}",
        task_queue=task_queue,
    )


def settings_queue(test_queue: str) -> str:
    """The legal worker's queue in these tests (one per test run)."""
    return f"{test_queue}-legal"


async def test_legal_activities_run_against_the_service(
    tmp_path, sqlite_url, temporal_dev_server, client, journeys
) -> None:
    settings = sector_settings(
        "legal",
        tmp_path,
        sqlite_url,
        temporal_address=temporal_dev_server.address,
        task_queue=settings_queue(journeys),
    )
    async with running_sector(settings, consenting, MIGRATIONS_DIR, run_worker=True) as legal:
        stub = stub_of(legal)
        provider = await create_provider(stub)
        case = case_id()
        request = ReferralRequest(
            case_id=case,
            sector=Sector.LEGAL,
            region=FES,
            risk=Risk.CRITICAL,
            idempotency_key=f"journey-{case}-legal-1",
            legal=LegalNeeds(matters=["protection_order", "criminal_complaint"], languages=["ary"]),
        )
        created = await call_activity(client, journeys, contract.LEGAL_REQUEST_REFERRAL, request)
        assert created["provider_id"] == provider.provider_id and created["region"] == FES
        again = await call_activity(client, journeys, contract.LEGAL_REQUEST_REFERRAL, request)
        assert again == created
        rid = created["referral_id"]
        file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=rid))
        assert [m.matter for m in file.matters] == [
            legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
            legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
        ]
        assert file.referral.risk == common_pb2.RISK_LEVEL_CRITICAL

        reminder = contract.ProviderReminder(referral_id=rid, idempotency_key=key())
        await call_activity(client, journeys, contract.LEGAL_REMIND_PROVIDER, reminder)
        await call_activity(client, journeys, contract.LEGAL_REMIND_PROVIDER, reminder)
        closure = contract.ReferralClosure(
            referral_id=rid, status=ReferralStatus.REROUTED, idempotency_key=key()
        )
        await call_activity(client, journeys, contract.LEGAL_CLOSE_REFERRAL, closure)
        got = (await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=rid))).referral
        assert (got.reminders, got.status) == (1, common_pb2.REFERRAL_STATUS_REROUTED)

        purge = contract.CasePurge(case_id=case, sector=Sector.LEGAL, idempotency_key=key())
        result = await call_activity(client, journeys, contract.LEGAL_PURGE_CASE, purge)
        assert result == {"referrals_withdrawn": 0, "records_purged": 1}

        # Business refusals are non-retryable, typed application errors.
        refusals = [
            (
                ReferralRequest(
                    case_id=case,
                    sector=Sector.LEGAL,
                    region=FES,
                    risk=Risk.HIGH,
                    idempotency_key=key(),
                    exclude_provider_ids=[provider.provider_id],
                    legal=LegalNeeds(matters=["protection_order"]),
                ),
                contract.ERR_NO_PROVIDER,
            ),
            (
                ReferralRequest(
                    case_id=case,
                    sector=Sector.LEGAL,
                    region=FES,
                    risk=Risk.HIGH,
                    idempotency_key=key(),
                    legal=LegalNeeds(matters=["divination"]),
                ),
                contract.ERR_INVALID,
            ),
        ]
        for refused, error_type in refusals:
            with pytest.raises(WorkflowFailureError) as err:
                await call_activity(client, journeys, contract.LEGAL_REQUEST_REFERRAL, refused)
            cause = err.value.cause
            assert isinstance(cause, ActivityError)
            assert isinstance(cause.cause, ApplicationError)
            assert cause.cause.type == error_type and cause.cause.non_retryable
        with pytest.raises(WorkflowFailureError) as err:
            await call_activity(
                client,
                journeys,
                contract.LEGAL_REMIND_PROVIDER,
                contract.ProviderReminder(referral_id="leg-0123456789abcdef", idempotency_key="k"),
            )
        assert isinstance(err.value.cause, ActivityError)
        assert isinstance(err.value.cause.cause, ApplicationError)
        assert err.value.cause.cause.type == contract.ERR_UNKNOWN_REFERRAL
        assert legal.count("referrals") == 1
