"""The employment service with a real Temporal dev server and a STAND-IN
journey (tests.services.journey_stub.StubJourney, not workflows.journey): its
activities run against the real service, and staff steps reach the stand-in
at once. The real journey is test_employment_contract.py's."""

from __future__ import annotations

import functools
import secrets
from dataclasses import asdict

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from masar import contract
from masar.contract import (
    CasePurge,
    EmploymentNeeds,
    ProviderReminder,
    ReferralClosure,
    ReferralRequest,
    ReferralStatus,
    Risk,
    Sector,
)
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, employment_pb2, employment_pb2_grpc
from services.employment.app import MIGRATIONS_DIR, build_components
from tests.services.employment.helpers import (
    FES,
    create_programme,
    decide,
    key,
    seats,
)
from tests.services.harness import running_sector, sector_settings
from tests.services.journey_stub import (
    ActivityCall,
    CallSectorActivity,
    StubJourney,
    seen_events,
    start_stub_journey,
)
from tests.support_auth import GrantingConsent

# Intake does not run here: the activities get their consent proofs from a stand-in.
consenting = functools.partial(build_components, consent=GrantingConsent())


async def test_employment_activities_and_staff_steps_with_a_stub_journey(
    tmp_path, database_url, temporal_dev_server
) -> None:
    token = secrets.token_hex(4)
    sector_queue = f"masar-employment-{token}"
    caller_queue = f"caller-{token}"
    settings = sector_settings(
        "employment",
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
        stub = employment_pb2_grpc.EmploymentServiceStub(running.channel)
        programme = await create_programme(
            stub, seats=2, kind=employment_pb2.PROGRAMME_KIND_COOKERY
        )

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

        def request(n: int, **needs: list[str]) -> ReferralRequest:
            return ReferralRequest(
                case_id=case,
                sector=Sector.EMPLOYMENT,
                region=FES,
                risk=Risk.LOW,
                idempotency_key=f"journey-{case}/employment/{n}",
                employment=EmploymentNeeds(**needs),
            )

        created = await call(
            contract.EMPLOYMENT_REQUEST_REFERRAL, request(1, interests=["cookery"])
        )
        assert isinstance(created, dict)
        assert created["provider_id"] == programme.programme_id
        assert await call(
            contract.EMPLOYMENT_REQUEST_REFERRAL, request(1, interests=["cookery"])
        ) == (created)
        referral_id = created["referral_id"]

        # Staff steps reach the running journey synchronously.
        journey = await start_stub_journey(client, case, caller_queue)
        try:
            accepted = await decide(stub, referral_id)
            assert accepted.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            started = await stub.StartEnrolment(
                employment_pb2.StartEnrolmentRequest(referral_id=referral_id, idempotency_key=key())
            )
            assert started.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            placed = await stub.RecordJobPlacement(
                employment_pb2.RecordJobPlacementRequest(
                    referral_id=referral_id,
                    employer_type=employment_pb2.EMPLOYER_TYPE_SELF_EMPLOYED,
                    contract_type=employment_pb2.CONTRACT_TYPE_SELF_EMPLOYMENT,
                    idempotency_key=key(),
                )
            )
            assert placed.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            events = await seen_events(journey)
            assert [(e.referral_id, e.accepted, e.milestone, e.detail) for e in events] == [
                (referral_id, True, None, None),
                (referral_id, None, "STARTED", None),
                (referral_id, None, "COMPLETED", "job_placed"),
            ]
            assert len({e.event_id for e in events}) == 3
        finally:
            await journey.signal(StubJourney.finish)

        # Remind, close (gives the seat back), purge.
        second = await call(contract.EMPLOYMENT_REQUEST_REFERRAL, request(2))
        assert isinstance(second, dict)
        await call(
            contract.EMPLOYMENT_REMIND_PROVIDER,
            ProviderReminder(referral_id=second["referral_id"], idempotency_key=f"{case}/r1"),
        )
        got = await stub.GetReferral(
            common_pb2.GetReferralRequest(referral_id=second["referral_id"])
        )
        assert got.referral.reminders == 1
        await call(
            contract.EMPLOYMENT_CLOSE_REFERRAL,
            ReferralClosure(
                referral_id=second["referral_id"],
                status=ReferralStatus.EXPIRED,
                idempotency_key=f"{case}/c1",
            ),
        )
        got = await stub.GetReferral(
            common_pb2.GetReferralRequest(referral_id=second["referral_id"])
        )
        assert got.referral.status == common_pb2.REFERRAL_STATUS_EXPIRED
        assert await seats(stub, programme.programme_id) == (0, 2)
        purged = await call(
            contract.EMPLOYMENT_PURGE_CASE,
            CasePurge(case_id=case, sector=Sector.EMPLOYMENT, idempotency_key=f"{case}/p"),
        )
        assert purged == {"referrals_withdrawn": 0, "records_purged": 2}

        refusals = [
            (
                contract.EMPLOYMENT_REQUEST_REFERRAL,
                request(3, interests=["goldsmithing"]),
                "NoEligible",
            ),
            (contract.EMPLOYMENT_REQUEST_REFERRAL, request(4, interests=["astronomy"]), "Invalid"),
            (
                contract.EMPLOYMENT_REMIND_PROVIDER,
                ProviderReminder(referral_id="emp-0123456789abcdef", idempotency_key="x"),
                "Unknown",
            ),
        ]
        expected = {
            "NoEligible": contract.ERR_NO_PROVIDER,
            "Invalid": contract.ERR_INVALID,
            "Unknown": contract.ERR_UNKNOWN_REFERRAL,
        }
        for name, arg, which in refusals:
            with pytest.raises(WorkflowFailureError) as err:
                await call(name, arg)
            failure = err.value.cause
            assert isinstance(failure, ActivityError)
            cause = failure.cause
            assert isinstance(cause, ApplicationError)
            assert (cause.type, cause.non_retryable) == (expected[which], True)
