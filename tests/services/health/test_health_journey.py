"""The health service with a real Temporal dev server and a STAND-IN journey
(tests.services.journey_stub.StubJourney, not workflows.journey): its
activities run against the real service, and every clinical record reaches
the stand-in at once as the contract's ClinicalCareRecorded; a record the
journey refuses is undone."""

from __future__ import annotations

import functools
import secrets
from dataclasses import asdict

import grpc
import grpc.aio
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from masar import contract
from masar.contract import (
    CasePurge,
    HealthNeeds,
    ProviderReminder,
    ReferralRequest,
    Risk,
    Sector,
)
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, health_pb2, health_pb2_grpc
from services.health.app import MIGRATIONS_DIR, build_components
from tests.services.harness import running_sector, sector_settings
from tests.services.health.helpers import (
    FES,
    create_unit,
    decide,
    hours_ago,
    key,
    pep,
    ts,
)
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
DELIVERED = common_pb2.DELIVERY_STATE_DELIVERED


async def test_health_activities_and_clinical_care_with_a_stub_journey(
    tmp_path, database_url, temporal_dev_server
) -> None:
    token = secrets.token_hex(4)
    sector_queue = f"masar-health-{token}"
    caller_queue = f"caller-{token}"
    settings = sector_settings(
        "health",
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
        stub = health_pb2_grpc.HealthServiceStub(running.channel)
        unit = await create_unit(stub)

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
        incident = hours_ago(60)

        def request(n: int, **needs: object) -> ReferralRequest:
            return ReferralRequest(
                case_id=case,
                sector=Sector.HEALTH,
                region=FES,
                risk=Risk.HIGH,
                idempotency_key=f"journey-{case}/health/{n}",
                health=HealthNeeds(**needs),  # type: ignore[arg-type]
            )

        wanted = request(1, care=["pep", "certificate"], incident_at=incident, languages=["ary"])
        created = await call(contract.HEALTH_REQUEST_REFERRAL, wanted)
        assert isinstance(created, dict)
        assert created["provider_id"] == unit.care_unit_id
        assert created["organisation_id"] == unit.organisation_id
        assert await call(contract.HEALTH_REQUEST_REFERRAL, wanted) == created
        rid = created["referral_id"]
        record = (await stub.GetCareRecord(health_pb2.GetCareRecordRequest(referral_id=rid))).record
        assert record.incident_at.ToDatetime().replace(tzinfo=None) == incident.replace(tzinfo=None)

        # Every staff record reaches the running journey synchronously.
        journey = await start_stub_journey(client, case, caller_queue)
        try:
            assert (await decide(stub, rid)).delivery == DELIVERED
            assert (await stub.RecordPep(pep(rid, at=hours_ago(1)))).delivery == DELIVERED
            declined = await stub.RecordEmergencyContraception(
                health_pb2.RecordEmergencyContraceptionRequest(
                    referral_id=rid,
                    outcome=health_pb2.CONTRACEPTION_OUTCOME_DECLINED,
                    at=ts(hours_ago(1)),
                    idempotency_key=key(),
                )
            )
            assert declined.delivery == DELIVERED
            certificate = await stub.IssueCertificate(
                health_pb2.IssueCertificateRequest(
                    referral_id=rid, issued_at=ts(hours_ago(1)), itt_days=25, idempotency_key=key()
                )
            )
            assert certificate.delivery == DELIVERED
            visit = await stub.RecordFollowUpVisit(
                health_pb2.RecordFollowUpVisitRequest(
                    referral_id=rid,
                    visit=health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS,
                    at=ts(hours_ago(0.5)),
                    idempotency_key=key(),
                )
            )
            assert visit.delivery == DELIVERED
            events = await seen_events(journey)
            assert [(e.update, e.referral_id, e.care, e.itt_days, e.visit) for e in events] == [
                (contract.UPDATE_REFERRAL_DECISION, rid, None, None, None),
                (contract.UPDATE_CLINICAL_CARE, rid, "pep_started", None, None),
                (
                    contract.UPDATE_CLINICAL_CARE,
                    rid,
                    "emergency_contraception_declined",
                    None,
                    None,
                ),
                (contract.UPDATE_CLINICAL_CARE, rid, "certificate_issued", 25, None),
                (contract.UPDATE_CLINICAL_CARE, rid, "follow_up_visit_done", None, "two_weeks"),
            ]
            assert len({e.event_id for e in events}) == len(events)
        finally:
            await journey.signal(StubJourney.finish)

        # A journey that refuses the referral: the record is undone, staff hear "no".
        other_case = secrets.token_hex(8)
        second = await call(
            contract.HEALTH_REQUEST_REFERRAL,
            ReferralRequest(
                case_id=other_case,
                sector=Sector.HEALTH,
                region=FES,
                risk=Risk.MEDIUM,
                idempotency_key=f"journey-{other_case}/health/1",
            ),
        )
        assert isinstance(second, dict)
        second_id = second["referral_id"]
        accepting = await start_stub_journey(client, other_case, caller_queue)
        await decide(stub, second_id)
        await accepting.signal(StubJourney.finish)
        await accepting.result()
        refusing = await start_stub_journey(client, other_case, caller_queue, refuse=[second_id])
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RecordPep(pep(second_id))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "StaleReferral" in (err.value.details() or "")
            again = await stub.GetCareRecord(health_pb2.GetCareRecordRequest(referral_id=second_id))
            assert again.record.pep == health_pb2.PEP_OUTCOME_UNSPECIFIED
        finally:
            await refusing.signal(StubJourney.finish)

        # The journey's other steps, and its refusals as non-retryable errors.
        await call(
            contract.HEALTH_REMIND_PROVIDER,
            ProviderReminder(referral_id=rid, idempotency_key=f"{case}/r1"),
        )
        purged = await call(
            contract.HEALTH_PURGE_CASE,
            CasePurge(case_id=case, sector=Sector.HEALTH, idempotency_key=f"{case}/p"),
        )
        assert purged == {"referrals_withdrawn": 1, "records_purged": 1}
        refusals = [
            (
                contract.HEALTH_REQUEST_REFERRAL,
                request(2, care=["pep"], languages=["tzm"]),
                contract.ERR_NO_PROVIDER,
            ),
            (contract.HEALTH_REQUEST_REFERRAL, request(3, care=["surgery"]), contract.ERR_INVALID),
            (
                contract.HEALTH_REMIND_PROVIDER,
                ProviderReminder(referral_id="hlt-0123456789abcdef", idempotency_key="x"),
                contract.ERR_UNKNOWN_REFERRAL,
            ),
        ]
        for name, arg, expected in refusals:
            with pytest.raises(WorkflowFailureError) as failed:
                await call(name, arg)
            failure = failed.value.cause
            assert isinstance(failure, ActivityError)
            cause = failure.cause
            assert isinstance(cause, ApplicationError)
            assert (cause.type, cause.non_retryable) == (expected, True)
