"""The health service through a real gRPC server and a real database (SQLite
and PostgreSQL). Temporal is unreachable here, so staff steps come back
QUEUED (and stay in the outbox); test_health_journey.py delivers them to a
running (stand-in) journey."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc

from masar.platform.identity import Role
from masar.v1 import common_pb2, health_pb2, health_pb2_grpc
from services.health.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.health.helpers import (
    CASA,
    CERTIFICATE,
    EC,
    FES,
    FORENSIC,
    ORG,
    PEP,
    accepted_referral,
    create_unit,
    decide,
    hours_ago,
    key,
    medical_request,
    pep,
    stub_of,
    ts,
    unit_request,
)

QUEUED = common_pb2.DELIVERY_STATE_QUEUED


@pytest.fixture
async def health(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("health", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_care_units_and_the_care_a_unit_records(health) -> None:
    stub = stub_of(health)
    checker = grpc_health_pb2_grpc.HealthStub(health.channel)
    reply = await checker.Check(
        grpc_health_pb2.HealthCheckRequest(service="masar.v1.HealthService")
    )
    assert reply.status == grpc_health_pb2.HealthCheckResponse.SERVING

    # Units, once per key; listed by region and by care offered.
    request = unit_request()
    unit = (await stub.CreateCareUnit(request)).care_unit
    assert (await stub.CreateCareUnit(request)).care_unit == unit
    assert unit.care_unit_id.startswith("hcu-") and unit.organisation_id == ORG
    certificates_only = await create_unit(stub, services=[CERTIFICATE], languages=["ar"])
    casa = await create_unit(stub, region=CASA)
    listed = await stub.ListCareUnits(health_pb2.ListCareUnitsRequest(region=FES))
    assert {u.care_unit_id for u in listed.care_units} == {
        unit.care_unit_id,
        certificates_only.care_unit_id,
    }
    offering_pep = await stub.ListCareUnits(health_pb2.ListCareUnitsRequest(service=PEP))
    assert {u.care_unit_id for u in offering_pep.care_units} == {
        unit.care_unit_id,
        casa.care_unit_id,
    }

    # A unit offering every kind of care she needs, same region first.
    incident = hours_ago(30)
    wanted = medical_request(care=[PEP, EC, FORENSIC], languages=["ary"], incident_at=incident)
    referral = (await stub.RequestMedicalCare(wanted)).referral
    assert (await stub.RequestMedicalCare(wanted)).referral == referral
    assert referral.provider_id == unit.care_unit_id
    assert referral.sector == common_pb2.SECTOR_MEDICAL
    assert referral.referral_id.startswith("hlt-")
    assert referral.status == common_pb2.REFERRAL_STATUS_PENDING
    elsewhere = (
        await stub.RequestMedicalCare(medical_request(care=[PEP], exclude=[unit.care_unit_id]))
    ).referral
    assert elsewhere.provider_id == casa.care_unit_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RequestMedicalCare(
            medical_request(care=[PEP], exclude=[unit.care_unit_id, casa.care_unit_id])
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Nothing is recorded on a referral the unit has not accepted.
    rid = referral.referral_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordPep(pep(rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    accepted = await decide(stub, rid)
    assert accepted.delivery == QUEUED  # Temporal is down here: it waits in the outbox

    # Each record, with its time; each one an outbox entry for the journey.
    outbox = health.count("outbox")
    started_at = hours_ago(2)
    recorded = await stub.RecordPep(pep(rid, at=started_at))
    assert recorded.delivery == QUEUED
    assert recorded.record.pep == health_pb2.PEP_OUTCOME_STARTED
    assert recorded.record.pep_at.ToDatetime().replace(tzinfo=None) == started_at.replace(
        tzinfo=None
    )
    retry = pep(rid, at=started_at, idem="pep-1")
    first = await stub.RecordPep(retry)
    assert await stub.RecordPep(retry) == first  # once per key
    await stub.RecordEmergencyContraception(
        health_pb2.RecordEmergencyContraceptionRequest(
            referral_id=rid,
            outcome=health_pb2.CONTRACEPTION_OUTCOME_DECLINED,
            at=ts(hours_ago(2)),
            idempotency_key=key(),
        )
    )
    await stub.RecordForensicExam(
        health_pb2.RecordForensicExamRequest(
            referral_id=rid,
            outcome=health_pb2.FORENSIC_OUTCOME_DONE,
            at=ts(hours_ago(1)),
            idempotency_key=key(),
        )
    )
    started = await stub.StartCare(
        health_pb2.StartCareRequest(referral_id=rid, idempotency_key=key())
    )
    assert started.record.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    await stub.IssueCertificate(
        health_pb2.IssueCertificateRequest(
            referral_id=rid, issued_at=ts(hours_ago(1)), itt_days=21, idempotency_key=key()
        )
    )
    visit = health_pb2.RecordFollowUpVisitRequest(
        referral_id=rid,
        visit=health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS,
        at=ts(hours_ago(0.5)),
        idempotency_key=key(),
    )
    await stub.RecordFollowUpVisit(visit)
    # pep twice (two keys), ec, forensic, start, certificate, visit
    assert health.count("outbox") == outbox + 7

    # Care given is never declined afterwards; each visit once; declined may be given.
    refusals = [
        stub.RecordPep(pep(rid, outcome=health_pb2.PEP_OUTCOME_DECLINED)),
        stub.RecordForensicExam(
            health_pb2.RecordForensicExamRequest(
                referral_id=rid,
                outcome=health_pb2.FORENSIC_OUTCOME_DECLINED,
                at=ts(hours_ago(0.5)),
                idempotency_key=key(),
            )
        ),
        stub.RecordFollowUpVisit(
            health_pb2.RecordFollowUpVisitRequest(
                referral_id=rid,
                visit=health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS,
                at=ts(hours_ago(0.2)),
                idempotency_key=key(),
            )
        ),
    ]
    before = health.count("outbox")
    for call in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert health.count("outbox") == before
    changed_mind = await stub.RecordEmergencyContraception(
        health_pb2.RecordEmergencyContraceptionRequest(
            referral_id=rid,
            outcome=health_pb2.CONTRACEPTION_OUTCOME_GIVEN,
            at=ts(hours_ago(0.2)),
            idempotency_key=key(),
        )
    )
    assert changed_mind.record.emergency_contraception == health_pb2.CONTRACEPTION_OUTCOME_GIVEN

    # The record: codes and times, nothing else; reading it is audited.
    audited = health.count("audit_log")
    record = (await stub.GetCareRecord(health_pb2.GetCareRecordRequest(referral_id=rid))).record
    assert health.count("audit_log") == audited + 1
    assert list(record.care) == [PEP, EC, FORENSIC]
    assert record.incident_at.ToDatetime().replace(tzinfo=None) == incident.replace(tzinfo=None)
    assert record.forensic_exam == health_pb2.FORENSIC_OUTCOME_DONE
    assert record.HasField("certificate_issued_at") and record.certificate_itt_days == 21
    assert [v.visit for v in record.follow_up_visits] == [health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS]

    completed = await stub.CompleteCare(
        health_pb2.CompleteCareRequest(
            referral_id=rid, outcome=health_pb2.CARE_OUTCOME_COMPLETED, idempotency_key=key()
        )
    )
    assert completed.record.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert completed.record.outcome == health_pb2.CARE_OUTCOME_COMPLETED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordPep(pep(rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # The journey's steps: remind, close, purge (erases what health received).
    other = elsewhere.referral_id
    reminded = await stub.RemindProvider(
        common_pb2.RemindProviderRequest(referral_id=other, idempotency_key=key())
    )
    assert reminded.referral.reminders == 1
    closed = await stub.CloseReferral(
        common_pb2.CloseReferralRequest(
            referral_id=other, status=common_pb2.REFERRAL_STATUS_REROUTED, idempotency_key=key()
        )
    )
    assert closed.referral.status == common_pb2.REFERRAL_STATUS_REROUTED
    purged = await stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=referral.case_id, idempotency_key=key())
    )
    assert (purged.referrals_withdrawn, purged.records_purged) == (0, 1)
    assert health.scalar("SELECT care FROM referrals WHERE referral_id = :r", r=rid) is None
    assert health.scalar("SELECT incident_at FROM referrals WHERE referral_id = :r", r=rid) is None


async def test_bad_input_names_the_field_and_writes_nothing(health) -> None:
    stub = stub_of(health)
    await create_unit(stub)
    pending = (await stub.RequestMedicalCare(medical_request())).referral
    rid = await accepted_referral(stub)
    tables = ("care_units", "referrals", "outbox", "idempotency_keys")
    recorded = health.scalar("SELECT pep_outcome FROM referrals WHERE referral_id = :r", r=rid)
    secret = "Khadija Benali"

    def unit_with(**changes):
        request = unit_request()
        for name, value in changes.items():
            if isinstance(value, list):
                del getattr(request, name)[:]
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    def medical_with(**changes):
        request = medical_request()
        for name, value in changes.items():
            if name == "needs_languages":
                request.needs.languages.append(value)
            elif name == "needs_care":
                request.needs.care.append(value)
            elif name == "needs_incident_seconds":
                request.needs.incident_at.seconds = value
            elif isinstance(value, list):
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    def pep_without_time():
        request = pep(rid)
        request.ClearField("at")
        return request

    in_future = hours_ago(-3)
    before_incident_rid = await accepted_referral(stub, incident_at=hours_ago(10))
    counts = {t: health.count(t) for t in tables}
    bad = [
        (stub.CreateCareUnit, unit_with(services=[]), "services"),
        (stub.CreateCareUnit, unit_with(services=[0]), "services"),
        (stub.CreateCareUnit, unit_with(services=[PEP, PEP]), "services"),
        (stub.CreateCareUnit, unit_with(region=secret), "region"),
        (stub.CreateCareUnit, unit_with(name=" "), "name"),
        (stub.CreateCareUnit, unit_with(languages=[secret]), "languages"),
        (stub.CreateCareUnit, unit_with(organisation_id=""), "organisation_id"),
        (stub.CreateCareUnit, unit_with(idempotency_key=""), "idempotency_key"),
        (
            stub.ListCareUnits,
            health_pb2.ListCareUnitsRequest(service=health_pb2.CareService.ValueType(99)),
            "service",
        ),
        (stub.RequestMedicalCare, medical_with(case_id=secret), "case_id"),
        (stub.RequestMedicalCare, medical_with(risk=0), "risk"),
        (stub.RequestMedicalCare, medical_with(needs_care=0), "needs.care"),
        (stub.RequestMedicalCare, medical_with(needs_languages=secret), "needs.languages"),
        (
            stub.RequestMedicalCare,
            medical_with(needs_incident_seconds=10**12),
            "needs.incident_at",
        ),
        (stub.RequestMedicalCare, medical_with(provider_id=secret), "provider_id"),
        (stub.RecordPep, pep(rid, outcome=0), "outcome"),
        (stub.RecordPep, pep_without_time(), "at"),
        (stub.RecordPep, pep(rid, at=in_future), "at"),
        (stub.RecordPep, pep(before_incident_rid, at=hours_ago(11)), "at"),
        (stub.RecordPep, pep(rid, idem=""), "idempotency_key"),
        (stub.RecordPep, pep("shr-0123456789abcdef"), "referral_id"),
        (
            stub.IssueCertificate,
            health_pb2.IssueCertificateRequest(
                referral_id=rid, issued_at=ts(hours_ago(1)), itt_days=366, idempotency_key=key()
            ),
            "itt_days",
        ),
        (
            stub.IssueCertificate,
            health_pb2.IssueCertificateRequest(
                referral_id=rid, issued_at=ts(hours_ago(1)), itt_days=-1, idempotency_key=key()
            ),
            "itt_days",
        ),
        (
            stub.IssueCertificate,
            health_pb2.IssueCertificateRequest(referral_id=rid, itt_days=3, idempotency_key=key()),
            "issued_at",
        ),
        (
            stub.RecordFollowUpVisit,
            health_pb2.RecordFollowUpVisitRequest(
                referral_id=rid, at=ts(hours_ago(1)), idempotency_key=key()
            ),
            "visit",
        ),
        (
            stub.RecordEmergencyContraception,
            health_pb2.RecordEmergencyContraceptionRequest(
                referral_id=rid,
                outcome=health_pb2.ContraceptionOutcome.ValueType(7),
                at=ts(hours_ago(1)),
                idempotency_key=key(),
            ),
            "outcome",
        ),
        (
            stub.CompleteCare,
            health_pb2.CompleteCareRequest(referral_id=pending.referral_id, idempotency_key=key()),
            "outcome",
        ),
        (
            stub.RemindProvider,
            common_pb2.RemindProviderRequest(referral_id=pending.referral_id),
            "idempotency_key",
        ),
    ]
    for rpc, request, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err.value) == field, field
        assert secret not in (err.value.details() or "")
    assert {t: health.count(t) for t in tables} == counts
    assert health.scalar("SELECT pep_outcome FROM referrals WHERE referral_id = :r", r=rid) == (
        recorded
    )


async def test_only_the_units_staff_record_care(health) -> None:
    stub = stub_of(health)
    await create_unit(stub)
    rid = await accepted_referral(stub)
    cases = [
        (Role.HEALTH_STAFF, "org-another-hospital", ""),
        (Role.SHELTER_STAFF, ORG, ""),
        (Role.COORDINATOR, "", FES),
        (Role.INTAKE_OFFICER, ORG, ""),
        (Role.PSYCHOSOCIAL_STAFF, ORG, ""),
    ]
    for role, org, region in cases:
        other = stub_of_channel(health.channel_as(role, org, region))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await other.RecordPep(pep(rid))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
    assert health.scalar("SELECT pep_outcome FROM referrals WHERE referral_id = :r", r=rid) is None
    mine = stub_of_channel(health.channel_as(Role.HEALTH_STAFF, ORG))
    await mine.RecordPep(pep(rid))
    assert health.scalar("SELECT pep_outcome FROM referrals WHERE referral_id = :r", r=rid) == (
        "started"
    )
    # Another case: staff of the unit's hospital only see its own referrals.
    listed = await mine.ListReferrals(common_pb2.ListReferralsRequest())
    assert [r.referral_id for r in listed.referrals] == [rid]


def stub_of_channel(channel: grpc.aio.Channel) -> health_pb2_grpc.HealthServiceStub:
    return health_pb2_grpc.HealthServiceStub(channel)
