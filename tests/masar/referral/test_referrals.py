"""The shared referral handshake's pure parts: conversions, ids, tokens,
validation, the activity error mapping and the activities' names. The
handshake's units of work are exercised through real services in
tests/services/."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from temporalio import activity

from masar import contract
from masar.contract import DeclineReason, ReferralStatus, Risk, Sector
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import Caller, Role, service_role
from masar.platform.paging import decode_page_token, encode_page_token
from masar.referral import STAFF_ROLES, ReferralRecord, SectorActivities, dial_address
from masar.referral._activities import activity_error
from masar.referral._domain import ReferralFilter, stable_event_id
from masar.referral._roles import check_referral_scope, visible_to
from masar.referral.messages import (
    code_from_pb,
    code_to_pb,
    decline_reason_from_pb,
    decline_reason_to_pb,
    parse_draft,
    referral_from_pb,
    referral_to_pb,
    risk_from_pb,
    risk_to_pb,
    status_from_pb,
    status_to_pb,
)
from masar.v1 import common_pb2
from services.employment.activities import EmploymentActivities
from services.health.activities import HealthActivities
from services.legal.activities import LegalActivities
from services.psychosocial.activities import PsychosocialActivities
from services.shelter.activities import ShelterActivities


def test_every_contract_value_has_its_protobuf_twin() -> None:
    for status in ReferralStatus:
        assert status_from_pb(status_to_pb(status)) is status
    for risk in Risk:
        assert risk_from_pb(risk_to_pb(risk)) is risk
    for reason in DeclineReason:
        assert decline_reason_from_pb(decline_reason_to_pb(reason)) is reason
    assert status_from_pb(0) is None
    assert decline_reason_to_pb(None) == 0


def test_a_referral_survives_the_round_trip() -> None:
    record = ReferralRecord(
        referral_id="shr-0123456789abcdef",
        case_id="c0ffee",
        sector=Sector.SHELTER,
        provider_id="shl-1",
        status=ReferralStatus.DECLINED,
        risk=Risk.CRITICAL,
        region="oriental",
        created_at=datetime(2030, 1, 1, 8, tzinfo=UTC),
        updated_at=datetime(2030, 1, 1, 9, tzinfo=UTC),
        decided_at=datetime(2030, 1, 1, 9, tzinfo=UTC),
        decline_reason=DeclineReason.SAFETY_CONCERN,
        reminders=2,
        organisation_id="org-0123456789ab",
    )
    message = referral_to_pb(record)
    assert message.status == common_pb2.REFERRAL_STATUS_DECLINED
    assert message.decline_reason == common_pb2.DECLINE_REASON_SAFETY_CONCERN
    assert message.organisation_id == "org-0123456789ab"
    assert referral_from_pb(message) == record
    # A provider of no organisation (registered before they named one): "" on the wire.
    orphan = dataclasses.replace(record, organisation_id=None)
    assert referral_to_pb(orphan).organisation_id == ""
    assert referral_from_pb(referral_to_pb(orphan)) == orphan


def caller(role: Role, *, org: str = "", region: str = "") -> Caller:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return Caller(
        subject="acc-1",
        role=role,
        org=org,
        region=region,
        issued_at=now,
        expires_at=now + timedelta(minutes=15),
    )


@pytest.mark.parametrize("sector", list(STAFF_ROLES))
def test_staff_act_on_the_referrals_of_their_organisation_only(sector: Sector) -> None:
    staff = STAFF_ROLES[sector]
    for who in (
        caller(staff, org="org-a"),
        caller(Role.COORDINATOR, region="oriental"),
        caller(service_role(sector.value)),
    ):
        check_referral_scope(who, sector, organisation_id="org-a", region="oriental")
    other_sector = next(s for s in STAFF_ROLES if s is not sector)
    refused: list[tuple[Caller, str | None]] = [
        (caller(staff, org="org-b"), "org-a"),
        # The provider's id is no organisation: tokens naming it see nothing.
        (caller(staff, org="shl-1"), "org-a"),
        (caller(staff), "org-a"),
        # Deny by default: a provider of no organisation has no staff.
        (caller(staff, org="org-a"), None),
        (caller(STAFF_ROLES[other_sector], org="org-a"), "org-a"),
        (caller(Role.COORDINATOR, region="souss-massa"), "org-a"),
        (caller(Role.INTAKE_OFFICER, org="org-a"), "org-a"),
        (caller(service_role("intake")), "org-a"),
    ]
    for who, organisation in refused:
        with pytest.raises(PermissionDenied) as err:
            check_referral_scope(who, sector, organisation_id=organisation, region="oriental")
        assert "org-a" not in str(err.value) and "oriental" not in str(err.value)


def test_listings_are_narrowed_to_the_organisation_or_the_region() -> None:
    staff = caller(Role.SHELTER_STAFF, org="org-a")
    narrowed = visible_to(staff, Sector.SHELTER, ReferralFilter(provider_id="shl-1"))
    assert (narrowed.organisation_id, narrowed.provider_id) == ("org-a", "shl-1")
    assert visible_to(staff, Sector.SHELTER, ReferralFilter(organisation_id="org-a")) == (
        ReferralFilter(organisation_id="org-a")
    )
    coordinator = caller(Role.COORDINATOR, region="oriental")
    mine = visible_to(coordinator, Sector.SHELTER, ReferralFilter(organisation_id="org-b"))
    assert (mine.organisation_id, mine.region) == ("org-b", "oriental")
    for who, filters in [
        (staff, ReferralFilter(organisation_id="org-b")),
        (caller(Role.SHELTER_STAFF), ReferralFilter()),
        (coordinator, ReferralFilter(region="souss-massa")),
        (caller(Role.LEGAL_AID, org="org-a"), ReferralFilter()),
        (caller(Role.INTAKE_OFFICER), ReferralFilter()),
    ]:
        with pytest.raises(PermissionDenied):
            visible_to(who, Sector.SHELTER, filters)


@pytest.mark.parametrize(
    ("convert", "field"),
    [
        (lambda: status_from_pb(42), "status"),
        (lambda: risk_from_pb(0), "risk"),
        (lambda: risk_from_pb(42, "request.risk"), "request.risk"),
        (lambda: decline_reason_from_pb(42), "decline_reason"),
        (
            lambda: code_from_pb(common_pb2.Decision, 0, prefix="DECISION_", field="d"),
            "d",
        ),
    ],
)
def test_unknown_enum_numbers_name_the_field(convert: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        convert()
    assert err.value.field == field


def test_sector_codes_map_to_enum_values() -> None:
    value = code_to_pb(common_pb2.Decision, "decline", prefix="DECISION_")
    assert value == common_pb2.DECISION_DECLINE
    assert code_from_pb(common_pb2.Decision, value, prefix="DECISION_", field="d") == "decline"
    assert code_to_pb(common_pb2.Decision, None, prefix="DECISION_") == 0


def test_event_ids_are_stable_per_action_and_key() -> None:
    referral_id = "emp-0123456789abcdef"
    first = stable_event_id(referral_id, "decision", "key-1")
    assert first == stable_event_id(referral_id, "decision", "key-1")
    assert first != stable_event_id(referral_id, "decision", "key-2")
    assert first != stable_event_id(referral_id, "milestone:STARTED", "key-1")
    assert first.startswith(referral_id)
    assert len(stable_event_id(referral_id, "milestone:COMPLETED", "k" * 200)) <= 64


def test_a_fingerprint_ignores_the_idempotency_key() -> None:
    one = common_pb2.CloseReferralRequest(
        referral_id="x", status=common_pb2.REFERRAL_STATUS_REROUTED, idempotency_key="a"
    )
    two = common_pb2.CloseReferralRequest(
        referral_id="x", status=common_pb2.REFERRAL_STATUS_REROUTED, idempotency_key="b"
    )
    other = common_pb2.CloseReferralRequest(
        referral_id="x", status=common_pb2.REFERRAL_STATUS_EXPIRED, idempotency_key="a"
    )
    assert request_fingerprint(one) == request_fingerprint(two) != request_fingerprint(other)
    assert one.idempotency_key == "a"  # the request itself is untouched


def test_page_tokens_round_trip_and_bad_ones_name_the_field() -> None:
    at = datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    assert decode_page_token(encode_page_token(at, "leg-0123456789abcdef")) == (
        at,
        "leg-0123456789abcdef",
    )
    with pytest.raises(InvalidArgument) as err:
        decode_page_token("not-a-token")
    assert err.value.field == "page_token"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"case_id": ""}, "request.case_id"),
        ({"case_id": "Amina El Idrissi"}, "request.case_id"),
        ({"region": "paris"}, "request.region"),
        ({"risk": 0}, "request.risk"),
        ({"idempotency_key": ""}, "request.idempotency_key"),
        ({"idempotency_key": "k" * 201}, "request.idempotency_key"),
        ({"exclude_provider_ids": ["a b"]}, "request.exclude_provider_ids"),
        ({"provider_id": "x/y"}, "request.provider_id"),
    ],
)
def test_a_referral_request_is_validated_field_by_field(changes: dict, field: str) -> None:
    fields: dict[str, Any] = {
        "case_id": "c0ffee",
        "region": "souss-massa",
        "risk": common_pb2.RISK_LEVEL_LOW,
        "idempotency_key": "journey-c0ffee/1",
        "needs": None,
        "prefix": "request.",
    }
    draft = parse_draft(**fields)
    assert (draft.region, draft.risk, draft.provider_id) == ("souss-massa", Risk.LOW, None)
    with pytest.raises(InvalidArgument) as err:
        parse_draft(**{**fields, **changes})
    assert err.value.field == field
    assert "Amina" not in str(err.value)


def rpc_error(code: grpc.StatusCode, details: str = "referral not found") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "error_type", "non_retryable"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, contract.ERR_INVALID, True),
        (grpc.StatusCode.NOT_FOUND, contract.ERR_UNKNOWN_REFERRAL, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ERR_NO_PROVIDER, True),
        (grpc.StatusCode.FAILED_PRECONDITION, contract.ERR_INVALID, True),
        (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", False),
        (grpc.StatusCode.INTERNAL, "INTERNAL", False),
    ],
)
def test_rpc_failures_become_typed_activity_errors(
    code: grpc.StatusCode, error_type: str, non_retryable: bool
) -> None:
    error = activity_error("close_referral", rpc_error(code))
    assert (error.type, error.non_retryable) == (error_type, non_retryable)
    assert "close_referral" in str(error)


def _names(activities: SectorActivities) -> set[str | None]:
    return {activity._Definition.must_from_callable(fn).name for fn in activities.definitions()}


def test_activities_are_named_as_the_contract_says() -> None:
    names = _names(LegalActivities(stub=None))
    assert names == {
        "legal.request_referral",
        "legal.remind_provider",
        "legal.close_referral",
        "legal.purge_case",
        # The journey tells legal aid of a medical certificate (issue 15).
        "legal.note_certificate",
    }


@pytest.mark.parametrize(
    "activities",
    [
        ShelterActivities(stub=None),
        EmploymentActivities(stub=None),
        HealthActivities(stub=None),
        PsychosocialActivities(stub=None),
    ],
)
def test_every_sector_registers_the_contract_names(activities: SectorActivities) -> None:
    expected = contract.SECTOR_ACTIVITIES[activities.sector]
    assert _names(activities) == {
        expected.request_referral,
        expected.remind_provider,
        expected.close_referral,
        expected.purge_case,
    }


def test_a_process_dials_its_own_wildcard_address_on_loopback() -> None:
    assert dial_address("0.0.0.0:50052") == "127.0.0.1:50052"
    assert dial_address("[::]:50053") == "127.0.0.1:50053"
    assert dial_address("10.0.0.5:50054") == "10.0.0.5:50054"
