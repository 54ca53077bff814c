"""Intake officers' commands: a quick registration and the changes a survivor asks for.

The full registration form is the intake API; `case open` is the quick path an
officer uses at a listening centre. Risk given with --risk is recorded as the
officer's professional judgement (an override with a reason), which may only
raise the computed level.

Registration is IntakeService's; the changes the case's holder records on it
(follow-up, consent withdrawn, medical care, closure request, reopening) go
through the journey API (JourneyService, on intake's address), which stores
each one and delivers it to the journey — one path for each.

The incident time (`--incident-at`) is taken as people give it: any ISO 8601
time, read as Morocco's local time (Africa/Casablanca, whose offset changes
around Ramadan) when it has no offset, and kept to the hour it fell in (the
clinical windows count from that hour); the officer is told when minutes
were dropped.
"""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from masar import contract as c
from masar.cli import connect, journeys
from masar.cli.output import CliError, Output
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc, journey_pb2, legal_pb2

SECTORS = {
    "shelter": common_pb2.SECTOR_SHELTER,
    "legal": common_pb2.SECTOR_LEGAL,
    "employment": common_pb2.SECTOR_EMPLOYMENT,
    "medical": common_pb2.SECTOR_MEDICAL,
    "psychosocial": common_pb2.SECTOR_PSYCHOSOCIAL,
}
CONSENTS = {
    "shelter": intake_pb2.CONSENT_SCOPE_SHELTER,
    "legal": intake_pb2.CONSENT_SCOPE_LEGAL,
    "employment": intake_pb2.CONSENT_SCOPE_EMPLOYMENT,
    "reporting": intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
    "health": intake_pb2.CONSENT_SCOPE_HEALTH,
    "psychosocial": intake_pb2.CONSENT_SCOPE_PSYCHOSOCIAL,
}
RISKS = {r.value: common_pb2.RiskLevel.Value(f"RISK_LEVEL_{r.name}") for r in c.Risk}
VIOLENCE = {
    v.value: intake_pb2.ViolenceType.Value(f"VIOLENCE_TYPE_{v.name}") for v in c.ViolenceType
}
CLOSURE_REASONS = {
    name.removeprefix("CLOSURE_REASON_").lower(): value
    for name, value in intake_pb2.ClosureReason.items()
    if value
}
CLINICAL = {
    name.removeprefix("CLINICAL_ITEM_").lower(): value
    for name, value in intake_pb2.ClinicalItem.items()
    if value
}


def register(case_sub: Any, common: argparse.ArgumentParser) -> None:
    open_ = case_sub.add_parser(
        "open", help="register a case (quick registration)", parents=[common]
    )
    open_.add_argument("--region", required=True, choices=list(c.REGIONS))
    open_.add_argument("--risk", required=True, choices=list(RISKS))
    open_.add_argument(
        "--holding-organisation",
        default="",
        metavar="ORG",
        help="a care unit names the organisation that will hold the case (org-...)",
    )
    open_.add_argument("--needs", required=True, help="comma list of " + ",".join(SECTORS))
    open_.add_argument("--consent", default="", help="comma list of " + ",".join(CONSENTS))
    open_.add_argument(
        "--incident-at",
        help="when it happened, ISO 8601, e.g. 2026-11-20T22:00Z or 2026-11-20T23:30 "
        "(no offset: Morocco's local time); kept to the hour",
    )
    open_.add_argument("--violence", choices=list(VIOLENCE), default="physical_assault")
    open_.add_argument("--alias", default="", help="how she wishes to be called (encrypted)")
    open_.add_argument("--contact", default="", help="a safe phone number (encrypted)")
    open_.add_argument("--children", type=int, default=0, help="accompanying children")
    open_.set_defaults(handler=open_case)

    follow = case_sub.add_parser("follow-up", help="record a follow-up contact", parents=[common])
    follow.add_argument("case_id", metavar="CASE_ID")
    follow.set_defaults(handler=record_follow_up)

    withdraw = case_sub.add_parser(
        "withdraw-consent", help="the survivor withdraws consent for a sector", parents=[common]
    )
    withdraw.add_argument("case_id", metavar="CASE_ID")
    withdraw.add_argument(
        "sector", choices=["shelter", "legal", "employment", "health", "psychosocial"]
    )
    withdraw.set_defaults(handler=withdraw_consent)

    medical = case_sub.add_parser(
        "medical",
        help="confirm medical care reached (PEP, emergency contraception, ...)",
        parents=[common],
    )
    medical.add_argument("case_id", metavar="CASE_ID")
    medical.add_argument("item", choices=list(CLINICAL))
    medical.set_defaults(handler=confirm_medical)

    close = case_sub.add_parser(
        "close", help="ask to close the case (a coordinator approves)", parents=[common]
    )
    close.add_argument("case_id", metavar="CASE_ID")
    close.add_argument("--reason", choices=list(CLOSURE_REASONS), default="survivor_request")
    close.set_defaults(handler=request_closure)

    reopen = case_sub.add_parser("reopen", help="reopen a closed case", parents=[common])
    reopen.add_argument("case_id", metavar="CASE_ID")
    reopen.set_defaults(handler=reopen_case)


def _key() -> str:
    return f"cli-{secrets.token_hex(8)}"


def unknown_checklist() -> intake_pb2.RiskChecklist:
    """Every indicator answered "not asked": the quick path records the
    officer's judgement as an override instead of a partial checklist."""
    checklist = intake_pb2.RiskChecklist()
    for field in checklist.DESCRIPTOR.fields:
        setattr(checklist, field.name, intake_pb2.RISK_ANSWER_UNKNOWN)
    return checklist


def _split(value: str, allowed: dict[str, Any], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in allowed:
            raise CliError(f"{flag}: unknown value (choose from {', '.join(allowed)})", exit_code=2)
    return items


# Morocco's local time: what an incident time without an offset means.
MOROCCO = ZoneInfo("Africa/Casablanca")


@dataclass(frozen=True)
class IncidentTime:
    """The incident time as recorded: floored to the hour, in UTC."""

    at: datetime
    # Whether minutes or seconds were dropped from the time given.
    floored: bool
    # The kept hour as the officer gave the time (her offset, or Morocco's).
    shown: str


def incident_time(text: str | None, *, now: datetime | None = None) -> IncidentTime:
    """`--incident-at` as people give it: any ISO 8601 time, Morocco's local
    time when it has no offset, kept to the hour it fell in. Without one, the
    current hour."""
    now = now or datetime.now(UTC)
    if not text:
        at = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return IncidentTime(at, floored=False, shown=at.strftime("%H:%M"))
    try:
        given = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            "--incident-at must be ISO 8601, e.g. 2026-11-20T22:00Z or 2026-11-20T23:30 "
            "(Morocco's local time)",
            exit_code=2,
        ) from None
    if given.tzinfo is None:
        given = given.replace(tzinfo=MOROCCO)
    if given > now:
        raise CliError("--incident-at must not be in the future", exit_code=2)
    exact = given.astimezone(UTC)
    # Flooring in UTC is flooring in Morocco too: its offsets are whole hours.
    kept = exact.replace(minute=0, second=0, microsecond=0)
    shown = kept.astimezone(given.tzinfo).strftime("%H:%M")
    return IncidentTime(kept, floored=kept != exact, shown=shown)


def _delivery(value: Any) -> str:
    return common_pb2.DeliveryState.Name(value).removeprefix("DELIVERY_STATE_")


async def _call(method: str, request: Any) -> Any:
    async with connect.channel("intake", connect.INTAKE_OFFICER) as chan:
        stub = intake_pb2_grpc.IntakeServiceStub(chan)
        return await connect.rpc("intake", lambda: getattr(stub, method)(request))


async def open_case(args: argparse.Namespace, out: Output) -> int:
    needs = _split(args.needs, SECTORS, "--needs")
    consents = _split(args.consent, CONSENTS, "--consent")
    if not needs:
        raise CliError("--needs: give at least one need", exit_code=2)
    risk = intake_pb2.RiskAssessmentInput(checklist=unknown_checklist())
    if args.risk != "low":
        risk.override.level = RISKS[args.risk]
        risk.override.reason = "intake officer's assessment (quick registration)"
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=_key(),
        survivor=intake_pb2.SurvivorProfile(
            alias=args.alias,
            region=args.region,
            accompanying_children=args.children,
            contact=intake_pb2.ContactDetails(phone=args.contact),
        ),
        incident=intake_pb2.Incident(violence_type=VIOLENCE[args.violence]),
        risk=risk,
        needs=[SECTORS[n] for n in needs],
        consents=[CONSENTS[n] for n in consents],
        # The quick path: the lawyer refines the matters at the first meeting.
        legal_matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER] if "legal" in needs else [],
        holding_organisation_id=getattr(args, "holding_organisation", "") or "",
    )
    incident = incident_time(args.incident_at)
    request.incident.occurred_at.FromDatetime(incident.at)
    reply = await _call("RegisterCase", request)
    summary = reply.case.summary
    recorded = reply.case.incident
    doc = {
        "case_id": summary.case_id,
        "workflow_id": summary.workflow_id or c.journey_workflow_id(summary.case_id),
        "risk": common_pb2.RiskLevel.Name(reply.risk_assessment.level)
        .removeprefix("RISK_LEVEL_")
        .lower(),
        "journey_start": _delivery(reply.journey_start),
        # The incident time intake recorded (to the hour, UTC).
        "incident_at": recorded.occurred_at.ToDatetime(tzinfo=UTC)
        if recorded.HasField("occurred_at")
        else incident.at,
        # Who registered the case and who holds it: the signed-in officer's
        # organisation ("" with the local stack's shortcut identity).
        "source_organisation_id": summary.source_organisation_id,
        "holding_organisation_id": summary.holding_organisation_id,
        "needs_without_consent": [
            common_pb2.Sector.Name(s).removeprefix("SECTOR_").lower()
            for s in reply.needs_without_consent
        ],
    }
    floored = f"incident time kept to the hour: {incident.shown}" if incident.floored else ""
    if out.json_mode:
        if floored:
            out.note(floored)  # on stderr: stdout holds the one document
        out.document(doc)
        return 0
    out.line(f"case {doc['case_id']} registered (risk {doc['risk']}); journey {doc['workflow_id']}")
    if floored:
        out.line(f"  {floored}")
    if doc["holding_organisation_id"]:
        out.line(f"  held by {doc['holding_organisation_id']}")
    if doc["journey_start"] == "QUEUED":
        out.line("  the journey will start as soon as Temporal is reachable")
    if doc["needs_without_consent"]:
        out.line(f"  no referral without consent for: {', '.join(doc['needs_without_consent'])}")
    out.line(f"  follow it with: masar case show {doc['case_id']}")
    return 0


def _change_report(out: Output, case_id: str, what: str, reply: Any) -> int:
    doc = {"case_id": case_id, "change_id": reply.change_id, "delivery": _delivery(reply.delivery)}
    if out.json_mode:
        out.document(doc)
    else:
        out.line(f"{what} for case {case_id} ({doc['delivery'].lower()})")
    return 0


async def record_follow_up(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.RecordFollowUpRequest(
        case_id=connect.check_case_id(args.case_id),
        channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
        idempotency_key=_key(),
    )
    request.contacted_at.GetCurrentTime()
    reply = await journeys.holder_change(args.case_id, "RecordFollowUp", request)
    return _change_report(out, args.case_id, "follow-up recorded", reply)


async def withdraw_consent(args: argparse.Namespace, out: Output) -> int:
    request = journey_pb2.ChangeConsentRequest(
        case_id=connect.check_case_id(args.case_id),
        scope=CONSENTS[args.sector],
        change=journey_pb2.CONSENT_CHANGE_KIND_WITHDRAW,
        idempotency_key=_key(),
    )
    reply = await journeys.holder_change(args.case_id, "ChangeConsent", request)
    return _change_report(out, args.case_id, "consent withdrawn", reply)


async def confirm_medical(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.ConfirmMedicalCareRequest(
        case_id=connect.check_case_id(args.case_id),
        item=CLINICAL[args.item],
        idempotency_key=_key(),
    )
    request.given_at.GetCurrentTime()
    reply = await journeys.holder_change(args.case_id, "ConfirmMedicalCare", request)
    return _change_report(out, args.case_id, "medical care confirmed", reply)


async def request_closure(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.RequestClosureRequest(
        case_id=connect.check_case_id(args.case_id),
        reason=CLOSURE_REASONS[args.reason],
        idempotency_key=_key(),
    )
    reply = await journeys.holder_change(args.case_id, "RequestClosure", request)
    return _change_report(out, args.case_id, "closure requested", reply)


async def reopen_case(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.ReopenCaseRequest(
        case_id=connect.check_case_id(args.case_id), idempotency_key=_key()
    )
    reply = await journeys.holder_change(args.case_id, "ReopenCase", request)
    return _change_report(out, args.case_id, "case reopened", reply)
