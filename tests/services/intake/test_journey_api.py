"""The journey API (masar.v1.JourneyService) end to end: intake's real gRPC
server, the REAL journey worker on a Temporal dev server of the test's own,
intake's own activity worker; SQLite and PostgreSQL.

- the scope walk: EVERY JourneyService method, called by officers of two
  organisations, a supervisor, a care unit's officer, coordinators of two
  regions, a coordinator holding an emergency grant, and tokens without scope
  claims — each passes exactly where she should, and lists and boards show
  exactly her journeys;
- ListJourneys agrees with `temporal workflow list --query`;
- WatchJourneys delivers a change within about two seconds;
- every action is audited with the verified actor, and the journey records
  that actor, whatever the request says.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy.orm import Session

from masar import contract as c
from masar.platform import audit
from masar.platform.identity import Role
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import common_pb2, intake_pb2, journey_pb2, journey_pb2_grpc
from tests.conftest import DevServer, binary, free_port
from tests.services.harness import error_field
from tests.services.intake.support import (
    FES,
    RABAT,
    Intake,
    checklist,
    hours_ago,
    key,
    registration,
    running_intake,
    ts,
)
from tests.support_auth import TEST_ISSUER, bearer, token_for
from workflows.policy import load_policy
from workflows.worker import build_worker

ORG_A, ORG_B = "org-assoc-a", "org-centre-b"
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
# A call that passed authorisation: the rest of the request decided.
PASSED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)
# Tokens without the scope claim their role needs: refused when they are
# verified (issue 12, item 6), or denied by the scope rules meanwhile.
SCOPELESS = ("officer_no_org", "coord_no_region")
PEOPLE = (
    "officer_a",
    "supervisor_a",
    "officer_b",
    "care_unit",
    "coord_fes",
    "coord_rabat",
    "coord_grant",
    *SCOPELESS,
)


def _scopeless_coordinator() -> str:
    """A coordinator's token naming no region (the issuer refuses to make one)."""
    now = int(datetime.now(UTC).timestamp())
    header = {"alg": "EdDSA", "typ": "JWT", "kid": TEST_ISSUER.key_id}
    claims = {
        "iss": "masar",
        "sub": "coord-nowhere",
        "role": "coordinator",
        "org": "",
        "region": "",
        "iat": now,
        "exp": now + 3600,
        "jti": "walk",
    }
    return TEST_ISSUER._sign(header, claims)


def people() -> dict[str, Any]:
    return {
        "officer_a": bearer(token_for(Role.INTAKE_OFFICER, ORG_A, FES, subject="officer-a")),
        "supervisor_a": bearer(token_for(Role.SUPERVISOR, ORG_A, FES, subject="supervisor-a")),
        "officer_b": bearer(token_for(Role.INTAKE_OFFICER, ORG_B, FES, subject="officer-b")),
        "care_unit": bearer(token_for(Role.CARE_UNIT_OFFICER, "org-care-c", FES, subject="cu")),
        "coord_fes": bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes")),
        "coord_rabat": bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rb")),
        # Of Rabat, with an emergency grant on case 1 (Fès).
        "coord_grant": bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-gr")),
        "officer_no_org": bearer(token_for(Role.INTAKE_OFFICER, subject="officer-none")),
        "coord_no_region": bearer(_scopeless_coordinator()),
    }


@dataclass
class Bed:
    intake: Intake
    journeys: journey_pb2_grpc.JourneyServiceStub
    server: DevServer
    who: dict[str, Any]

    async def register(self, person: str, region: str = FES) -> str:
        # Medical care only: clinical windows, no sector to call.
        request = registration(needs=[common_pb2.SECTOR_MEDICAL], consents=[])
        request.survivor.region = region
        reply = await self.intake.stub.RegisterCase(request, metadata=self.who[person])
        assert reply.journey_start == common_pb2.DELIVERY_STATE_DELIVERED
        return str(reply.case.summary.case_id)

    async def listed(self, person: str, **filters: Any) -> set[str] | grpc.StatusCode:
        request = journey_pb2.ListJourneysRequest(filter=journey_pb2.JourneyFilter(**filters))
        try:
            reply = await self.journeys.ListJourneys(request, metadata=self.who[person])
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return {j.case_id for j in reply.journeys}

    async def board(self, person: str) -> set[str] | grpc.StatusCode:
        """What a board shows before SYNCED (then the watch is cancelled)."""
        call = self.journeys.WatchJourneys(
            journey_pb2.WatchJourneysRequest(), metadata=self.who[person], timeout=30
        )
        seen: set[str] = set()
        try:
            async for event in call:
                if event.kind == journey_pb2.JOURNEY_EVENT_KIND_SYNCED:
                    return seen
                assert event.kind == journey_pb2.JOURNEY_EVENT_KIND_ADDED
                seen.add(event.journey.case_id)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()
        raise AssertionError("the board ended before SYNCED")

    def audit_of(self, case_id: str) -> list[audit.AuditEntry]:
        with Session(self.intake.running.process.database.engine) as s:
            return audit.entries_for_case(s, case_id)

    async def status(self, case_id: str) -> c.JourneyStatus:
        status: c.JourneyStatus = await self.intake.handle(case_id).query(
            c.QUERY_STATUS, result_type=c.JourneyStatus
        )
        return status


async def until(check: Callable[[], Awaitable[Any]], *, within: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def journey_bed(tmp_path: Path, database_url: str) -> AsyncIterator[Bed]:
    server = DevServer(free_port())
    try:
        client = await connect_temporal(
            TemporalSettings(address=server.address, namespace=server.namespace)
        )
        async with (
            build_worker(client, load_policy()),
            running_intake(
                tmp_path,
                database_url,
                temporal_address=server.address,
                journey_queue=c.JOURNEY_TASK_QUEUE,
                client=client,
                run_worker=True,
            ) as intake,
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{intake.running.process.port}")
            try:
                yield Bed(intake, journey_pb2_grpc.JourneyServiceStub(channel), server, people())
            finally:
                await channel.close()
    finally:
        server.stop()


@pytest.fixture
async def bed(tmp_path: Path, database_url: str) -> AsyncIterator[Bed]:
    """SQLite and PostgreSQL."""
    async with journey_bed(tmp_path, database_url) as running:
        yield running


@pytest.fixture
async def sqlite_bed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Bed]:
    async with journey_bed(tmp_path, sqlite_url) as running:
        yield running


async def code(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


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


def _temporal_list(bed: Bed, query: str) -> set[str]:
    out = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "list",
            "--address",
            bed.server.address,
            "--namespace",
            bed.server.namespace,
            "--query",
            query,
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    text = out.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    return {r["execution"]["workflowId"].removeprefix("journey-") for r in rows}


async def test_lists_agree_with_temporal_and_boards_see_changes_within_two_seconds(
    sqlite_bed: Bed,
) -> None:
    bed = sqlite_bed
    who, journeys = bed.who, bed.journeys
    cases = [await bed.register("officer_a") for _ in range(3)]
    rabat = await bed.register("officer_b", region=RABAT)

    async def all_listed() -> bool:
        listed = await bed.listed("coord_fes")
        return isinstance(listed, set) and set(cases) <= listed

    await until(all_listed)
    running = "WorkflowType = 'SurvivorJourney' AND ExecutionStatus = 'Running'"
    fes = f"{running} AND MasarRegion = '{FES}'"
    assert await bed.listed("coord_fes") == _temporal_list(bed, fes) == set(cases)
    assert (
        await bed.listed("coord_rabat")
        == _temporal_list(bed, f"{running} AND MasarRegion = '{RABAT}'")
        == {rabat}
    )

    # Pages: two coordinators' pages of two; an officer's walk of her cases.
    first = await journeys.ListJourneys(
        journey_pb2.ListJourneysRequest(page_size=2), metadata=who["coord_fes"]
    )
    assert len(first.journeys) == 2 and first.next_page_token
    rest = await journeys.ListJourneys(
        journey_pb2.ListJourneysRequest(page_size=2, page_token=first.next_page_token),
        metadata=who["coord_fes"],
    )
    assert {j.case_id for j in [*first.journeys, *rest.journeys]} == set(cases)
    # A token is for its own list: another filter or another caller is refused.
    for person, request in (
        (
            "coord_fes",
            journey_pb2.ListJourneysRequest(
                page_size=2,
                page_token=first.next_page_token,
                filter=journey_pb2.JourneyFilter(risk=common_pb2.RISK_LEVEL_HIGH),
            ),
        ),
        (
            "coord_rabat",
            journey_pb2.ListJourneysRequest(page_size=2, page_token=first.next_page_token),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await journeys.ListJourneys(request, metadata=who[person])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_field(error.value) == "page_token"
    seen: set[str] = set()
    token = ""
    while True:
        page = await journeys.ListJourneys(
            journey_pb2.ListJourneysRequest(page_size=1, page_token=token),
            metadata=who["officer_a"],
        )
        seen |= {j.case_id for j in page.journeys}
        token = page.next_page_token
        if not token:
            break
    assert seen == set(cases)

    # A live board: a closure request moves one journey to CLOSURE_PENDING.
    call = journeys.WatchJourneys(
        journey_pb2.WatchJourneysRequest(
            filter=journey_pb2.JourneyFilter(stage=journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING)
        ),
        metadata=who["coord_fes"],
    )
    events: asyncio.Queue[journey_pb2.JourneyEvent] = asyncio.Queue()

    async def read() -> None:
        async for event in call:
            await events.put(event)

    reader = asyncio.create_task(read())
    try:
        synced = await asyncio.wait_for(events.get(), timeout=15)
        assert synced.kind == journey_pb2.JOURNEY_EVENT_KIND_SYNCED  # nothing pending yet
        await journeys.RequestClosure(
            intake_pb2.RequestClosureRequest(
                case_id=cases[0],
                reason=intake_pb2.CLOSURE_REASON_SURVIVOR_REQUEST,
                idempotency_key=key(),
            ),
            metadata=who["officer_a"],
        )
        asked = asyncio.get_running_loop().time()
        added = await asyncio.wait_for(events.get(), timeout=10)
        delay = asyncio.get_running_loop().time() - asked
        assert added.kind == journey_pb2.JOURNEY_EVENT_KIND_ADDED
        assert added.journey.case_id == cases[0]
        assert added.journey.stage == journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING
        # Polled every 1.5 s; visibility is near-immediate on the dev server.
        assert delay < 2.5, delay
        pending = f"{fes} AND MasarStage = 'CLOSURE_PENDING'"
        listed = await bed.listed("coord_fes", stage=journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING)
        assert listed == _temporal_list(bed, pending) == {cases[0]}

        # The coordinator refuses: the journey leaves CLOSURE_PENDING, and the board says so.
        await journeys.DecideClosure(
            journey_pb2.DecideClosureRequest(
                case_id=cases[0],
                verdict=journey_pb2.CLOSURE_VERDICT_REFUSE,
                reason="not yet",
                idempotency_key=key(),
            ),
            metadata=who["coord_fes"],
        )
        removed = await asyncio.wait_for(events.get(), timeout=10)
        assert removed.kind == journey_pb2.JOURNEY_EVENT_KIND_REMOVED
        assert removed.journey.case_id == cases[0]
    finally:
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    # A board ends when its token does.
    brief = bearer(
        token_for(Role.COORDINATOR, region=FES, subject="coord-fes", ttl=timedelta(seconds=3))
    )
    ending = journeys.WatchJourneys(journey_pb2.WatchJourneysRequest(), metadata=brief, timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in ending:
            pass
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Escalation and deadline filters agree with Temporal too.
    soon = datetime.now(UTC) + timedelta(days=400)
    before = ts(soon)
    listed = await bed.listed("coord_fes", next_deadline_before=before)
    stamp = soon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert listed == _temporal_list(bed, f"{fes} AND MasarNextDeadline < '{stamp}'")
    assert await bed.listed("coord_fes", escalated_only=True) == _temporal_list(
        bed, f"{fes} AND MasarEscalationLevel >= 1"
    )
