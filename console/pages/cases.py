"""The case page: the journey's stage, referrals (status, provider,
deadline, ladder rung), clinical windows with the time left, transfers and
the timeline — read through intake's journey API with the person's token,
so a coordinator sees her region's cases and an officer her organisation's.

Coordinators steer from here: reassign a waiting referral (choosing among
the region's providers, with their free places and languages), extend a
deadline with a reason, approve or refuse a requested closure; each is
confirmed, sent with an idempotency key fixed when the page was drawn (a
double click does it once), and its answer shown. Case holders get their
actions (console.pages.intake). Personal data (alias, contact) stays hidden
until the person asks to see it: that reading is intake's audited GetCase."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from console import i18n, labels
from console.pages import intake
from console.sessions import Session
from console.web import (
    CASE_HOLDERS,
    COORDINATOR,
    Console,
    action,
    back,
    console_of,
    page,
    render,
    session_of,
    text,
)
from masar.v1 import (
    common_pb2,
    employment_pb2,
    intake_pb2,
    journey_pb2,
    legal_pb2,
    shelter_pb2,
)

READERS = (COORDINATOR, *CASE_HOLDERS)
CARE_UNIT = "care_unit_officer"
UNITS = {"hours": 3600, "days": 86400}
MAX_EXTENSION = 365 * 86400


def _at(ts: Timestamp, present: bool = True) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present and (ts.seconds or ts.nanos) else None


@dataclass(frozen=True)
class Provider:
    provider_id: str
    name: str
    free: int | None
    capacity: int | None
    languages: list[str]


@dataclass
class ReferralRow:
    referral_id: str
    sector: int
    sector_label: str
    provider_id: str
    status: str
    waiting: bool
    deadline: datetime | None
    rung: int
    rung_label: str
    overdue: bool
    providers: list[Provider] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def view_of(j: journey_pb2.JourneyStatus) -> dict[str, Any]:
    now = _now()
    referrals = []
    for r in j.referrals:
        due = _at(r.deadline, r.HasField("deadline"))
        referrals.append(
            ReferralRow(
                referral_id=r.referral_id,
                sector=r.sector,
                sector_label=labels.label(labels.SECTORS, r.sector),
                provider_id=r.provider_id,
                status=labels.label(labels.REFERRAL_STATUSES, r.status),
                waiting=r.status == common_pb2.REFERRAL_STATUS_PENDING,
                deadline=due,
                rung=r.escalation_level,
                rung_label=labels.label(labels.ESCALATION_LEVELS, r.escalation_level),
                overdue=due is not None and due < now,
            )
        )
    windows = [
        {
            "item": labels.label(labels.CLINICAL_ITEMS, w.item),
            "target": "clinical:"
            + str(intake_pb2.ClinicalItem.Name(w.item)).removeprefix("CLINICAL_ITEM_").lower(),
            "deadline": _at(w.deadline, w.HasField("deadline")),
            "status": labels.label(labels.CLINICAL_STATUSES, w.status),
            "open": w.status == journey_pb2.CLINICAL_WINDOW_STATUS_OPEN,
            "rung": labels.label(labels.ESCALATION_LEVELS, w.escalation_level),
        }
        for w in j.clinical_windows
    ]
    transfers = [
        {
            "transfer_id": t.transfer_id,
            "to": t.to_organisation_id,
            "status": labels.label(labels.TRANSFER_STATUSES, t.status),
            "deadline": _at(t.deadline, t.HasField("deadline")),
            "pending": t.status == intake_pb2.TRANSFER_STATUS_PENDING,
        }
        for t in j.transfers
    ]
    timeline = [
        {
            "at": _at(e.at),
            "event": labels.label(labels.TIMELINE, e.event),
            "sector": labels.SECTORS.get(e.sector, "") if e.sector else "",
            "level": e.level,
            "actor": e.actor,
        }
        for e in reversed(j.timeline)
    ]
    return {
        "case_id": j.case_id,
        "stage": labels.label(labels.STAGES, j.stage),
        "risk": labels.label(labels.RISKS, j.risk),
        "risk_class": labels.RISK_CLASSES.get(j.risk, ""),
        "level": labels.label(labels.ESCALATION_LEVELS, j.escalation_level),
        "escalated": j.escalation_level > 0,
        "next_deadline": _at(j.next_deadline, j.HasField("next_deadline")),
        "next_follow_up": _at(j.next_follow_up, j.HasField("next_follow_up")),
        "closure_requested": j.closure_requested,
        "consents": [labels.label(labels.SECTORS, s) for s in j.consents],
        "referrals": referrals,
        "windows": windows,
        "transfers": transfers,
        "timeline": timeline,
    }


async def journey(console: Console, session: Session, case_id: str) -> journey_pb2.JourneyStatus:
    reply = await console.backend.call(
        session,
        "intake",
        console.backend.stubs.journeys.GetJourney,
        journey_pb2.GetJourneyRequest(case_id=case_id),
    )
    status: journey_pb2.JourneyStatus = reply.journey
    return status


async def providers(console: Console, session: Session, sector: int, region: str) -> list[Provider]:
    """The region's providers of `sector` that can take a referral now."""
    stubs = console.backend.stubs
    if sector == common_pb2.SECTOR_SHELTER:
        shelters = await console.backend.call(
            session,
            "shelter",
            stubs.shelter.ListShelters,
            shelter_pb2.ListSheltersRequest(region=region),
        )
        return [
            Provider(s.shelter_id, s.name, s.free_beds, s.capacity, [])
            for s in shelters.shelters
            if s.free_beds > 0
        ]
    if sector == common_pb2.SECTOR_EMPLOYMENT:
        programmes = await console.backend.call(
            session,
            "employment",
            stubs.employment.ListProgrammes,
            employment_pb2.ListProgrammesRequest(region=region),
        )
        return [
            Provider(p.programme_id, p.name, p.seats_free, p.seats, list(p.languages))
            for p in programmes.programmes
            if p.seats_free > 0
        ]
    if sector == common_pb2.SECTOR_LEGAL:
        lawyers = await console.backend.call(
            session,
            "legal",
            stubs.legal.ListProviders,
            legal_pb2.ListLegalProvidersRequest(region=region, page_size=200),
        )
        return [
            Provider(p.provider_id, p.name, None, None, list(p.languages))
            for p in lawyers.providers
        ]
    return []


async def _draw(request: Request, *, personal: dict[str, str] | None = None) -> Response:
    console = console_of(request)
    session = session_of(request)
    case_id = str(request.path_params["case_id"])
    status = await journey(console, session, case_id)
    view = view_of(status)
    if session.role == COORDINATOR:
        for row in view["referrals"]:
            if row.waiting:
                row.providers = [
                    p
                    for p in await providers(console, session, row.sector, status.region)
                    if p.provider_id != row.provider_id
                ]
    panel: dict[str, Any] = {}
    holder = session.role in CASE_HOLDERS
    intake_panel = getattr(intake, "intake_panel", None)
    if holder and intake_panel is not None:
        panel = await intake_panel(request, case_id)
    return render(
        request,
        "case.html",
        case=view,
        coordinator=session.role == COORDINATOR,
        holder=holder and intake_panel is not None,
        personal=personal,
        form_key=secrets.token_hex(12),
        **panel,
    )


async def follow_up_page(request: Request) -> Response:
    """A care unit's view of a case it registered and handed on: where its
    referrals stand, nothing personal (GetCaseFollowUp)."""
    console = console_of(request)
    case_id = str(request.path_params["case_id"])
    reply = await console.backend.call(
        session_of(request),
        "intake",
        console.backend.stubs.intake.GetCaseFollowUp,
        intake_pb2.GetCaseFollowUpRequest(case_id=case_id),
    )
    f = reply.follow_up
    return render(
        request,
        "case_follow_up.html",
        case_id=case_id,
        risk=labels.label(labels.RISKS, f.summary.risk),
        needs=[labels.label(labels.SECTORS, s) for s in f.needs],
        referrals=[
            {
                "sector": labels.label(labels.SECTORS, r.sector),
                "status": labels.label(labels.REFERRAL_STATUSES, r.status),
            }
            for r in f.referrals
        ],
        referrals_known=f.referrals_known,
    )


async def case_page(request: Request) -> Response:
    if session_of(request).role == CARE_UNIT:
        return await follow_up_page(request)
    return await _draw(request)


async def reveal(request: Request, form: FormData) -> Response:
    """Personal data, on request: intake audits this reading (GetCase)."""
    console = console_of(request)
    session = session_of(request)
    case_id = str(request.path_params["case_id"])
    reply = await console.backend.call(
        session,
        "intake",
        console.backend.stubs.intake.GetCase,
        intake_pb2.GetCaseRequest(case_id=case_id),
    )
    survivor = reply.case.survivor
    personal = {
        "alias": survivor.alias,
        "phone": survivor.contact.phone,
        "email": survivor.contact.email,
        "address": survivor.contact.address,
        "safe_contact": survivor.contact.safe_contact_instructions,
    }
    return await _draw(request, personal=personal)


def _key(form: FormData, action_name: str) -> str:
    """The idempotency key drawn with the page: a double click does it once."""
    drawn = text(form, "form_key")
    return f"console-{action_name}-{drawn or secrets.token_hex(12)}"


async def reassign(request: Request, form: FormData) -> Response:
    console = console_of(request)
    session = session_of(request)
    case_id = str(request.path_params["case_id"])
    await console.backend.call(
        session,
        "intake",
        console.backend.stubs.journeys.ReassignReferral,
        journey_pb2.ReassignReferralRequest(
            case_id=case_id,
            referral_id=text(form, "referral_id"),
            provider_id=text(form, "provider_id"),
            reason=text(form, "reason"),
            idempotency_key=_key(form, "reassign"),
        ),
    )
    session.flash(i18n.N_("Referral reassigned: the new provider has it."))
    return back(f"/cases/{case_id}")


async def extend(request: Request, form: FormData) -> Response:
    console = console_of(request)
    session = session_of(request)
    case_id = str(request.path_params["case_id"])
    try:
        amount = int(text(form, "amount"))
    except ValueError:
        amount = 0
    seconds = amount * UNITS.get(text(form, "unit"), 0)
    if not 0 < seconds <= MAX_EXTENSION:
        session.flash(i18n.N_("Choose how long to extend by: from 1 hour to 365 days."), "error")
        return back(f"/cases/{case_id}")
    await console.backend.call(
        session,
        "intake",
        console.backend.stubs.journeys.ExtendDeadline,
        journey_pb2.ExtendDeadlineRequest(
            case_id=case_id,
            target=text(form, "target"),
            extend_by_seconds=seconds,
            reason=text(form, "reason"),
            idempotency_key=_key(form, "extend"),
        ),
    )
    session.flash(i18n.N_("Deadline extended: the new deadline is shown below."))
    return back(f"/cases/{case_id}")


VERDICTS = {
    "approve": journey_pb2.CLOSURE_VERDICT_APPROVE,
    "refuse": journey_pb2.CLOSURE_VERDICT_REFUSE,
}


async def decide_closure(request: Request, form: FormData) -> Response:
    console = console_of(request)
    session = session_of(request)
    case_id = str(request.path_params["case_id"])
    verdict = VERDICTS.get(text(form, "verdict"))
    if verdict is None:
        session.flash(i18n.N_("Choose to approve or refuse the closure."), "error")
        return back(f"/cases/{case_id}")
    await console.backend.call(
        session,
        "intake",
        console.backend.stubs.journeys.DecideClosure,
        journey_pb2.DecideClosureRequest(
            case_id=case_id,
            verdict=verdict,
            reason=text(form, "reason"),
            idempotency_key=_key(form, "closure"),
        ),
    )
    session.flash(
        i18n.N_("Closure approved.")
        if verdict == journey_pb2.CLOSURE_VERDICT_APPROVE
        else i18n.N_("Closure refused: the journey goes on.")
    )
    return back(f"/cases/{case_id}")


routes = [
    page("/cases/{case_id}", case_page, roles=READERS),
    action("/cases/{case_id}/reveal", reveal, roles=(COORDINATOR, "intake_officer", "supervisor")),
    action("/cases/{case_id}/reassign", reassign, roles=(COORDINATOR,)),
    action("/cases/{case_id}/extend", extend, roles=(COORDINATOR,)),
    action("/cases/{case_id}/closure/decide", decide_closure, roles=(COORDINATOR,)),
]
