"""The journey API's list scope, visibility query and page tokens, without
servers: values are validated and quoted, never interpolated as sent; each
caller's scope is hers; a page token works only for the list it came from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masar.contract import Risk, Stage
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from services.intake.journey_api import JourneyRefused, refusal_message
from services.intake.journey_scope import (
    Cursor,
    JourneyFilter,
    ListScope,
    decode_cursor,
    encode_cursor,
    list_scope,
    quote,
    visibility_query,
)

FES, RABAT = "fes-meknes", "rabat-sale-kenitra"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CASE_A, CASE_B = "0123456789abcdef", "fedcba9876543210"
RUNNING = "WorkflowType = 'SurvivorJourney' AND ExecutionStatus = 'Running'"


def caller(role: Role, *, org: str = "", region: str = "", subject: str = "someone") -> Caller:
    return Caller(
        subject=subject,
        role=role,
        org=org,
        region=region,
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


COORD_FES = caller(Role.COORDINATOR, region=FES, subject="coord-fes")
COORD_RABAT = caller(Role.COORDINATOR, region=RABAT, subject="coord-rb")
OFFICER_A = caller(Role.INTAKE_OFFICER, org="org-a", region=FES, subject="officer-a")


def test_a_coordinator_lists_her_region_only() -> None:
    assert list_scope(COORD_FES, JourneyFilter()) == ListScope(region=FES)
    assert list_scope(COORD_FES, JourneyFilter(region=FES)) == ListScope(region=FES)
    with pytest.raises(PermissionDenied):
        list_scope(COORD_FES, JourneyFilter(region=RABAT))
    with pytest.raises(PermissionDenied):
        list_scope(caller(Role.COORDINATOR), JourneyFilter())


def test_officers_and_supervisors_list_what_their_organisation_holds() -> None:
    assert list_scope(OFFICER_A, JourneyFilter()) == ListScope(holder="org-a")
    supervisor = caller(Role.SUPERVISOR, org="org-a")
    assert list_scope(supervisor, JourneyFilter(region=RABAT)) == ListScope(holder="org-a")
    for role in (Role.CARE_UNIT_OFFICER, Role.OPERATOR, Role.SHELTER_STAFF, Role.SERVICE_INTAKE):
        with pytest.raises(PermissionDenied):
            list_scope(caller(role, org="org-x", region=FES), JourneyFilter())


def test_the_query_is_built_from_validated_values() -> None:
    scope = ListScope(region=FES)
    assert visibility_query(scope, JourneyFilter()) == f"{RUNNING} AND MasarRegion = '{FES}'"
    wanted = JourneyFilter(
        stage=Stage.SAFETY,
        risk=Risk.HIGH,
        min_escalation_level=2,
        next_deadline_before=NOW,
    )
    assert visibility_query(scope, wanted) == (
        f"{RUNNING} AND MasarRegion = '{FES}' AND MasarStage = 'SAFETY' AND MasarRisk = 'high'"
        " AND MasarEscalationLevel >= 2"
        " AND MasarNextDeadline < '2026-12-01T12:00:00.000000Z'"
    )
    held = visibility_query(ListScope(holder="org-a"), JourneyFilter(), [CASE_A, CASE_B])
    assert held.endswith(f"WorkflowId IN ('journey-{CASE_A}', 'journey-{CASE_B}')")


def test_nothing_unvalidated_reaches_the_query() -> None:
    for region in ("fes-meknes' OR 'a'='a", "atlantis", "FES-MEKNES"):
        with pytest.raises(InvalidArgument) as error:
            JourneyFilter(region=region)
        assert error.value.field == "filter.region"
    with pytest.raises(InvalidArgument):
        JourneyFilter(min_escalation_level=4)
    with pytest.raises(InvalidArgument):
        visibility_query(ListScope(holder="org-a"), JourneyFilter(), ["x') OR ('1'='1"])
    with pytest.raises(ValueError):
        quote("a' OR 'b")
    with pytest.raises(ValueError):
        quote("")


def test_a_page_token_serves_its_own_list_only() -> None:
    scope, wanted = ListScope(region=FES), JourneyFilter(stage=Stage.SAFETY)
    token = encode_cursor(Cursor(temporal=b"\x00opaque"), COORD_FES, scope, wanted)
    assert decode_cursor(token, COORD_FES, scope, wanted) == Cursor(temporal=b"\x00opaque")
    assert decode_cursor("", COORD_FES, scope, wanted) == Cursor()
    refused = (
        (COORD_FES, scope, JourneyFilter()),  # another filter
        (COORD_RABAT, ListScope(region=RABAT), wanted),  # another caller
        (OFFICER_A, ListScope(holder="org-a"), wanted),
    )
    for who, their_scope, their_filter in refused:
        with pytest.raises(InvalidArgument) as error:
            decode_cursor(token, who, their_scope, their_filter)
        assert error.value.field == "page_token"
    for garbage in ("!!", "e30", "x" * 5000):
        with pytest.raises(InvalidArgument):
            decode_cursor(garbage, COORD_FES, scope, wanted)
    held = ListScope(holder="org-a")
    walked = encode_cursor(Cursor(after_case=CASE_A), OFFICER_A, held, wanted)
    assert decode_cursor(walked, OFFICER_A, held, wanted) == Cursor(after_case=CASE_A)


def test_the_journeys_refusals_are_worded_without_values() -> None:
    assert refusal_message("NoClosurePending") == (
        "the journey refused: no closure request is waiting for a decision"
    )
    assert refusal_message("InvalidRequest", "provider_id: already assigned") == (
        "the journey refused: provider_id is not acceptable"
    )
    assert refusal_message("Mystery", "secret value") == "the journey refused (Mystery)"
    refused = JourneyRefused("StaleReferral")
    assert refused.error_type == "StaleReferral" and refused.code.value == "FAILED_PRECONDITION"
