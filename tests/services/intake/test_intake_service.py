"""The intake service through a real gRPC server, a real database (SQLite and
PostgreSQL) and the real Temporal dev server, with a stand-in journey that
records what it is given."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from temporalio.common import SearchAttributeKey
from temporalio.converter import AdvancedJSONEncoder

from masar.contract import (
    SA_REGION,
    SA_RISK,
    SA_STAGE,
    UPDATE_CLOSURE_REQUEST,
    UPDATE_CONSENT,
    UPDATE_FOLLOW_UP,
    UPDATE_MEDICAL_CARE,
    UPDATE_RISK,
    Need,
    Risk,
    Sector,
    ViolenceType,
    journey_workflow_id,
)
from masar.v1 import common_pb2, intake_pb2, legal_pb2
from tests.services.harness import error_field
from tests.services.intake.support import (
    ALIAS,
    EMAIL,
    FES,
    NARRATIVE,
    PHONE,
    RABAT,
    Intake,
    checklist,
    eventually,
    hours_ago,
    key,
    registration,
    running_intake,
    ts,
)

DELIVERED = common_pb2.DELIVERY_STATE_DELIVERED
SHELTER = intake_pb2.CONSENT_SCOPE_SHELTER


async def test_health_and_reflection(tmp_path, sqlite_url) -> None:
    async with running_intake(tmp_path, sqlite_url, temporal_address=None) as intake:
        channel = intake.running.channel
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "masar.v1.IntakeService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names: list[str] = []
        async for reply in reflection.ServerReflectionInfo(iter([request])):
            names = [s.name for s in reply.list_services_response.service]
        assert "masar.v1.IntakeService" in names


async def test_registration_starts_the_journey_without_personal_data(intake: Intake) -> None:
    reply = await intake.stub.RegisterCase(registration())
    case = reply.case
    case_id = case.summary.case_id
    assert len(case_id) == 16 and int(case_id, 16) >= 0  # opaque and random
    assert case.summary.workflow_id == journey_workflow_id(case_id)
    assert reply.journey_start == DELIVERED
    assert case.summary.journey == intake_pb2.JOURNEY_STATE_STARTED
    # weapon (3) + stalking (2): medium.
    assert (reply.risk_assessment.score, reply.risk_assessment.level) == (
        5,
        common_pb2.RISK_LEVEL_MEDIUM,
    )
    assert list(reply.needs_without_consent) == [common_pb2.SECTOR_EMPLOYMENT]

    journey, raw = await intake.journey_input(case_id)
    assert journey.case_id == case_id
    assert (journey.region, journey.risk) == (FES, Risk.MEDIUM)
    assert journey.needs == [Need.SHELTER, Need.LEGAL, Need.EMPLOYMENT, Need.MEDICAL]
    assert journey.consents == [Sector.SHELTER, Sector.LEGAL]
    assert journey.violence_type is ViolenceType.RAPE
    assert journey.incident_at == hours_ago(10)
    assert journey.shelter is not None and journey.shelter.household_size == 3
    assert journey.shelter.accessibility_needs == ["wheelchair"]
    assert journey.legal is not None and journey.legal.matters == ["protection_order"]
    assert journey.employment is not None and journey.employment.interests == ["sewing"]
    decoded = json.dumps(journey, cls=AdvancedJSONEncoder)
    for secret in (ALIAS, PHONE, EMAIL, NARRATIVE, "1994", "after 6pm"):
        assert secret not in decoded
        assert secret.encode() not in raw

    description = await intake.handle(case_id).describe()
    attributes = description.typed_search_attributes
    assert attributes.get(SearchAttributeKey.for_keyword(SA_STAGE)) == "TRIAGE"
    assert attributes.get(SearchAttributeKey.for_keyword(SA_RISK)) == "medium"
    assert attributes.get(SearchAttributeKey.for_keyword(SA_REGION)) == FES

    # The officer's view decrypts; the database holds ciphertext only.
    view = (await intake.stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))).case
    assert (view.survivor.alias, view.survivor.contact.phone) == (ALIAS, PHONE)
    assert view.incident.narrative == NARRATIVE
    assert view.survivor.birth_year == 1994
    for column, secret in (("alias", ALIAS), ("phone", PHONE), ("narrative", NARRATIVE)):
        stored = intake.running.scalar(f"SELECT {column} FROM cases")
        assert stored.startswith("enc1:") and secret not in stored
    # Reading personal data is audited.
    with intake.running.process.database.engine.connect() as conn:
        actions = conn.exec_driver_sql("SELECT action FROM audit_log ORDER BY seq").all()
    assert [a for (a,) in actions] == ["case.register", "case.read"]


async def test_registration_is_idempotent(intake: Intake) -> None:
    request = registration()
    replies = await asyncio.gather(*(intake.stub.RegisterCase(request) for _ in range(3)))
    again = await intake.stub.RegisterCase(request)
    case_ids = {r.case.summary.case_id for r in [*replies, again]}
    assert len(case_ids) == 1
    assert intake.running.count("cases") == 1
    assert intake.running.scalar("SELECT runs FROM journey_starts") == 1
    case_id = case_ids.pop()
    assert intake.client is not None
    query = f'WorkflowId = "{journey_workflow_id(case_id)}"'

    async def one_run() -> bool:
        assert intake.client is not None
        runs = [w async for w in intake.client.list_workflows(query)]
        return len(runs) == 1

    await eventually(one_run, within=10)


def _with_survivor(**fields):
    request = registration()
    for name, value in fields.items():
        setattr(request.survivor, name, value)
    return request


def _with_phone(phone: str):
    request = registration()
    request.survivor.contact.phone = phone
    return request


def _with_incident_time(moment: datetime):
    request = registration()
    request.incident.occurred_at.CopyFrom(ts(moment))
    return request


def _with_checklist(**answers):
    request = registration()
    for name, value in answers.items():
        setattr(request.risk.checklist, name, value)
    return request


def _trafficked(**survivor: object) -> intake_pb2.RegisterCaseRequest:
    """A trafficking case (Law 27-14) with everything it needs, then `survivor`
    fields set (None clears one)."""
    request = registration(legal_matters=[])
    request.incident.ClearField("contexts")
    request.incident.contexts.append(intake_pb2.INCIDENT_CONTEXT_TRAFFICKING)
    request.survivor.nationality = "NG"
    request.survivor.migrant_status = intake_pb2.MIGRANT_STATUS_IN_TRANSIT
    request.survivor.ClearField("languages")
    request.survivor.languages.append("en")
    request.survivor.interpreter_needed = True
    for name, value in survivor.items():
        if value is None:
            request.survivor.ClearField(name)  # type: ignore[arg-type]
        else:
            setattr(request.survivor, name, value)
    return request


def _with_override(level, reason):
    request = registration()
    request.risk.override.level = level
    request.risk.override.reason = reason
    return request


BAD_REGISTRATIONS = [
    ("unknown region", _with_survivor(region="atlantis"), "survivor.region", "atlantis"),
    ("no region", _with_survivor(region=""), "survivor.region", None),
    ("birth year too old", _with_survivor(birth_year=1850), "survivor.birth_year", "1850"),
    ("birth year future", _with_survivor(birth_year=2999), "survivor.birth_year", "2999"),
    ("bad phone", _with_phone("call-me"), "survivor.contact.phone", "call-me"),
    ("bad nationality", _with_survivor(nationality="Morocco"), "survivor.nationality", "Morocco"),
    ("children", _with_survivor(accompanying_children=40), "survivor.accompanying_children", None),
    (
        "future incident",
        _with_incident_time(hours_ago(-3)),
        "incident.occurred_at",
        None,
    ),
    (
        "unanswered risk question",
        _with_checklist(strangulation=intake_pb2.RISK_ANSWER_UNSPECIFIED),
        "risk.checklist.strangulation",
        None,
    ),
    (
        "override lowers",
        _with_override(common_pb2.RISK_LEVEL_LOW, "she seems calm"),
        "risk.override.level",
        "she seems calm",
    ),
    (
        "override without reason",
        _with_override(common_pb2.RISK_LEVEL_CRITICAL, ""),
        "risk.override.reason",
        None,
    ),
    (
        "unspecified violence type",
        registration(incident=intake_pb2.Incident(occurred_at=ts(hours_ago(3)))),
        "incident.violence_type",
        None,
    ),
    ("repeated need", registration(needs=[1, 1]), "needs[1]", None),
    ("legal need without matters", registration(legal_matters=[]), "legal_matters", None),
    (
        "unknown accessibility code",
        registration(household=intake_pb2.HouseholdNeeds(accessibility_needs=["jetpack"])),
        "household.accessibility_needs[0]",
        "jetpack",
    ),
    ("unknown consent scope", registration(consents=[9]), "consents[0]", None),
    ("no idempotency key", registration(idempotency_key=""), "idempotency_key", None),
    ("no risk", registration(risk=intake_pb2.RiskAssessmentInput()), "risk.checklist", None),
    ("trafficking, no nationality", _trafficked(nationality=None), "survivor.nationality", None),
    (
        "trafficking, no migrant status",
        _trafficked(migrant_status=None),
        "survivor.migrant_status",
        None,
    ),
    ("trafficking, no language", _trafficked(languages=None), "survivor.languages", None),
]


async def test_bad_registration_names_the_field_and_writes_nothing(intake: Intake) -> None:
    for label, request, field, value in BAD_REGISTRATIONS:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intake.stub.RegisterCase(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert error_field(err.value) == field, label
        details = err.value.details() or ""
        assert details.startswith(field), label
        for secret in (ALIAS, PHONE, NARRATIVE, value):
            assert secret is None or secret not in details, label
    for table in ("cases", "consents", "risk_assessments", "journey_starts", "audit_log"):
        assert intake.running.count(table) == 0, table


async def test_an_incident_time_with_minutes_is_kept_to_the_hour(intake: Intake) -> None:
    hour = hours_ago(5)
    reply = await intake.stub.RegisterCase(
        _with_incident_time(hour + timedelta(minutes=21, seconds=55))
    )
    assert reply.case.incident.occurred_at.ToDatetime(tzinfo=UTC) == hour


async def test_a_trafficking_case_opens_legal_aid_on_trafficking(intake: Intake) -> None:
    reply = await intake.stub.RegisterCase(_trafficked())
    case = reply.case
    # Intake adds the matter (the officer named none), recorded on the case.
    assert list(case.legal_matters) == [legal_pb2.LEGAL_MATTER_TRAFFICKING]
    assert case.survivor.HasField("interpreter_needed") and case.survivor.interpreter_needed
    case_id = case.summary.case_id
    journey, raw = await intake.journey_input(case_id)
    assert journey.legal is not None
    assert journey.legal.matters == ["trafficking"]
    assert journey.legal.languages == ["en"]
    assert b"interpreter" not in raw  # recorded at intake only

    view = (await intake.stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))).case
    assert (view.survivor.nationality, view.survivor.migrant_status) == (
        "NG",
        intake_pb2.MIGRANT_STATUS_IN_TRANSIT,
    )
    assert view.survivor.interpreter_needed is True
    stored = intake.running.scalar("SELECT interpreter_needed FROM cases")
    assert stored.startswith("enc1:") and "true" not in stored

    # Not asked stays not asked.
    other = await intake.stub.RegisterCase(registration())
    assert not other.case.survivor.HasField("interpreter_needed")


async def test_a_need_without_consent_is_recorded_but_not_referred(intake: Intake) -> None:
    reply = await intake.stub.RegisterCase(registration(consents=[]))
    assert set(reply.needs_without_consent) == {
        common_pb2.SECTOR_SHELTER,
        common_pb2.SECTOR_LEGAL,
        common_pb2.SECTOR_EMPLOYMENT,
    }
    journey, _ = await intake.journey_input(reply.case.summary.case_id)
    assert journey.consents == []
    assert Need.SHELTER in journey.needs


async def test_changes_reach_the_journey_in_order(intake: Intake) -> None:
    case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
    stub = intake.stub

    granted = await stub.RecordConsent(
        intake_pb2.RecordConsentRequest(
            case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_EMPLOYMENT, idempotency_key=key()
        )
    )
    assert granted.delivery == DELIVERED
    assert granted.consent.state == intake_pb2.CONSENT_STATE_GRANTED

    withdraw = intake_pb2.WithdrawConsentRequest(
        case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_SHELTER, idempotency_key=key()
    )
    withdrawn = await stub.WithdrawConsent(withdraw)
    assert withdrawn.delivery == DELIVERED
    assert withdrawn.consent.state == intake_pb2.CONSENT_STATE_WITHDRAWN
    # A retried withdrawal is the same change, delivered once.
    retried = await stub.WithdrawConsent(withdraw)
    assert retried.change_id == withdrawn.change_id

    declined = await stub.DeclineService(
        intake_pb2.DeclineServiceRequest(
            case_id=case_id, sector=common_pb2.SECTOR_LEGAL, idempotency_key=key()
        )
    )
    assert declined.consent.state == intake_pb2.CONSENT_STATE_DECLINED

    reassessed = await stub.ReassessRisk(
        intake_pb2.ReassessRiskRequest(
            case_id=case_id,
            risk=intake_pb2.RiskAssessmentInput(checklist=checklist("strangulation")),
            idempotency_key=key(),
        )
    )
    assert reassessed.risk_assessment.level == common_pb2.RISK_LEVEL_CRITICAL
    assert list(reassessed.risk_assessment.critical_indicators) == [
        intake_pb2.RISK_INDICATOR_STRANGULATION
    ]
    assert reassessed.case.risk == common_pb2.RISK_LEVEL_CRITICAL

    follow_up = await stub.RecordFollowUp(
        intake_pb2.RecordFollowUpRequest(
            case_id=case_id,
            contacted_at=ts(datetime.now(UTC)),
            channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
            notes="she is safe at her sister's",
            idempotency_key=key(),
        )
    )
    medical = await stub.ConfirmMedicalCare(
        intake_pb2.ConfirmMedicalCareRequest(
            case_id=case_id,
            item=intake_pb2.CLINICAL_ITEM_PEP,
            given_at=ts(hours_ago(2)),
            idempotency_key=key(),
        )
    )
    closure = await stub.RequestClosure(
        intake_pb2.RequestClosureRequest(
            case_id=case_id,
            reason=intake_pb2.CLOSURE_REASON_SURVIVOR_REQUEST,
            idempotency_key=key(),
        )
    )
    assert closure.case.status == intake_pb2.CASE_STATUS_CLOSURE_REQUESTED
    # Reporting consent stays with intake: nothing for the journey.
    reporting = await stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(
            case_id=case_id,
            scope=intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
            idempotency_key=key(),
        )
    )
    assert reporting.delivery == common_pb2.DELIVERY_STATE_UNSPECIFIED
    for reply in (follow_up, medical, closure, declined, reassessed):
        assert reply.delivery == DELIVERED

    seen = await intake.journey_updates(case_id)
    assert [(s.update, s.event_id) for s in seen] == [
        (UPDATE_CONSENT, granted.change_id),
        (UPDATE_CONSENT, withdrawn.change_id),
        (UPDATE_CONSENT, declined.change_id),
        (UPDATE_RISK, reassessed.change_id),
        (UPDATE_FOLLOW_UP, follow_up.change_id),
        (UPDATE_MEDICAL_CARE, medical.change_id),
        (UPDATE_CLOSURE_REQUEST, closure.change_id),
    ]
    assert [s.payload["granted"] for s in seen[:3]] == ["True", "False", "False"]
    assert [s.payload["reason"] for s in seen[1:3]] == ["withdrawn", "declined"]
    assert seen[1].payload["sector"] == "shelter"
    assert seen[3].payload["risk"] == "critical"
    assert seen[5].payload["item"] == "pep"
    assert seen[6].payload["reason"] == "survivor_request"
    assert "sister" not in json.dumps([s.payload for s in seen])

    view = (await stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))).case
    states = {c.scope: c.state for c in view.consents}
    assert states == {
        intake_pb2.CONSENT_SCOPE_SHELTER: intake_pb2.CONSENT_STATE_WITHDRAWN,
        intake_pb2.CONSENT_SCOPE_LEGAL: intake_pb2.CONSENT_STATE_DECLINED,
        intake_pb2.CONSENT_SCOPE_EMPLOYMENT: intake_pb2.CONSENT_STATE_GRANTED,
        intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING: intake_pb2.CONSENT_STATE_WITHDRAWN,
        # Health care and psychosocial support: never asked here.
        intake_pb2.CONSENT_SCOPE_HEALTH: intake_pb2.CONSENT_STATE_NOT_GIVEN,
        intake_pb2.CONSENT_SCOPE_PSYCHOSOCIAL: intake_pb2.CONSENT_STATE_NOT_GIVEN,
    }
    assert list(view.declined) == [common_pb2.SECTOR_LEGAL]
    assert view.risk_assessment.level == common_pb2.RISK_LEVEL_CRITICAL
    assert [c.kind for c in view.changes] == [
        intake_pb2.CASE_CHANGE_KIND_CONSENT_GRANTED,
        intake_pb2.CASE_CHANGE_KIND_CONSENT_WITHDRAWN,
        intake_pb2.CASE_CHANGE_KIND_SERVICE_DECLINED,
        intake_pb2.CASE_CHANGE_KIND_RISK_REASSESSED,
        intake_pb2.CASE_CHANGE_KIND_FOLLOW_UP,
        intake_pb2.CASE_CHANGE_KIND_MEDICAL_CARE,
        intake_pb2.CASE_CHANGE_KIND_CLOSURE_REQUESTED,
        intake_pb2.CASE_CHANGE_KIND_CONSENT_WITHDRAWN,
    ]
    assert [c.delivery for c in view.changes] == [DELIVERED] * 7 + [
        common_pb2.DELIVERY_STATE_UNSPECIFIED
    ]
    assert view.changes[4].notes == "she is safe at her sister's"
    assert "sister" not in intake.running.scalar(
        "SELECT notes FROM case_changes WHERE kind = 'follow_up'"
    )


async def test_change_requests_are_validated(intake: Intake) -> None:
    case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
    stub = intake.stub
    cases = [
        (
            stub.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id="nope", scope=SHELTER, idempotency_key=key()
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "case_id",
        ),
        (
            stub.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id=case_id,
                    scope=intake_pb2.CONSENT_SCOPE_UNSPECIFIED,
                    idempotency_key=key(),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "scope",
        ),
        (
            stub.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id=case_id, scope=SHELTER, idempotency_key=""
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "idempotency_key",
        ),
        (
            stub.RecordConsent(
                intake_pb2.RecordConsentRequest(
                    case_id="0123456789abcdef", scope=SHELTER, idempotency_key=key()
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
        (  # employment consent was never given
            stub.WithdrawConsent(
                intake_pb2.WithdrawConsentRequest(
                    case_id=case_id,
                    scope=intake_pb2.CONSENT_SCOPE_EMPLOYMENT,
                    idempotency_key=key(),
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            None,
        ),
        (
            stub.DeclineService(
                intake_pb2.DeclineServiceRequest(
                    case_id=case_id, sector=common_pb2.Sector.ValueType(99), idempotency_key=key()
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "sector",
        ),
        (
            stub.RecordFollowUp(
                intake_pb2.RecordFollowUpRequest(
                    case_id=case_id,
                    contacted_at=ts(datetime.now(UTC) + timedelta(hours=1)),
                    channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
                    idempotency_key=key(),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "contacted_at",
        ),
        (
            stub.ConfirmMedicalCare(
                intake_pb2.ConfirmMedicalCareRequest(
                    case_id=case_id,
                    item=intake_pb2.CLINICAL_ITEM_PEP,
                    given_at=ts(hours_ago(30)),  # before the incident
                    idempotency_key=key(),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "given_at",
        ),
        (
            stub.ReassessRisk(
                intake_pb2.ReassessRiskRequest(
                    case_id=case_id,
                    risk=intake_pb2.RiskAssessmentInput(
                        checklist=checklist("strangulation"),
                        override=intake_pb2.RiskOverride(
                            level=common_pb2.RISK_LEVEL_HIGH, reason="calmer now"
                        ),
                    ),
                    idempotency_key=key(),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "risk.override.level",
        ),
        (
            stub.RequestClosure(
                intake_pb2.RequestClosureRequest(case_id=case_id, idempotency_key=key())
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "reason",
        ),
    ]
    for call, code, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == code, (code, field)
        assert error_field(err.value) == field
    assert intake.running.count("case_changes") == 0
    assert intake.running.count("outbox") == 0
    assert await intake.journey_updates(case_id) == []


async def test_a_change_the_journey_refuses_is_undone(intake: Intake) -> None:
    case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
    request = intake_pb2.ReopenCaseRequest(
        case_id=case_id,
        idempotency_key=key(),
        risk=intake_pb2.RiskAssessmentInput(checklist=checklist("strangulation")),
        needs=[common_pb2.SECTOR_SHELTER],
    )
    # The journey is running and the case is open: it refuses a reopen.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await intake.stub.ReopenCase(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CaseNotClosed" in (err.value.details() or "")

    view = (await intake.stub.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))).case
    assert view.summary.risk == common_pb2.RISK_LEVEL_MEDIUM
    assert view.summary.reopen_count == 0
    assert len(view.needs) == 4
    [change] = view.changes
    assert change.rejected and change.kind == intake_pb2.CASE_CHANGE_KIND_REOPENED
    # A retry gets the same answer and is not sent again.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await intake.stub.ReopenCase(request)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert intake.running.count("case_changes") == 1


async def test_reopening_after_the_journey_ended_starts_a_new_run(intake: Intake) -> None:
    case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
    await intake.stub.WithdrawConsent(
        intake_pb2.WithdrawConsentRequest(
            case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_LEGAL, idempotency_key=key()
        )
    )
    handle = intake.handle(case_id)
    first_run = (await handle.describe()).run_id
    await handle.signal("finish")
    await handle.result()

    reply = await intake.stub.ReopenCase(
        intake_pb2.ReopenCaseRequest(
            case_id=case_id,
            idempotency_key=key(),
            risk=intake_pb2.RiskAssessmentInput(
                checklist=checklist("threats_to_kill", "perpetrator_access")
            ),
        )
    )
    assert reply.delivery == DELIVERED
    assert reply.new_journey_run
    assert reply.risk_assessment.level == common_pb2.RISK_LEVEL_CRITICAL
    assert reply.case.reopen_count == 1
    description = await intake.handle(case_id).describe()
    assert description.run_id != first_run
    journey, _ = await intake.journey_input(case_id, run_id=description.run_id)
    # The new run carries the case as it is now: legal consent withdrawn, risk raised.
    assert journey.consents == [Sector.SHELTER]
    assert journey.risk is Risk.CRITICAL
    attributes = description.typed_search_attributes
    assert attributes.get(SearchAttributeKey.for_keyword(SA_RISK)) == "critical"


async def test_list_cases_pages_without_personal_data(intake: Intake) -> None:
    ids = []
    for region in (FES, RABAT, FES):
        request = registration()
        request.survivor.region = region
        ids.append((await intake.stub.RegisterCase(request)).case.summary.case_id)
    first = await intake.stub.ListCases(intake_pb2.ListCasesRequest(region=FES, page_size=1))
    assert [c.case_id for c in first.cases] == [ids[2]]
    assert first.next_page_token
    second = await intake.stub.ListCases(
        intake_pb2.ListCasesRequest(region=FES, page_size=1, page_token=first.next_page_token)
    )
    assert [c.case_id for c in second.cases] == [ids[0]]
    assert not second.next_page_token
    everything = await intake.stub.ListCases(intake_pb2.ListCasesRequest())
    assert {c.case_id for c in everything.cases} == set(ids)
    summary = everything.cases[0]
    assert summary.journey == intake_pb2.JOURNEY_STATE_STARTED
    assert summary.risk == common_pb2.RISK_LEVEL_MEDIUM
    assert summary.status == intake_pb2.CASE_STATUS_OPEN
    raw = everything.SerializeToString()
    for secret in (ALIAS, PHONE, NARRATIVE):
        assert secret.encode() not in raw
    none = await intake.stub.ListCases(
        intake_pb2.ListCasesRequest(risk=common_pb2.RISK_LEVEL_CRITICAL)
    )
    assert list(none.cases) == []
    for bad, field in (
        (intake_pb2.ListCasesRequest(region="nowhere"), "region"),
        (intake_pb2.ListCasesRequest(page_token="garbage!"), "page_token"),
        (intake_pb2.ListCasesRequest(page_size=10_000), "page_size"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intake.stub.ListCases(bad)
        assert error_field(err.value) == field


async def test_escalation_inbox(intake: Intake) -> None:
    case_id = (await intake.stub.RegisterCase(registration())).case.summary.case_id
    due = datetime.now(UTC).replace(microsecond=0)

    def notice(level: int, idem: str, region: str = FES) -> intake_pb2.RecordEscalationRequest:
        return intake_pb2.RecordEscalationRequest(
            case_id=case_id,
            region=region,
            level=level,
            wait="shelter_accept",
            due_at=ts(due),
            referral_id="shr-0123456789abcdef",
            idempotency_key=idem,
        )

    first = await intake.stub.RecordEscalation(notice(1, "journey-x/reminder-1"))
    repeat = await intake.stub.RecordEscalation(notice(1, "journey-x/reminder-1"))
    assert not first.duplicate and repeat.duplicate
    assert repeat.escalation.escalation_id == first.escalation.escalation_id
    await intake.stub.RecordEscalation(notice(2, "journey-x/escalate-1"))
    assert intake.running.count("escalations") == 2

    inbox = await intake.stub.ListEscalations(intake_pb2.ListEscalationsRequest(region=FES))
    assert [e.level for e in inbox.escalations] == [2, 1]
    assert inbox.escalations[0].due_at.ToDatetime(tzinfo=UTC) == due
    assert inbox.escalations[0].referral_id == "shr-0123456789abcdef"
    high = await intake.stub.ListEscalations(intake_pb2.ListEscalationsRequest(min_level=2))
    assert [e.level for e in high.escalations] == [2]
    elsewhere = await intake.stub.ListEscalations(intake_pb2.ListEscalationsRequest(region=RABAT))
    assert list(elsewhere.escalations) == []
    assert ALIAS.encode() not in inbox.SerializeToString()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await intake.stub.RecordEscalation(notice(7, "journey-x/bad"))
    assert error_field(err.value) == "level"
    unknown = notice(1, "journey-y/reminder-1")
    unknown.case_id = "0123456789abcdef"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await intake.stub.RecordEscalation(unknown)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert intake.running.count("escalations") == 2
