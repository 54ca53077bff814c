"""The scope walk: EVERY intake RPC, called by intake officers of two
organisations, a supervisor, a care unit's officer and coordinators of two
regions, on records each may or may not see — each sees exactly what she
should, on SQLite and PostgreSQL (the `intake` fixture runs both, with the
stand-in journey on the real dev server).

The records: case 1 and case 4, held by association A in Fès (each with a
transfer to centre B waiting); case 2, registered by a care unit for centre
B to hold; case 3, held by centre B in Rabat. Escalations on cases 1 and 3,
and a transfer's reminder addressed to centre B.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio

from masar.platform.identity import Role
from masar.v1 import common_pb2, intake_pb2
from tests.services.harness import error_field
from tests.services.intake.support import (
    ALIAS,
    FES,
    NARRATIVE,
    PHONE,
    RABAT,
    Intake,
    checklist,
    hours_ago,
    key,
    registration,
    ts,
)
from tests.support_auth import bearer, token_for

ORG_A, ORG_B, ORG_D, CARE = "org-assoc-a", "org-centre-b", "org-assoc-d", "org-care-unit-c"
PEOPLE = ("officer_a", "supervisor_a", "officer_b", "care_unit", "coord_fes", "coord_rabat")
DENIED = grpc.StatusCode.PERMISSION_DENIED
# Codes of a call that passed authorisation (the rest of the request decided).
PASSED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)
CONSENTS = [intake_pb2.CONSENT_SCOPE_SHELTER, intake_pb2.CONSENT_SCOPE_LEGAL]


def tokens() -> dict[str, tuple[tuple[str, str]]]:
    return {
        "officer_a": bearer(token_for(Role.INTAKE_OFFICER, ORG_A, FES, subject="officer-a")),
        "supervisor_a": bearer(token_for(Role.SUPERVISOR, ORG_A, FES, subject="supervisor-a")),
        "officer_b": bearer(token_for(Role.INTAKE_OFFICER, ORG_B, FES, subject="officer-b")),
        "care_unit": bearer(token_for(Role.CARE_UNIT_OFFICER, CARE, FES, subject="care-c")),
        "coord_fes": bearer(token_for(Role.COORDINATOR, region=FES, subject="coord-fes")),
        "coord_rabat": bearer(token_for(Role.COORDINATOR, region=RABAT, subject="coord-rb")),
        "service": bearer(token_for("service:intake")),
    }


async def code(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def in_region(region: str) -> intake_pb2.RegisterCaseRequest:
    request = registration(consents=CONSENTS)
    request.survivor.region = region
    return request


class Walk:
    def __init__(self, intake: Intake) -> None:
        self.stub = intake.stub
        self.who = tokens()
        self.wrong: list[str] = []
        self.methods: set[str] = set()

    async def register(self, person: str, region: str = FES, holder: str = "") -> str:
        request = in_region(region)
        request.holding_organisation_id = holder
        reply = await self.stub.RegisterCase(request, metadata=self.who[person])
        return str(reply.case.summary.case_id)

    async def transfer(self, case_id: str, to: str) -> str:
        reply = await self.stub.RequestTransfer(
            intake_pb2.RequestTransferRequest(
                case_id=case_id,
                to_organisation_id=to,
                reason=intake_pb2.TRANSFER_REASON_CLOSER_TO_HOME,
                survivor_consents=True,
                idempotency_key=key(),
            ),
            metadata=self.who["officer_a"],
        )
        return str(reply.transfer.transfer_id)

    async def allowed_only(
        self, method: str, allowed: Iterable[str], request: Any, *, ok: bool = True
    ) -> None:
        """Call `method` as every person: the allowed ones pass authorisation
        (at least one wholly, with `ok`), everyone else is PERMISSION_DENIED."""
        self.methods.add(method)
        allowed = set(allowed)
        codes = {}
        for person in PEOPLE:
            codes[person] = await code(
                getattr(self.stub, method)(request, metadata=self.who[person])
            )
            if person in allowed and codes[person] not in PASSED:
                self.wrong.append(f"{method} as {person}: {codes[person].name}, expected to pass")
            if person not in allowed and codes[person] != DENIED:
                self.wrong.append(f"{method} as {person}: {codes[person].name}, expected DENIED")
        if ok and allowed and grpc.StatusCode.OK not in {codes[p] for p in allowed}:
            self.wrong.append(f"{method}: no allowed caller got through ({codes})")

    async def listed(self, method: str, request: Any, field: str, id_field: str) -> dict[str, Any]:
        """Who sees which ids in a list (DENIED for those it is closed to)."""
        self.methods.add(method)
        seen: dict[str, Any] = {}
        for person in PEOPLE:
            try:
                reply = await getattr(self.stub, method)(request, metadata=self.who[person])
            except grpc.aio.AioRpcError as exc:
                seen[person] = exc.code()
                continue
            items = getattr(reply, field)
            seen[person] = {
                getattr(item.summary if hasattr(item, "summary") else item, id_field)
                for item in items
            }
        return seen


async def test_each_person_sees_and_changes_exactly_her_scope(intake: Intake) -> None:
    walk = Walk(intake)
    stub, who = walk.stub, walk.who

    # --- the records ---------------------------------------------------------------------
    case1 = await walk.register("officer_a")
    case4 = await walk.register("officer_a")
    case2 = await walk.register("care_unit", holder=ORG_B)
    case3 = await walk.register("officer_b", region=RABAT)
    t1 = await walk.transfer(case1, ORG_B)
    t2 = await walk.transfer(case4, ORG_B)
    due = ts(datetime.now(UTC) + timedelta(hours=1))
    e1 = await stub.RecordEscalation(
        intake_pb2.RecordEscalationRequest(
            case_id=case1,
            region=FES,
            level=2,
            wait="shelter_accept",
            due_at=due,
            idempotency_key=key(),
        ),
        metadata=who["service"],
    )
    e3 = await stub.RecordEscalation(
        intake_pb2.RecordEscalationRequest(
            case_id=case3,
            region=RABAT,
            level=2,
            wait="legal_accept",
            due_at=due,
            idempotency_key=key(),
        ),
        metadata=who["service"],
    )
    r1 = await stub.RecordTransferRung(
        intake_pb2.RecordTransferRungRequest(
            case_id=case1,
            region=FES,
            transfer_id=t1,
            to_organisation_id=ORG_B,
            level=1,
            due_at=due,
            idempotency_key=key(),
        ),
        metadata=who["service"],
    )
    esc1, esc3, rung1 = (
        e1.escalation.escalation_id,
        e3.escalation.escalation_id,
        r1.escalation.escalation_id,
    )
    assert r1.escalation.organisation_id == ORG_B and r1.escalation.transfer_id == t1

    # What registration recorded: the source and the holder.
    summaries = (
        await stub.ListCases(intake_pb2.ListCasesRequest(), metadata=who["coord_fes"])
    ).cases
    orgs = {s.case_id: (s.source_organisation_id, s.holding_organisation_id) for s in summaries}
    assert orgs[case1] == (ORG_A, ORG_A) and orgs[case2] == (CARE, ORG_B)

    # --- reads -------------------------------------------------------------------------------
    reads = {
        case1: {"officer_a", "supervisor_a", "coord_fes"},
        case2: {"officer_b", "coord_fes"},
        case3: {"officer_b", "coord_rabat"},
    }
    for case_id, allowed in reads.items():
        await walk.allowed_only("GetCase", allowed, intake_pb2.GetCaseRequest(case_id=case_id))
        # The follow-up view (no personal data) is also the source care unit's.
        followers = allowed | ({"care_unit"} if case_id == case2 else set())
        request = intake_pb2.GetCaseFollowUpRequest(case_id=case_id)
        await walk.allowed_only("GetCaseFollowUp", followers, request)
    follow_up = await stub.GetCaseFollowUp(
        intake_pb2.GetCaseFollowUpRequest(case_id=case2), metadata=who["care_unit"]
    )
    assert follow_up.follow_up.summary.case_id == case2
    assert [c.scope for c in follow_up.follow_up.consents][:2] == CONSENTS
    for secret in (ALIAS, PHONE, NARRATIVE):
        assert secret not in str(follow_up)

    assert await walk.listed("ListCases", intake_pb2.ListCasesRequest(), "cases", "case_id") == {
        "officer_a": {case1, case4},
        "supervisor_a": {case1, case4},
        "officer_b": {case2, case3},
        "care_unit": {case2},
        "coord_fes": {case1, case2, case4},
        "coord_rabat": {case3},
    }
    rabat_only = intake_pb2.ListCasesRequest(region=RABAT)
    assert await walk.listed("ListCases", rabat_only, "cases", "case_id") == {
        "officer_a": set(),
        "supervisor_a": set(),
        "officer_b": {case3},
        "care_unit": set(),
        "coord_fes": DENIED,
        "coord_rabat": {case3},
    }
    transfer_readers = {"officer_a", "supervisor_a", "officer_b", "coord_fes"}
    for transfer_id in (t1, t2):
        request_t = intake_pb2.GetTransferRequest(transfer_id=transfer_id)
        await walk.allowed_only("GetTransfer", transfer_readers, request_t)
    assert await walk.listed(
        "ListTransfers", intake_pb2.ListTransfersRequest(), "transfers", "transfer_id"
    ) == {
        "officer_a": {t1, t2},
        "supervisor_a": {t1, t2},
        "officer_b": {t1, t2},
        "care_unit": DENIED,
        "coord_fes": {t1, t2},
        "coord_rabat": set(),
    }
    assert await walk.listed(
        "ListEscalations", intake_pb2.ListEscalationsRequest(), "escalations", "escalation_id"
    ) == {
        "officer_a": {esc1, rung1},
        "supervisor_a": {esc1, rung1},
        "officer_b": {esc3, rung1},
        "care_unit": DENIED,
        "coord_fes": {esc1, rung1},
        "coord_rabat": {esc3},
    }

    # --- changes to case 1 (held by A) -------------------------------------------------------
    holders_a = {"officer_a", "supervisor_a"}
    changes: list[tuple[str, Any]] = [
        (
            "RecordConsent",
            intake_pb2.RecordConsentRequest(
                case_id=case1, scope=intake_pb2.CONSENT_SCOPE_EMPLOYMENT, idempotency_key=key()
            ),
        ),
        (
            "WithdrawConsent",
            intake_pb2.WithdrawConsentRequest(
                case_id=case1, scope=intake_pb2.CONSENT_SCOPE_LEGAL, idempotency_key=key()
            ),
        ),
        (
            "DeclineService",
            intake_pb2.DeclineServiceRequest(
                case_id=case1, sector=common_pb2.SECTOR_SHELTER, idempotency_key=key()
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
            "RecordFollowUp",
            intake_pb2.RecordFollowUpRequest(
                case_id=case1,
                contacted_at=ts(datetime.now(UTC)),
                channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
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
            "RequestClosure",
            intake_pb2.RequestClosureRequest(
                case_id=case1,
                reason=intake_pb2.CLOSURE_REASON_NEEDS_MET,
                idempotency_key=key(),
            ),
        ),
    ]
    for method, request in changes:
        await walk.allowed_only(method, holders_a, request)
    # The stand-in refuses a reopen while the case is open: passed authorisation.
    reopen = intake_pb2.ReopenCaseRequest(case_id=case1, idempotency_key=key())
    await walk.allowed_only("ReopenCase", holders_a, reopen, ok=False)

    # --- registration --------------------------------------------------------------------------
    # (One request for all: the others' retries of officer A's key are refused
    # as another request, and the care unit must name a holder.)
    registrars = {"officer_a", "supervisor_a", "officer_b", "care_unit"}
    await walk.allowed_only("RegisterCase", registrars, in_region(FES))
    care_request = in_region(FES)
    care_request.holding_organisation_id = ORG_D
    registered = await stub.RegisterCase(care_request, metadata=who["care_unit"])
    # A care unit gets back the follow-up view: no personal data.
    assert registered.case.summary.holding_organisation_id == ORG_D
    assert registered.case.summary.source_organisation_id == CARE
    for secret in (ALIAS, PHONE, NARRATIVE):
        assert secret not in str(registered)
    # ... and must name the holder; an officer registers for her own organisation.
    for person, holder in (("care_unit", ""), ("care_unit", CARE), ("officer_a", ORG_B)):
        bad = in_region(FES)
        bad.holding_organisation_id = holder
        with_error = stub.RegisterCase(bad, metadata=who[person])
        try:
            await with_error
            raise AssertionError(f"{person} registered with holder {holder!r}")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_field(exc) == "holding_organisation_id"

    # --- transfers -------------------------------------------------------------------------------
    ask = intake_pb2.RequestTransferRequest(
        case_id=case3,
        to_organisation_id=ORG_A,
        reason=intake_pb2.TRANSFER_REASON_LANGUAGE,
        survivor_consents=True,
        idempotency_key=key(),
    )
    await walk.allowed_only("RequestTransfer", {"officer_b"}, ask)
    redirect = intake_pb2.RedirectTransferRequest(
        transfer_id=t2, to_organisation_id=ORG_D, survivor_consents=True, idempotency_key=key()
    )
    await walk.allowed_only("RedirectTransfer", {"coord_fes"}, redirect)
    # Redirected: centre B no longer sees it; association D does.
    redirected = await stub.GetTransfer(
        intake_pb2.GetTransferRequest(transfer_id=t2), metadata=who["officer_a"]
    )
    assert redirected.transfer.to_organisation_id == ORG_D
    assert (
        await code(
            stub.GetTransfer(
                intake_pb2.GetTransferRequest(transfer_id=t2), metadata=who["officer_b"]
            )
        )
        == DENIED
    )
    decide = intake_pb2.DecideTransferRequest(transfer_id=t1, accept=True, idempotency_key=key())
    await walk.allowed_only("DecideTransfer", {"officer_b"}, decide)

    # Ownership moved: case 1 is B's now, and A's no longer.
    await walk.allowed_only(
        "GetCase", {"officer_b", "coord_fes"}, intake_pb2.GetCaseRequest(case_id=case1)
    )
    follow_up_1 = intake_pb2.RecordFollowUpRequest(
        case_id=case1,
        contacted_at=ts(datetime.now(UTC)),
        channel=intake_pb2.FOLLOW_UP_CHANNEL_IN_PERSON,
        idempotency_key=key(),
    )
    await walk.allowed_only("RecordFollowUp", {"officer_b"}, follow_up_1)

    # --- the journeys' and the sectors' own calls: nobody here -------------------------
    internal: tuple[tuple[str, Any], ...] = (
        ("RecordEscalation", intake_pb2.RecordEscalationRequest(case_id=case1, region=FES)),
        ("RecordTransferRung", intake_pb2.RecordTransferRungRequest(case_id=case1, region=FES)),
        (
            "IssueConsentProof",
            intake_pb2.IssueConsentProofRequest(case_id=case1, sector=common_pb2.SECTOR_SHELTER),
        ),
    )
    for method, request in internal:
        await walk.allowed_only(method, set(), request)

    # --- emergency access: coordinators only, outside their own region ---------------------
    grant = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case3, reason=intake_pb2.EMERGENCY_REASON_SURVIVOR_RELOCATED
    )
    await walk.allowed_only("OpenEmergencyGrant", {"coord_fes", "coord_rabat"}, grant)
    read3 = intake_pb2.GetCaseRequest(case_id=case3)
    assert await code(stub.GetCase(read3, metadata=who["coord_fes"])) == DENIED  # not approved
    # Lists: the requester's own; the case's region's coordinators; the
    # holding organisation's supervisors (centre B has none here).
    seen = await walk.listed(
        "ListEmergencyGrants", intake_pb2.ListEmergencyGrantsRequest(), "grants", "grant_id"
    )
    asked = seen["coord_fes"]
    assert len(asked) == 1 and seen["coord_rabat"] == asked and seen["supervisor_a"] == set()
    assert {seen[p] for p in ("officer_a", "officer_b", "care_unit")} == {DENIED}
    # A second person of the case's region approves: not the requester, not
    # a supervisor of another organisation.
    (first,) = asked
    approve = intake_pb2.ApproveEmergencyGrantRequest(grant_id=first)
    await walk.allowed_only("ApproveEmergencyGrant", {"coord_rabat"}, approve)
    # Under her grant, Fès's coordinator reads the Rabat case; the officers of
    # the association that no longer holds case 1 get nothing.
    assert await code(stub.GetCase(read3, metadata=who["coord_fes"])) == grpc.StatusCode.OK
    grants = await stub.OpenEmergencyGrant(grant, metadata=who["coord_fes"])
    refuse = intake_pb2.RefuseEmergencyGrantRequest(grant_id=grants.grant.grant_id)
    await walk.allowed_only("RefuseEmergencyGrant", {"coord_rabat"}, refuse)
    # Revoked by its holder or its approver only.
    revoke = intake_pb2.RevokeEmergencyGrantRequest(grant_id=first)
    await walk.allowed_only("RevokeEmergencyGrant", {"coord_fes", "coord_rabat"}, revoke)
    assert await code(stub.GetCase(read3, metadata=who["coord_fes"])) == DENIED

    assert not walk.wrong, "\n".join(walk.wrong)
    every = {m.name for m in intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].methods}
    assert walk.methods == every, every ^ walk.methods
