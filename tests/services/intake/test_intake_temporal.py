"""Intake and Temporal: registering while Temporal is down, and the
"intake.record_escalation" activity run by the real dev server against the
real service."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from masar.contract import (
    ERR_UNKNOWN_CASE,
    LEVEL_COORDINATOR,
    UPDATE_CONSENT,
    EscalationNotice,
    Sector,
    journey_workflow_id,
)
from masar.v1 import common_pb2, intake_pb2
from tests.conftest import free_port
from tests.services.intake.support import (
    FES,
    eventually,
    key,
    registration,
    running_intake,
)
from tests.services.journey_stub import ActivityCall, CallSectorActivity, TcpGate
from tests.support_auth import RIGHTFUL_ORGANISATION


async def test_registration_while_temporal_is_down_starts_the_journey_when_it_is_back(
    tmp_path, database_url, temporal_dev_server, temporal_client: Client, journey_queue: str
) -> None:
    gate = TcpGate(free_port(), temporal_dev_server.address)  # closed: Temporal "down"
    try:
        async with running_intake(
            tmp_path,
            database_url,
            temporal_address=gate.address,
            journey_queue=journey_queue,
            client=temporal_client,
        ) as intake:
            reply = await intake.stub.RegisterCase(registration())
            case_id = reply.case.summary.case_id
            assert reply.journey_start == common_pb2.DELIVERY_STATE_QUEUED
            assert reply.case.summary.journey == intake_pb2.JOURNEY_STATE_START_PENDING
            # The case is saved and can change while the journey waits to start.
            withdrawn = await intake.stub.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_SHELTER, idempotency_key=key()
                )
            )
            assert withdrawn.delivery == common_pb2.DELIVERY_STATE_QUEUED
            assert intake.running.count("cases") == 1

            await gate.open()  # Temporal is back: the dispatcher starts, then delivers.

            async def caught_up() -> bool:
                view = await intake.stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))
                summary, changes = view.case.summary, view.case.changes
                return summary.journey == intake_pb2.JOURNEY_STATE_STARTED and all(
                    c.delivery == common_pb2.DELIVERY_STATE_DELIVERED for c in changes
                )

            await eventually(caught_up)
            journey, _ = await intake.journey_input(case_id)
            # Started with the facts as registered; the withdrawal followed as an update.
            assert journey.consents == [Sector.SHELTER, Sector.LEGAL]
            # The journey knows who holds the case: decisions and last rungs reach it.
            assert journey.holding_organisation_id == RIGHTFUL_ORGANISATION
            seen = await intake.journey_updates(case_id)
            assert [(s.update, s.event_id) for s in seen] == [(UPDATE_CONSENT, withdrawn.change_id)]
            assert intake.running.scalar("SELECT runs FROM journey_starts") == 1
    finally:
        await gate.close()


async def test_record_escalation_activity_against_the_real_service(
    tmp_path, sqlite_url, temporal_dev_server, temporal_client: Client, journey_queue: str
) -> None:
    activity_queue = f"intake-test-activities-{secrets.token_hex(4)}"
    caller_queue = f"intake-test-caller-{secrets.token_hex(4)}"
    async with (
        running_intake(
            tmp_path,
            sqlite_url,
            temporal_address=temporal_dev_server.address,
            journey_queue=journey_queue,
            client=temporal_client,
            run_worker=True,  # the service's own activity worker, as in production
            task_queue=activity_queue,
        ) as intake,
        Worker(temporal_client, task_queue=caller_queue, workflows=[CallSectorActivity]),
    ):
        case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
        notice = EscalationNotice(
            case_id=case_id,
            region=FES,
            level=LEVEL_COORDINATOR,
            wait="shelter_accept",
            due_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5),
            idempotency_key=f"{journey_workflow_id(case_id)}/escalate/1",
            referral_id="shr-00112233aabbccdd",
        )

        async def run(arg: EscalationNotice) -> None:
            await temporal_client.execute_workflow(
                CallSectorActivity.run,
                ActivityCall(
                    activity="intake.record_escalation", task_queue=activity_queue, arg=arg
                ),
                id=f"intake-test-call-{secrets.token_hex(6)}",
                task_queue=caller_queue,
                execution_timeout=timedelta(seconds=60),
            )

        await run(notice)
        await run(notice)  # a retried notice is recorded once
        inbox = await intake.stub.ListEscalations(
            intake_pb2.ListEscalationsRequest(region=FES, case_id=case_id)
        )
        [escalation] = inbox.escalations
        assert (escalation.level, escalation.wait) == (LEVEL_COORDINATOR, "shelter_accept")
        assert escalation.referral_id == "shr-00112233aabbccdd"
        assert escalation.due_at.ToDatetime(tzinfo=UTC) == notice.due_at

        unknown = EscalationNotice(
            case_id="0123456789abcdef",
            region=FES,
            level=LEVEL_COORDINATOR,
            wait="legal_accept",
            due_at=notice.due_at,
            idempotency_key="journey-0123456789abcdef/escalate/1",
        )
        with pytest.raises(WorkflowFailureError) as err:
            await run(unknown)
        cause = err.value.cause
        assert isinstance(cause, ActivityError)
        assert isinstance(cause.cause, ApplicationError)
        assert cause.cause.type == ERR_UNKNOWN_CASE
        assert cause.cause.non_retryable
        assert intake.running.count("escalations") == 1
