"""The journey API (masar.v1.JourneyService) end to end: intake's real gRPC
server, the REAL journey worker on a Temporal dev server of the test's own,
intake's own activity worker; SQLite and PostgreSQL.

- the scope walk: EVERY JourneyService method, called by officers of two
  organisations, a supervisor, a care unit's officer, coordinators of two
  regions, a coordinator holding an emergency grant, and tokens without scope
  claims — each passes exactly where she should, and lists and boards show
  exactly her journeys;
- (lists against `temporal workflow list` and live boards:
  test_journey_api_boards.py);
- every action is audited with the verified actor, and the journey records
  that actor, whatever the request says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from masar import contract as c
from masar.v1 import intake_pb2, journey_pb2
from tests.services.harness import error_field
from tests.services.intake.journey_support import (
    DENIED,
    PASSED,
    PEOPLE,
    SCOPELESS,
    UNAUTH,
    Bed,
    code,
    journey_bed,
    until,
)
from tests.services.intake.support import (
    FES,
    RABAT,
    checklist,
    hours_ago,
    key,
    ts,
)


@pytest.fixture
async def bed(tmp_path: Path, database_url: str) -> AsyncIterator[Bed]:
    """SQLite and PostgreSQL."""
    async with journey_bed(tmp_path, database_url) as running:
        yield running


@pytest.fixture
async def sqlite_bed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Bed]:
    async with journey_bed(tmp_path, sqlite_url) as running:
        yield running


class Walk:
    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.wrong: list[str] = []
        self.methods: set[str] = set()

    async def allowed_only(
        self, method: str, allowed: Iterable[str], request: Any, *, ok: bool = True
    ) -> None:
        """Every person calls: the allowed pass authorisation (one wholly,
        with `ok`); the others are PERMISSION_DENIED (scope-less tokens:
        PERMISSION_DENIED or UNAUTHENTICATED)."""
        self.methods.add(method)
        allowed = set(allowed)
        codes = {}
        for person in PEOPLE:
            call = getattr(self.bed.journeys, method)(
                request, metadata=self.bed.who[person], timeout=30
            )
            codes[person] = await code(call)
            if person in allowed and codes[person] not in PASSED:
                self.wrong.append(f"{method} as {person}: {codes[person].name}, expected to pass")
            refused = {DENIED, UNAUTH} if person in SCOPELESS else {DENIED}
            if person not in allowed and codes[person] not in refused:
                self.wrong.append(f"{method} as {person}: {codes[person].name}, expected DENIED")
        if ok and allowed and grpc.StatusCode.OK not in {codes[p] for p in allowed}:
            self.wrong.append(f"{method}: no allowed caller got through ({codes})")


def _visible(expected: dict[str, Any], seen: dict[str, Any]) -> list[str]:
    wrong = []
    for person, want in expected.items():
        got = seen[person]
        if person in SCOPELESS and got in ({DENIED, UNAUTH} if want == DENIED else {UNAUTH}):
            continue
        if got != want:
            wrong.append(f"{person}: saw {got}, expected {want}")
    return wrong


async def test_each_person_reaches_exactly_her_journeys(bed: Bed) -> None:
    who, journeys = bed.who, bed.journeys
    case1 = await bed.register("officer_a")
    case2 = await bed.register("officer_b")
    case3 = await bed.register("officer_b", region=RABAT)
    grant = await bed.intake.stub.OpenEmergencyGrant(
        intake_pb2.OpenEmergencyGrantRequest(
            case_id=case1, reason=intake_pb2.EMERGENCY_REASON_COVERING_ABSENCE
        ),
        metadata=who["coord_grant"],
    )
    # Four eyes: a coordinator of the case's region approves it.
    await bed.intake.stub.ApproveEmergencyGrant(
        intake_pb2.ApproveEmergencyGrantRequest(grant_id=grant.grant.grant_id),
        metadata=who["coord_fes"],
    )
    walk = Walk(bed)

    # --- lists and boards: each her own journeys ----------------------------------------------
    expected: dict[str, Any] = {
        "officer_a": {case1},
        "supervisor_a": {case1},
        "officer_b": {case2, case3},
        "care_unit": DENIED,
        "coord_fes": {case1, case2},
        "coord_rabat": {case3},
        # A grant opens one case, not the region's list.
        "coord_grant": {case3},
        "officer_no_org": set(),
        "coord_no_region": DENIED,
    }

    async def lists_agree() -> bool:
        seen = {p: await bed.listed(p) for p in PEOPLE}
        return not _visible(expected, seen)

    await until(lists_agree)
    walk.methods.add("ListJourneys")
    boards = {p: await bed.board(p) for p in PEOPLE}
    walk.methods.add("WatchJourneys")
    assert not _visible(expected, boards), _visible(expected, boards)
    # A coordinator names her own region only.
    assert await bed.listed("coord_fes", region=RABAT) == DENIED
    assert await bed.listed("coord_rabat", region=RABAT) == {case3}
    assert await bed.listed("officer_b", region=RABAT) == {case3}

    # --- the status ------------------------------------------------------------------------
    get = journey_pb2.GetJourneyRequest
    readers1 = {"officer_a", "supervisor_a", "coord_fes", "coord_grant"}
    await walk.allowed_only("GetJourney", readers1, get(case_id=case1))
    await walk.allowed_only(
        "GetJourney", {"officer_b", "coord_rabat", "coord_grant"}, get(case_id=case3)
    )
    status = (await journeys.GetJourney(get(case_id=case1), metadata=who["coord_grant"])).journey
    assert (status.case_id, status.region) == (case1, FES)
    assert status.workflow_id == f"journey-{case1}"
    # Read under the grant: audited with it.
    reads = [e for e in bed.audit_of(case1) if e.action == "journey.read"]
    assert any(
        e.actor == "coord-gr" and e.target == grant.grant.grant_id and e.reason == "emergency_grant"
        for e in reads
    )

    # --- coordinators' actions on case 1 ----------------------------------------------------
    steer1 = {"coord_fes", "coord_grant"}
    extend = journey_pb2.ExtendDeadlineRequest(
        case_id=case1,
        target="follow_up",
        extend_by_seconds=3600,
        reason="she asked to be called next week",
        idempotency_key=key(),
    )
    await walk.allowed_only("ExtendDeadline", steer1, extend)
    reassign = journey_pb2.ReassignReferralRequest(
        case_id=case1,
        referral_id="shr-00000000000000aa",
        provider_id="shelter-x",
        reason="closer to her family",
        idempotency_key=key(),
    )
    await walk.allowed_only("ReassignReferral", steer1, reassign, ok=False)
    decide = journey_pb2.DecideClosureRequest(
        case_id=case1,
        verdict=journey_pb2.CLOSURE_VERDICT_REFUSE,
        reason="still at risk",
        idempotency_key=key(),
    )
    # No closure is pending yet: the journey refuses (authorisation passed).
    await walk.allowed_only("DecideClosure", steer1, decide, ok=False)

    # --- the holders' changes on case 1 ----------------------------------------------------
    holders1 = {"officer_a", "supervisor_a"}
    changes: list[tuple[str, Any]] = [
        (
            "RecordFollowUp",
            intake_pb2.RecordFollowUpRequest(
                case_id=case1,
                contacted_at=ts(datetime.now(UTC)),
                channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
                idempotency_key=key(),
            ),
        ),
        (
            "ChangeConsent",
            journey_pb2.ChangeConsentRequest(
                case_id=case1,
                scope=intake_pb2.CONSENT_SCOPE_EMPLOYMENT,
                change=journey_pb2.CONSENT_CHANGE_KIND_GRANT,
                idempotency_key=key(),
            ),
        ),
        (
            "ConfirmMedicalCare",
            intake_pb2.ConfirmMedicalCareRequest(
                case_id=case1,
                item=intake_pb2.CLINICAL_ITEM_PEP,
                given_at=ts(hours_ago(2)),
                idempotency_key=key(),
            ),
        ),
        (
            "ReassessRisk",
            intake_pb2.ReassessRiskRequest(
                case_id=case1,
                risk=intake_pb2.RiskAssessmentInput(checklist=checklist("stalking")),
                idempotency_key=key(),
            ),
        ),
        (
            "RequestClosure",
            intake_pb2.RequestClosureRequest(
                case_id=case1, reason=intake_pb2.CLOSURE_REASON_NEEDS_MET, idempotency_key=key()
            ),
        ),
    ]
    for method, request in changes:
        await walk.allowed_only(method, holders1, request)
    # The case is open: the journey refuses a reopen (authorisation passed).
    reopen = intake_pb2.ReopenCaseRequest(case_id=case1, idempotency_key=key())
    await walk.allowed_only("ReopenCase", holders1, reopen, ok=False)

    # The grant holder acts on case 1 under her grant: audited with it.
    mine = journey_pb2.ExtendDeadlineRequest()
    mine.CopyFrom(extend)
    mine.idempotency_key = key()
    await journeys.ExtendDeadline(mine, metadata=who["coord_grant"])
    entries = bed.audit_of(case1)
    assert any(
        (e.action, e.actor, e.target) == ("journey.access", "coord-gr", grant.grant.grant_id)
        for e in entries
    )
    assert any((e.action, e.actor) == ("journey.extend_deadline", "coord-gr") for e in entries)

    # The closure asked above now waits: the region's coordinator decides.
    refused = await journeys.DecideClosure(decide, metadata=who["coord_fes"])
    assert refused.answer.event_id and not refused.answer.duplicate

    assert not walk.wrong, "\n".join(walk.wrong)
    every = {m.name for m in journey_pb2.DESCRIPTOR.services_by_name["JourneyService"].methods}
    assert walk.methods == every, every ^ walk.methods


async def test_actions_are_the_verified_callers_and_audited(sqlite_bed: Bed) -> None:
    bed = sqlite_bed
    who, journeys = bed.who, bed.journeys
    case_id = await bed.register("officer_a")
    request = journey_pb2.ExtendDeadlineRequest(
        case_id=case_id,
        target="follow_up",
        extend_by_seconds=7 * 24 * 3600,
        reason="she is travelling",
        idempotency_key=key(),
    )
    first = await journeys.ExtendDeadline(request, metadata=who["coord_fes"])
    assert first.answer.case_id == case_id and not first.answer.duplicate
    # A retry with the same key: the same event, once.
    again = await journeys.ExtendDeadline(request, metadata=who["coord_fes"])
    assert again.answer.event_id == first.answer.event_id
    # The same key for another request: refused, naming the field.
    other = journey_pb2.ExtendDeadlineRequest()
    other.CopyFrom(request)
    other.extend_by_seconds = 60
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await journeys.ExtendDeadline(other, metadata=who["coord_fes"])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(error.value) == "idempotency_key"

    # The journey records the verified coordinator as the actor.
    status = await bed.status(case_id)
    extended = [e for e in status.timeline if e.actor]
    assert extended and {e.actor for e in extended} == {"coord-fes"}

    # Bad input: the field is named; no reason, no action.
    for field, change in (
        ("reason", {"reason": "  "}),
        ("extend_by_seconds", {"extend_by_seconds": 0}),
        ("target", {"target": "Robert'); DROP"}),
        ("case_id", {"case_id": "nope"}),
    ):
        bad = journey_pb2.ExtendDeadlineRequest()
        bad.CopyFrom(request)
        bad.idempotency_key = key()
        for name, value in change.items():
            setattr(bad, name, value)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await journeys.ExtendDeadline(bad, metadata=who["coord_fes"])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(error.value) == field
    # An unknown case: NOT_FOUND; the journey's refusal: FAILED_PRECONDITION, worded.
    missing = journey_pb2.GetJourneyRequest(case_id="0123456789abcdef")
    assert await code(journeys.GetJourney(missing, metadata=who["coord_fes"])) == (
        grpc.StatusCode.NOT_FOUND
    )
    nothing = journey_pb2.DecideClosureRequest(
        case_id=case_id,
        verdict=journey_pb2.CLOSURE_VERDICT_APPROVE,
        reason="done",
        idempotency_key=key(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await journeys.DecideClosure(nothing, metadata=who["coord_fes"])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no closure request is waiting" in (error.value.details() or "")

    # The holder's changes through the journey API: the change-with-undo, audited.
    await journeys.RequestClosure(
        intake_pb2.RequestClosureRequest(
            case_id=case_id, reason=intake_pb2.CLOSURE_REASON_NEEDS_MET, idempotency_key=key()
        ),
        metadata=who["officer_a"],
    )
    approved = await journeys.DecideClosure(nothing, metadata=who["coord_fes"])
    assert approved.answer.stage == journey_pb2.JOURNEY_STAGE_CLOSED

    entries = bed.audit_of(case_id)
    by_action = {(e.action, e.actor, e.role) for e in entries}
    assert ("journey.extend_deadline", "coord-fes", "coordinator") in by_action
    assert ("journey.decide_closure", "coord-fes", "coordinator") in by_action
    assert ("journey.decide_closure_failed", "coord-fes", "coordinator") in by_action
    assert ("case.closure_requested", "officer-a", "intake_officer") in by_action
    failed = [e for e in entries if e.action == "journey.decide_closure_failed"]
    assert [e.reason for e in failed] == [c.ERR_NO_CLOSURE_PENDING]
    # One audited extension: the retry did not act again.
    assert sum(e.action == "journey.extend_deadline" for e in entries) == 1
    # Nothing free-text in the audit log.
    assert not any("travelling" in str(e) for e in entries)
