"""Sector staff's pages: shelter staff, legal aid, employment officers,
health staff (hospital care units) and psychosocial staff (associations).

- `/referrals`: the inbox of the referrals addressed to the person's
  organisation (the sector service scopes ListReferrals to the token's
  organisation), grouped overdue / due soon / new / accepted and in service.
  Its body is a live part (`/referrals/live`, every 10 seconds).
- `/referrals/{referral_id}`: one referral as the sector's API shows it to its
  staff, with the actions its status allows: accept, decline (a structured
  reason), start (shelter check-in, legal first meeting, enrolment start) and
  complete (the outcome, always chosen by the person: never a default).
  The care sectors add their records (console.pages.care), one small form
  each: health staff record PEP, emergency contraception, the forensic
  examination, the certificate with its ITT days and the follow-up visits
  (`/referrals/{id}/pep`, `/emergency-contraception`, `/forensic-exam`,
  `/certificate`, `/visit`); psychosocial staff record sessions and keep
  the support plan (`/session`, `/plan`, `/review`).
- `/capacity`: the beds of the organisation's shelters, the seats of its
  training programmes, each row with a small form (`POST /capacity`:
  `provider_id`, `capacity`, `key`) to keep the number up to date
  (SetShelterCapacity, SetProgrammeSeats). The service decides whose rows
  the person may change and refuses a number below what is in use; the page
  then comes back with the field named.

The sector is the person's role's (`web.STAFF_SECTORS`); a referral id of
another sector, a malformed one, one addressed to another organisation
(PERMISSION_DENIED) and an unknown one (NOT_FOUND) all get the same "not
allowed" page, so a referral that exists elsewhere cannot be told apart.

Deadlines: the sector services do not return a referral's deadline (the
journey owns it). The person's own notifications do: the new-referral and
reminder notifications of a referral carry its deadline and rung, so the
inbox reads them (network ListNotifications, the newest page) and shows what
they say; without them a deadline is "not known".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console import i18n, labels
from console.backend import Refused
from console.pages import care
from console.pages.forms import (
    REFUSED_VALUE,
    Choice,
    Choices,
    FormErrors,
    Step,
    choose,
    from_labels,
    key_of,
    new_key,
    past_time,
    stamp,
    when_of,
)
from console.web import (
    STAFF_SECTORS,
    FormHandler,
    action,
    back,
    console_of,
    page,
    render,
    session_of,
    text,
    texts,
)
from masar.contract import REFERRAL_ID_PREFIX, Sector
from masar.v1 import (
    common_pb2,
    employment_pb2,
    health_pb2,
    legal_pb2,
    network_pb2,
    psychosocial_pb2,
    shelter_pb2,
)

log = logging.getLogger("masar.console")
N_ = i18n.N_

STAFF_ROLES = frozenset(STAFF_SECTORS)
CAPACITY_ROLES = frozenset({"shelter_staff", "employment_officer"})
REFERRAL_ID = re.compile(rf"^({'|'.join(REFERRAL_ID_PREFIX.values())})-[0-9a-f]{{16}}$")
# At most this many referrals of each status in the inbox, and notifications read.
MAX_ROWS = 500
PAGE_SIZE = 200
NOTIFICATIONS_READ = 500
# A notification of the same wait may be stamped a little before the referral.
CLOCK_SKEW = timedelta(minutes=5)


# --- labels: every enum shown to people -----------------------------------------------


def _c(code: str, value: int, label: str) -> Choice:
    return Choice(code, value, label)


STATUSES = from_labels(labels.REFERRAL_STATUSES, common_pb2.ReferralStatus, "REFERRAL_STATUS_")
RISKS = from_labels(labels.RISKS, common_pb2.RiskLevel, "RISK_LEVEL_")
SECTORS = from_labels(labels.SECTORS, common_pb2.Sector, "SECTOR_")
DECLINE_REASONS = from_labels(labels.DECLINE_REASONS, common_pb2.DeclineReason, "DECLINE_REASON_")
# Escalation rungs of a wait (0 none, 1 reminder, 2 coordinator, 3 regional).
RUNGS = Choices(
    *(Choice(str(level), level, label) for level, label in labels.ESCALATION_LEVELS.items()),
    unknown=labels.OTHER,
)
ACCESSIBILITY = Choices(
    _c(
        "wheelchair",
        shelter_pb2.ACCESSIBILITY_FEATURE_WHEELCHAIR,
        N_("Wheelchair access and accessible bathroom"),
    ),
    _c("ground_floor", shelter_pb2.ACCESSIBILITY_FEATURE_GROUND_FLOOR, N_("Ground floor")),
    _c("sign_language", shelter_pb2.ACCESSIBILITY_FEATURE_SIGN_LANGUAGE, N_("Sign language")),
    _c("visual_support", shelter_pb2.ACCESSIBILITY_FEATURE_VISUAL_SUPPORT, N_("Visual support")),
    _c("nursing_care", shelter_pb2.ACCESSIBILITY_FEATURE_NURSING_CARE, N_("Nursing care")),
)
EXIT_REASONS = Choices(
    _c(
        "independent_housing",
        shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING,
        N_("Moved to safe housing of her own"),
    ),
    _c(
        "family_or_friends",
        shelter_pb2.EXIT_REASON_FAMILY_OR_FRIENDS,
        N_("Hosted by family or friends she considers safe"),
    ),
    _c(
        "transferred",
        shelter_pb2.EXIT_REASON_TRANSFERRED,
        N_("Transferred to another shelter or an institution"),
    ),
    _c(
        "returned_to_partner",
        shelter_pb2.EXIT_REASON_RETURNED_TO_PARTNER,
        N_("Returned to her partner"),
    ),
    _c(
        "left_without_notice",
        shelter_pb2.EXIT_REASON_LEFT_WITHOUT_NOTICE,
        N_("Left without notice"),
    ),
    _c("asked_to_leave", shelter_pb2.EXIT_REASON_ASKED_TO_LEAVE, N_("Asked to leave")),
    _c("other", shelter_pb2.EXIT_REASON_OTHER, N_("Another reason")),
)
MATTERS = Choices(
    _c("protection_order", legal_pb2.LEGAL_MATTER_PROTECTION_ORDER, N_("Protection order")),
    _c("criminal_complaint", legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT, N_("Criminal complaint")),
    _c("family_law", legal_pb2.LEGAL_MATTER_FAMILY_LAW, N_("Family law")),
    _c("residency", legal_pb2.LEGAL_MATTER_RESIDENCY, N_("Residency")),
    _c("trafficking", legal_pb2.LEGAL_MATTER_TRAFFICKING, N_("Human trafficking (Law 27-14)")),
)
MATTER_STATUSES = Choices(
    _c("open", legal_pb2.MATTER_STATUS_OPEN, N_("Open")),
    _c("closed", legal_pb2.MATTER_STATUS_CLOSED, N_("Closed")),
)
MATTER_OUTCOMES = Choices(
    _c("relief_granted", legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED, N_("Relief granted")),
    _c("relief_denied", legal_pb2.MATTER_OUTCOME_RELIEF_DENIED, N_("Relief denied")),
    _c("conviction", legal_pb2.MATTER_OUTCOME_CONVICTION, N_("Conviction")),
    _c("acquittal", legal_pb2.MATTER_OUTCOME_ACQUITTAL, N_("Acquittal")),
    _c(
        "dismissed",
        legal_pb2.MATTER_OUTCOME_DISMISSED,
        N_("Complaint closed by the prosecutor without action"),
    ),
    _c("settled", legal_pb2.MATTER_OUTCOME_SETTLED, N_("Settled")),
    _c(
        "withdrawn_by_survivor",
        legal_pb2.MATTER_OUTCOME_WITHDRAWN_BY_SURVIVOR,
        N_("She chose to withdraw"),
    ),
    _c("transferred", legal_pb2.MATTER_OUTCOME_TRANSFERRED, N_("Transferred")),
    _c("no_contact", legal_pb2.MATTER_OUTCOME_NO_CONTACT, N_("No contact with her")),
)
PROTECTION_MEASURES = Choices(
    _c(
        "no_contact_during_prosecution",
        legal_pb2.PROTECTION_MEASURE_NO_CONTACT_DURING_PROSECUTION,
        N_("No contact or approach during the prosecution"),
    ),
    _c(
        "contact_ban_after_conviction",
        legal_pb2.PROTECTION_MEASURE_CONTACT_BAN_AFTER_CONVICTION,
        N_("Contact ban after conviction"),
    ),
)
PROTECTION_STATUSES = Choices(
    _c("requested", legal_pb2.PROTECTION_ORDER_STATUS_REQUESTED, N_("Requested")),
    _c("granted", legal_pb2.PROTECTION_ORDER_STATUS_GRANTED, N_("Granted")),
    _c("denied", legal_pb2.PROTECTION_ORDER_STATUS_DENIED, N_("Denied")),
    _c("breached", legal_pb2.PROTECTION_ORDER_STATUS_BREACHED, N_("Breached")),
)
COURTS = Choices(
    _c("first_instance", legal_pb2.COURT_LEVEL_FIRST_INSTANCE, N_("Court of first instance")),
    _c("family_section", legal_pb2.COURT_LEVEL_FAMILY_SECTION, N_("Family section")),
    _c("appeal", legal_pb2.COURT_LEVEL_APPEAL, N_("Court of appeal")),
    _c("cassation", legal_pb2.COURT_LEVEL_CASSATION, N_("Court of cassation")),
    _c("administrative", legal_pb2.COURT_LEVEL_ADMINISTRATIVE, N_("Administrative court")),
)
HEARING_KINDS = Choices(
    _c("investigation", legal_pb2.HEARING_KIND_INVESTIGATION, N_("Investigation")),
    _c("trial", legal_pb2.HEARING_KIND_TRIAL, N_("Trial")),
    _c("conciliation", legal_pb2.HEARING_KIND_CONCILIATION, N_("Conciliation")),
    _c("judgment", legal_pb2.HEARING_KIND_JUDGMENT, N_("Judgment")),
    _c("appeal", legal_pb2.HEARING_KIND_APPEAL, N_("Appeal")),
)
HEARING_STATUSES = Choices(
    _c("scheduled", legal_pb2.HEARING_STATUS_SCHEDULED, N_("Scheduled")),
    _c("held", legal_pb2.HEARING_STATUS_HELD, N_("Held")),
    _c("adjourned", legal_pb2.HEARING_STATUS_ADJOURNED, N_("Adjourned")),
    _c("cancelled", legal_pb2.HEARING_STATUS_CANCELLED, N_("Cancelled")),
)
PROGRAMME_KINDS = Choices(
    _c("confectionery", employment_pb2.PROGRAMME_KIND_CONFECTIONERY, N_("Confectionery")),
    _c("goldsmithing", employment_pb2.PROGRAMME_KIND_GOLDSMITHING, N_("Goldsmithing")),
    _c("cookery", employment_pb2.PROGRAMME_KIND_COOKERY, N_("Cookery")),
    _c("sewing", employment_pb2.PROGRAMME_KIND_SEWING, N_("Sewing")),
    _c("embroidery", employment_pb2.PROGRAMME_KIND_EMBROIDERY, N_("Embroidery")),
    _c("hairdressing", employment_pb2.PROGRAMME_KIND_HAIRDRESSING, N_("Hairdressing")),
    _c("carpet_weaving", employment_pb2.PROGRAMME_KIND_CARPET_WEAVING, N_("Carpet weaving")),
    _c("literacy", employment_pb2.PROGRAMME_KIND_LITERACY, N_("Literacy")),
    _c("digital_skills", employment_pb2.PROGRAMME_KIND_DIGITAL_SKILLS, N_("Digital skills")),
    _c(
        "entrepreneurship",
        employment_pb2.PROGRAMME_KIND_ENTREPRENEURSHIP,
        N_("Entrepreneurship"),
    ),
)
TRAINING_OUTCOMES = Choices(
    _c("certified", employment_pb2.TRAINING_OUTCOME_CERTIFIED, N_("Certified")),
    _c("dropped_out", employment_pb2.TRAINING_OUTCOME_DROPPED_OUT, N_("Dropped out")),
)
EMPLOYERS = Choices(
    _c("private_company", employment_pb2.EMPLOYER_TYPE_PRIVATE_COMPANY, N_("Private company")),
    _c("cooperative", employment_pb2.EMPLOYER_TYPE_COOPERATIVE, N_("Cooperative")),
    _c("public_sector", employment_pb2.EMPLOYER_TYPE_PUBLIC_SECTOR, N_("Public sector")),
    _c("association", employment_pb2.EMPLOYER_TYPE_ASSOCIATION, N_("Association")),
    _c(
        "self_employed",
        employment_pb2.EMPLOYER_TYPE_SELF_EMPLOYED,
        N_("Her own activity (income-generating project)"),
    ),
)
CONTRACTS = Choices(
    _c("permanent", employment_pb2.CONTRACT_TYPE_PERMANENT, N_("Permanent (CDI)")),
    _c("fixed_term", employment_pb2.CONTRACT_TYPE_FIXED_TERM, N_("Fixed term (CDD)")),
    _c("apprenticeship", employment_pb2.CONTRACT_TYPE_APPRENTICESHIP, N_("Apprenticeship")),
    _c("seasonal", employment_pb2.CONTRACT_TYPE_SEASONAL, N_("Seasonal")),
    _c("self_employment", employment_pb2.CONTRACT_TYPE_SELF_EMPLOYMENT, N_("Self-employment")),
    _c("informal", employment_pb2.CONTRACT_TYPE_INFORMAL, N_("Informal work")),
)
# How an employment referral's service goes on or ends (the `outcome` field):
# CompleteTraining (certified: the job search goes on; dropped out: it ends)
# or RecordJobPlacement (it ends).
EMPLOYMENT_OUTCOMES = Choices(
    _c("certified", 1, N_("Training completed and certified (the job search goes on)")),
    _c("dropped_out", 2, N_("Dropped out of the training (ends the referral)")),
    _c("job_placed", 3, N_("Placed in work (ends the referral)")),
)
DELIVERY_QUEUED = common_pb2.DELIVERY_STATE_QUEUED
# Language tags the services use (lowercase BCP 47); others are shown as they are.
LANGUAGES = {
    "ary": N_("Darija"),
    "ar": N_("Arabic"),
    "zgh": N_("Tamazight"),
    "tzm": N_("Central Atlas Tamazight"),
    "shi": N_("Tachelhit"),
    "rif": N_("Tarifit"),
    "fr": N_("French"),
    "en": N_("English"),
    "es": N_("Spanish"),
}


# Badge classes (console.css) of the risks that need attention first, of statuses.
RISK_BADGES: Mapping[Any, str] = labels.RISK_CLASSES
STATUS_BADGES: dict[int, str] = {
    common_pb2.REFERRAL_STATUS_ACCEPTED: "accepted",
    common_pb2.REFERRAL_STATUS_IN_SERVICE: "accepted",
    common_pb2.REFERRAL_STATUS_COMPLETED: "ok",
}


@dataclass(frozen=True)
class Labels:
    """Every label set, for the templates (`L.status.label(r.status)`)."""

    status: Choices = STATUSES
    risk: Choices = RISKS
    sector: Choices = SECTORS
    decline: Choices = DECLINE_REASONS
    rung: Choices = RUNGS
    accessibility: Choices = ACCESSIBILITY
    exit: Choices = EXIT_REASONS
    matter: Choices = MATTERS
    matter_status: Choices = MATTER_STATUSES
    matter_outcome: Choices = MATTER_OUTCOMES
    measure: Choices = PROTECTION_MEASURES
    order_status: Choices = PROTECTION_STATUSES
    court: Choices = COURTS
    hearing_kind: Choices = HEARING_KINDS
    hearing_status: Choices = HEARING_STATUSES
    programme: Choices = PROGRAMME_KINDS
    training: Choices = TRAINING_OUTCOMES
    employer: Choices = EMPLOYERS
    contract: Choices = CONTRACTS
    languages: Mapping[str, str] = field(default_factory=lambda: LANGUAGES)
    risk_badge: Mapping[Any, str] = field(default_factory=lambda: RISK_BADGES)
    status_badge: Mapping[int, str] = field(default_factory=lambda: STATUS_BADGES)


L = Labels()

# --- messages -------------------------------------------------------------------------

ACCEPTED = N_("Referral accepted.")
DECLINED = N_("Referral declined.")
STARTED = {
    "shelter": N_("Check-in recorded."),
    "legal": N_("First meeting recorded."),
    "employment": N_("Start of the training recorded."),
    "health": care.SEEN,
}
COMPLETED = N_("Outcome recorded. The referral is completed.")
MATTER_CLOSED = N_("Matter closed. Other matters of this referral are still open.")
TRAINING_DONE = N_("Training outcome recorded. The referral stays open for the job search.")
QUEUED = N_("Recorded. The survivor's journey will be told as soon as it can be reached.")


# The fields of each form a service's refusal may name (the form again, the field named).
FORM_FIELDS = {
    "decline": {"reason": "reason", "decline_reason": "reason"},
    "start": {"met_at": "met_at"},
    "complete": {
        "outcome": "outcome",
        "exit_reason": "outcome",
        "matter": "matter",
        "closed_at": "closed_at",
        "employer_type": "employer_type",
        "contract_type": "contract_type",
    },
    **care.FORM_FIELDS,
}
# Each form field: its element id on the page and its label (msgid), for the error summary.
FIELDS = {
    "reason": ("decline-reason", N_("Reason for declining")),
    "met_at": ("start-met-at", N_("First meeting")),
    "outcome": ("complete-outcome", N_("Outcome")),
    "matter": ("complete-matter", N_("Matter")),
    "closed_at": ("complete-closed-at", N_("When it was decided")),
    "employer_type": ("complete-employer-type", N_("Employer")),
    "contract_type": ("complete-contract-type", N_("Contract")),
    **care.FIELDS,
}
# The fields kept as typed when a form comes back: one value each, or several.
KEPT_VALUES = tuple(dict.fromkeys((*FIELDS, *care.KEPT_VALUES)))
KEPT_LISTS = care.KEPT_LISTS
# The forms of a referral's page, each with its own idempotency key.
PAGE_FORMS = ("accept", "decline", "start", "complete", *care.FORMS)


# --- reading the services -------------------------------------------------------------


def sector_of(request: Request) -> str:
    """The person's sector, from her role (the page's roles are staff roles only)."""
    return STAFF_SECTORS[session_of(request).role]


def sector_label(sector: str) -> str:
    return labels.label(labels.SECTOR_SLUGS, sector)


def referral_id_of(request: Request, sector: str) -> str:
    """The path's referral id, if it is one of the person's sector's: anything
    else is "not allowed", like another organisation's referral."""
    referral_id = str(request.path_params.get("referral_id", ""))
    if not REFERRAL_ID.match(referral_id) or not referral_id.startswith(
        REFERRAL_ID_PREFIX[Sector(sector)] + "-"
    ):
        raise _not_allowed(sector)
    return referral_id


def _not_allowed(service: str) -> Refused:
    return Refused(
        "not_allowed", "the referral is not addressed to your organisation", service=service
    )


async def call(request: Request, service: str, method: str, message: Any) -> Any:
    """`method` of `service` with the person's token."""
    backend = console_of(request).backend
    stub = getattr(backend.stubs, service)
    return await backend.call(session_of(request), service, getattr(stub, method), message)


async def call_on_referral(request: Request, sector: str, method: str, message: Any) -> Any:
    """An RPC on one referral: an unknown referral is answered as another
    organisation's is ("not allowed"), so neither can be told apart."""
    try:
        return await call(request, sector, method, message)
    except Refused as refusal:
        if refusal.kind == "not_found":
            raise _not_allowed(sector) from None
        raise


async def list_referrals(request: Request, sector: str, status: int) -> list[Any]:
    found: list[Any] = []
    token = ""
    while len(found) < MAX_ROWS:
        reply = await call(
            request,
            sector,
            "ListReferrals",
            common_pb2.ListReferralsRequest(
                status=common_pb2.ReferralStatus.ValueType(status),
                page_size=PAGE_SIZE,
                page_token=token,
            ),
        )
        found.extend(reply.referrals)
        token = reply.next_page_token
        if not token:
            break
    return found[:MAX_ROWS]


async def providers(request: Request, sector: str) -> list[Any]:
    """The sector's providers (shelters, legal providers, programmes, care
    units, support providers)."""
    if sector == "shelter":
        reply = await call(request, sector, "ListShelters", shelter_pb2.ListSheltersRequest())
        return list(reply.shelters)
    if sector == "employment":
        reply = await call(
            request, sector, "ListProgrammes", employment_pb2.ListProgrammesRequest()
        )
        return list(reply.programmes)
    if sector == "health":
        reply = await call(request, sector, "ListCareUnits", health_pb2.ListCareUnitsRequest())
        return list(reply.care_units)
    if sector == "psychosocial":
        reply = await call(
            request,
            sector,
            "ListSupportProviders",
            psychosocial_pb2.ListSupportProvidersRequest(),
        )
        return list(reply.providers)
    found: list[Any] = []
    token = ""
    while len(found) < MAX_ROWS:
        page_reply = await call(
            request,
            sector,
            "ListProviders",
            legal_pb2.ListLegalProvidersRequest(page_size=PAGE_SIZE, page_token=token),
        )
        found.extend(page_reply.providers)
        token = page_reply.next_page_token
        if not token:
            break
    return found


def provider_id_of(provider: Any) -> str:
    for name in ("shelter_id", "programme_id", "care_unit_id", "provider_id"):
        if name in provider.DESCRIPTOR.fields_by_name:
            return str(getattr(provider, name))
    return ""


async def provider_names(request: Request, sector: str) -> dict[str, str]:
    return {provider_id_of(p): str(p.name) for p in await providers(request, sector)}


# --- deadlines, from the person's own notifications ------------------------------------


@dataclass(frozen=True)
class Notice:
    """What a notification said of one referral's wait."""

    kind: int
    occurred_at: datetime
    deadline: datetime | None
    rung: int


WAIT_KINDS = frozenset(
    {network_pb2.NOTIFICATION_KIND_NEW_REFERRAL, network_pb2.NOTIFICATION_KIND_REMINDER}
)


def notices_by_referral(notifications: Iterable[Any]) -> dict[str, list[Notice]]:
    """The new-referral and reminder notifications, by referral id."""
    found: dict[str, list[Notice]] = {}
    for n in notifications:
        if n.kind not in WAIT_KINDS or not n.referral_id:
            continue
        occurred = when_of(n, "occurred_at") or when_of(n, "created_at")
        if occurred is None:
            continue
        found.setdefault(n.referral_id, []).append(
            Notice(int(n.kind), occurred, when_of(n, "deadline"), int(n.rung))
        )
    return found


async def read_notices(request: Request) -> dict[str, list[Notice]]:
    """The person's recent notifications; none when the network service does
    not answer (the inbox still shows the referrals, without deadlines)."""
    try:
        reply = await call(
            request,
            "network",
            "ListNotifications",
            network_pb2.ListNotificationsRequest(page_size=NOTIFICATIONS_READ),
        )
    except Refused as refusal:
        if refusal.kind == "signed_out":
            raise
        log.info("notifications not read", extra={"kind": refusal.kind})
        return {}
    return notices_by_referral(reply.notifications)


@dataclass(frozen=True)
class Wait:
    """The running wait of a referral: its deadline (if known) and rung."""

    since: datetime | None
    due: datetime | None
    rung: int

    def overdue(self, now: datetime) -> bool:
        return self.due is not None and self.due <= now

    def due_soon(self, now: datetime) -> bool:
        """Not overdue, but a reminder went out or half the time is gone (when
        Masar's ladder sends its reminder by default)."""
        if self.overdue(now):
            return False
        if self.rung >= 1:
            return True
        if self.due is None or self.since is None:
            return False
        return now >= self.since + (self.due - self.since) / 2


def wait_of(referral: Any, notices: Iterable[Notice]) -> Wait | None:
    """The wait a referral is in: an answer (PENDING, since it was made) or
    the start of the service (ACCEPTED, since the decision; its deadline is
    known from a reminder only). None once in service or closed."""
    mine = list(notices)
    if referral.status == common_pb2.REFERRAL_STATUS_PENDING:
        since = when_of(referral, "created_at")
        relevant = [n for n in mine if since is None or n.occurred_at >= since - CLOCK_SKEW]
        rung = 1 if referral.reminders > 0 else 0
    elif referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED:
        since = when_of(referral, "decided_at")
        relevant = [
            n
            for n in mine
            if n.kind == network_pb2.NOTIFICATION_KIND_REMINDER
            and (since is None or n.occurred_at > since)
        ]
        rung = 0
    else:
        return None
    dated = [n for n in relevant if n.deadline is not None]
    due = max(dated, key=lambda n: n.occurred_at).deadline if dated else None
    rung = max([rung, *(n.rung for n in relevant)])
    return Wait(since=since, due=due, rung=rung)


# --- the inbox ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    referral_id: str
    status: int
    risk: int
    provider: str
    received: datetime | None
    wait: Wait | None
    urgency: str  # overdue, due_soon, new, in_hand

    @property
    def due(self) -> datetime | None:
        return self.wait.due if self.wait else None

    @property
    def rung(self) -> int:
        return self.wait.rung if self.wait else 0


GROUPS = (
    ("overdue", N_("Overdue")),
    ("due_soon", N_("Due soon")),
    ("new", N_("New")),
    ("in_hand", N_("Accepted and in service")),
)
INBOX_STATUSES = (
    common_pb2.REFERRAL_STATUS_PENDING,
    common_pb2.REFERRAL_STATUS_ACCEPTED,
    common_pb2.REFERRAL_STATUS_IN_SERVICE,
)


def urgency_of(referral: Any, wait: Wait | None, now: datetime) -> str:
    if referral.status != common_pb2.REFERRAL_STATUS_PENDING:
        return "in_hand"
    if wait is not None and wait.overdue(now):
        return "overdue"
    if wait is not None and wait.due_soon(now):
        return "due_soon"
    return "new"


def inbox_groups(
    referrals: Iterable[Any],
    names: Mapping[str, str],
    notices: Mapping[str, list[Notice]],
    now: datetime,
) -> list[tuple[str, str, list[Row]]]:
    """(key, heading, rows) per group, the most urgent first; rows by deadline
    (unknown last), then oldest first."""
    rows: dict[str, list[Row]] = {key: [] for key, _ in GROUPS}
    seen: set[str] = set()
    for r in referrals:
        if r.referral_id in seen:
            continue
        seen.add(r.referral_id)
        wait = wait_of(r, notices.get(r.referral_id, ()))
        urgency = urgency_of(r, wait, now)
        rows[urgency].append(
            Row(
                referral_id=r.referral_id,
                status=int(r.status),
                risk=int(r.risk),
                provider=names.get(r.provider_id, r.provider_id),
                received=when_of(r, "created_at"),
                wait=wait,
                urgency=urgency,
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    for group in rows.values():
        group.sort(key=lambda row: (row.due or far, row.received or far))
    return [(key, heading, rows[key]) for key, heading in GROUPS]


async def inbox_context(request: Request) -> dict[str, Any]:
    sector = sector_of(request)
    referrals: list[Any] = []
    for status in INBOX_STATUSES:
        referrals.extend(await list_referrals(request, sector, status))
    names = await provider_names(request, sector)
    notices = await read_notices(request)
    now = datetime.now(UTC)
    groups = inbox_groups(referrals, names, notices, now)
    return {
        "sector": sector,
        "sector_label": sector_label(sector),
        "groups": groups,
        "total": sum(len(rows) for _, _, rows in groups),
        "now": now,
        "L": L,
    }


async def inbox(request: Request) -> Response:
    return render(request, "staff_inbox.html", **await inbox_context(request))


async def inbox_live(request: Request) -> Response:
    return render(request, "staff_inbox_live.html", **await inbox_context(request))


# --- one referral ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: datetime
    what: str  # a msgid
    detail: str = ""  # a msgid


@dataclass
class Detail:
    """One referral as its sector's staff see it."""

    sector: str
    referral: Any  # common_pb2.Referral
    # shelter Placement, legal GetLegalFileResponse, employment Enrolment,
    # health CareRecord, psychosocial SupportFile
    file: Any
    provider: str
    wait: Wait | None
    timeline: list[Event]

    @property
    def status(self) -> int:
        return int(self.referral.status)

    @property
    def actions(self) -> frozenset[str]:
        if self.status == common_pb2.REFERRAL_STATUS_PENDING:
            return frozenset({"accept", "decline"})
        if self.sector in care.SECTORS:
            return care.actions(self.sector, self.status, self.file)
        if self.status == common_pb2.REFERRAL_STATUS_ACCEPTED:
            return frozenset({"start"})
        if self.status == common_pb2.REFERRAL_STATUS_IN_SERVICE and self.outcomes:
            return frozenset({"complete"})
        return frozenset()

    @property
    def open_matters(self) -> Choices:
        """Legal: the matters still open (one is closed at a time)."""
        if self.sector != "legal":
            return Choices()
        codes = [
            c.code
            for c in MATTERS
            for m in self.file.matters
            if m.matter == c.value and m.status == legal_pb2.MATTER_STATUS_OPEN
        ]
        return MATTERS.only(codes)

    @property
    def outcomes(self) -> Choices:
        """What the person may choose as the outcome, in her sector."""
        if self.sector == "shelter":
            return EXIT_REASONS
        if self.sector == "legal":
            return MATTER_OUTCOMES if len(self.open_matters) else Choices()
        if self.sector in care.OUTCOMES:
            return care.OUTCOMES[self.sector]
        if self.file.training_outcome == employment_pb2.TRAINING_OUTCOME_UNSPECIFIED:
            return EMPLOYMENT_OUTCOMES
        return EMPLOYMENT_OUTCOMES.only({"job_placed"})


def timeline_of(sector: str, referral: Any, file: Any) -> list[Event]:
    events: list[Event] = []

    def add(at: datetime | None, what: str, detail: str = "") -> None:
        if at is not None:
            events.append(Event(at, what, detail))

    add(when_of(referral, "created_at"), N_("Referral received"))
    if referral.status == common_pb2.REFERRAL_STATUS_DECLINED:
        add(
            when_of(referral, "decided_at"),
            N_("Declined"),
            DECLINE_REASONS.label(referral.decline_reason),
        )
    elif referral.HasField("decided_at"):
        add(when_of(referral, "decided_at"), N_("Accepted"))
    if sector == "shelter":
        add(when_of(file, "checked_in_at"), N_("Checked in"))
        add(
            when_of(file, "checked_out_at"),
            N_("Checked out"),
            EXIT_REASONS.label(file.exit_reason) if file.exit_reason else "",
        )
    elif sector == "legal":
        add(when_of(file, "first_meeting_at"), N_("First meeting"))
        for m in file.matters:
            add(when_of(m, "closed_at"), N_("Matter closed"), MATTERS.label(m.matter))
    elif sector in care.SECTORS:
        for at, what, detail in care.timeline(sector, file):
            add(at, what, detail)
    else:
        add(when_of(file, "started_at"), N_("Training started"))
        add(
            when_of(file, "training_completed_at"),
            N_("Training ended"),
            TRAINING_OUTCOMES.label(file.training_outcome),
        )
        add(when_of(file, "placed_at"), N_("Placed in work"), EMPLOYERS.label(file.employer_type))
    events.sort(key=lambda e: e.at)
    return events


async def read_file(request: Request, sector: str, referral_id: str) -> tuple[Any, Any]:
    """(the referral, the sector's file of it): an audited read."""
    if sector == "shelter":
        reply = await call_on_referral(
            request,
            sector,
            "GetPlacement",
            shelter_pb2.GetPlacementRequest(referral_id=referral_id),
        )
        return reply.placement.referral, reply.placement
    if sector == "legal":
        reply = await call_on_referral(
            request, sector, "GetLegalFile", legal_pb2.GetLegalFileRequest(referral_id=referral_id)
        )
        return reply.referral, reply
    if sector == "health":
        reply = await call_on_referral(
            request,
            sector,
            "GetCareRecord",
            health_pb2.GetCareRecordRequest(referral_id=referral_id),
        )
        return reply.record.referral, reply.record
    if sector == "psychosocial":
        reply = await call_on_referral(
            request,
            sector,
            "GetSupportFile",
            psychosocial_pb2.GetSupportFileRequest(referral_id=referral_id),
        )
        return reply.file.referral, reply.file
    reply = await call_on_referral(
        request, sector, "GetEnrolment", employment_pb2.GetEnrolmentRequest(referral_id=referral_id)
    )
    return reply.enrolment.referral, reply.enrolment


async def load_detail(request: Request, sector: str, referral_id: str) -> Detail:
    referral, file = await read_file(request, sector, referral_id)
    names = await provider_names(request, sector)
    notices = await read_notices(request)
    return Detail(
        sector=sector,
        referral=referral,
        file=file,
        provider=names.get(referral.provider_id, referral.provider_id),
        wait=wait_of(referral, notices.get(referral_id, ())),
        timeline=timeline_of(sector, referral, file),
    )


async def show_referral(
    request: Request,
    sector: str,
    referral_id: str,
    *,
    errors: Mapping[str, str] | None = None,
    refused_detail: str = "",
    values: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    detail = await load_detail(request, sector, referral_id)
    return render(
        request,
        "staff_referral.html",
        status_code=status_code,
        d=detail,
        r=detail.referral,
        f=detail.file,
        sector=sector,
        L=L,
        outcomes=detail.outcomes,
        open_matters=detail.open_matters,
        employers=EMPLOYERS,
        contracts=CONTRACTS,
        errors=dict(errors or {}),
        fields=FIELDS,
        refused_detail=refused_detail,
        values=dict(values or {}),
        keys={name: new_key() for name in PAGE_FORMS},
        now=datetime.now(UTC),
        care=care.view(sector, detail.file),
        C=care,
        certificate=_certificate(sector, detail.file),
    )


async def referral_page(request: Request) -> Response:
    sector = sector_of(request)
    return await show_referral(request, sector, referral_id_of(request, sector))


# --- actions --------------------------------------------------------------------------


def decline_step(referral_id: str, form: FormData, key: str) -> Step:
    reason = choose(form, "reason", DECLINE_REASONS)
    return Step(
        "DecideReferral",
        common_pb2.DecideReferralRequest(
            referral_id=referral_id,
            decision=common_pb2.DECISION_DECLINE,
            decline_reason=common_pb2.DeclineReason.ValueType(reason.value),
            idempotency_key=key,
        ),
        DECLINED,
    )


def start_step(sector: str, referral_id: str, form: FormData, key: str) -> Step:
    if sector == "shelter":
        message: Any = shelter_pb2.CheckInRequest(referral_id=referral_id, idempotency_key=key)
        return Step("CheckIn", message, STARTED[sector])
    if sector == "legal":
        met_at = past_time(form, "met_at")
        message = legal_pb2.RecordFirstMeetingRequest(referral_id=referral_id, idempotency_key=key)
        stamp(message, "met_at", met_at)
        return Step("RecordFirstMeeting", message, STARTED[sector])
    if sector == "health":
        return care.start_step(referral_id, key)
    if sector == "psychosocial":
        raise Refused("conflict", care.NO_SUPPORT_START, service=sector)
    message = employment_pb2.StartEnrolmentRequest(referral_id=referral_id, idempotency_key=key)
    return Step("StartEnrolment", message, STARTED[sector])


def complete_step(detail: Detail, form: FormData, key: str) -> Step:
    """The completing RPC for the person's chosen outcome: never a default.
    Every field is checked before anything is sent, each error named."""
    referral_id = detail.referral.referral_id
    errors: dict[str, str] = {}

    def pick(name: str, choices: Choices) -> Choice | None:
        try:
            return choose(form, name, choices)
        except FormErrors as problem:
            errors.update(problem.errors)
            return None

    outcome = pick("outcome", detail.outcomes)
    if detail.sector == "shelter":
        if errors or outcome is None:
            raise FormErrors(errors)
        return Step(
            "CheckOut",
            shelter_pb2.CheckOutRequest(
                referral_id=referral_id,
                exit_reason=shelter_pb2.ExitReason.ValueType(outcome.value),
                idempotency_key=key,
            ),
            COMPLETED,
        )
    if detail.sector in care.SECTORS:
        if errors or outcome is None:
            raise FormErrors(errors)
        return care.complete_step(detail.sector, referral_id, outcome, key)
    if detail.sector == "legal":
        matter = pick("matter", detail.open_matters)
        closed_at: datetime | None = None
        try:
            closed_at = past_time(form, "closed_at")
        except FormErrors as problem:
            errors.update(problem.errors)
        if errors or outcome is None or matter is None or closed_at is None:
            raise FormErrors(errors)
        message = legal_pb2.CloseMatterRequest(
            referral_id=referral_id,
            matter=legal_pb2.LegalMatter.ValueType(matter.value),
            outcome=legal_pb2.MatterOutcome.ValueType(outcome.value),
            idempotency_key=key,
        )
        stamp(message, "closed_at", closed_at)
        return Step("CloseMatter", message, MATTER_CLOSED)
    # employment
    if outcome is not None and outcome.code == "job_placed":
        employer = pick("employer_type", EMPLOYERS)
        contract = pick("contract_type", CONTRACTS)
        if errors or employer is None or contract is None:
            raise FormErrors(errors)
        return Step(
            "RecordJobPlacement",
            employment_pb2.RecordJobPlacementRequest(
                referral_id=referral_id,
                employer_type=employment_pb2.EmployerType.ValueType(employer.value),
                contract_type=employment_pb2.ContractType.ValueType(contract.value),
                idempotency_key=key,
            ),
            COMPLETED,
        )
    if errors or outcome is None:
        raise FormErrors(errors)
    training = TRAINING_OUTCOMES.code(outcome.code)
    assert training is not None  # certified or dropped_out
    return Step(
        "CompleteTraining",
        employment_pb2.CompleteTrainingRequest(
            referral_id=referral_id,
            outcome=employment_pb2.TrainingOutcome.ValueType(training.value),
            idempotency_key=key,
        ),
        TRAINING_DONE if training.code == "certified" else COMPLETED,
    )


async def run_step(
    request: Request, sector: str, referral_id: str, form: FormData, form_name: str, step: Step
) -> Response:
    """Send the step; back to the referral with a notice, or the form again
    with the field the service refused."""
    try:
        reply = await call_on_referral(request, sector, step.method, step.message)
    except Refused as refusal:
        named = FORM_FIELDS.get(form_name, {}).get(refusal.field)
        if refusal.kind != "invalid" or named is None:
            raise
        return await form_again(
            request, sector, referral_id, form, {named: REFUSED_VALUE}, refusal.message
        )
    session = session_of(request)
    session.flash(done_message(step, reply))
    if getattr(reply, "delivery", None) == DELIVERY_QUEUED:
        session.flash(QUEUED)
    return back(f"/referrals/{referral_id}")


def done_message(step: Step, reply: Any) -> str:
    """Closing a legal matter completes the referral only if it was the last;
    the first session she attends starts her support."""
    if step.method == "CloseMatter":
        last = reply.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
        return COMPLETED if last else MATTER_CLOSED
    return care.done_message(step, reply)


async def form_again(
    request: Request,
    sector: str,
    referral_id: str,
    form: FormData,
    errors: Mapping[str, str],
    refused_detail: str = "",
) -> Response:
    values: dict[str, Any] = {name: text(form, name) for name in KEPT_VALUES}
    values.update({name: texts(form, name) for name in KEPT_LISTS})
    return await show_referral(
        request,
        sector,
        referral_id,
        errors=errors,
        refused_detail=refused_detail,
        values=values,
        status_code=400,
    )


async def accept(request: Request, form: FormData) -> Response:
    sector = sector_of(request)
    referral_id = referral_id_of(request, sector)
    step = Step(
        "DecideReferral",
        common_pb2.DecideReferralRequest(
            referral_id=referral_id,
            decision=common_pb2.DECISION_ACCEPT,
            idempotency_key=key_of(form),
        ),
        ACCEPTED,
    )
    return await run_step(request, sector, referral_id, form, "accept", step)


async def decline(request: Request, form: FormData) -> Response:
    sector = sector_of(request)
    referral_id = referral_id_of(request, sector)
    try:
        step = decline_step(referral_id, form, key_of(form))
    except FormErrors as problem:
        return await form_again(request, sector, referral_id, form, problem.errors)
    return await run_step(request, sector, referral_id, form, "decline", step)


async def start(request: Request, form: FormData) -> Response:
    sector = sector_of(request)
    referral_id = referral_id_of(request, sector)
    try:
        step = start_step(sector, referral_id, form, key_of(form))
    except FormErrors as problem:
        return await form_again(request, sector, referral_id, form, problem.errors)
    return await run_step(request, sector, referral_id, form, "start", step)


async def complete(request: Request, form: FormData) -> Response:
    sector = sector_of(request)
    referral_id = referral_id_of(request, sector)
    if sector == "shelter" or sector in care.SECTORS:  # outcomes not depending on the file
        referral: Any = common_pb2.Referral(referral_id=referral_id)
        file: Any = None
    else:
        # What may be chosen depends on the referral (its open matters, a
        # training outcome already recorded): read it first (audited, as
        # opening the page is).
        referral, file = await read_file(request, sector, referral_id)
    detail = Detail(sector, referral, file, provider="", wait=None, timeline=[])
    try:
        step = complete_step(detail, form, key_of(form))
    except FormErrors as problem:
        return await form_again(request, sector, referral_id, form, problem.errors)
    return await run_step(request, sector, referral_id, form, "complete", step)


def recorder(name: str) -> FormHandler:
    """The handler of a care sector's record form `name` (console.pages.care):
    what it may offer depends on the file, read first (audited, as opening
    the page is)."""

    async def record(request: Request, form: FormData) -> Response:
        sector = sector_of(request)
        referral_id = referral_id_of(request, sector)
        _, file = await read_file(request, sector, referral_id)
        try:
            step = care.record_step(name, referral_id, file, form, key_of(form))
        except FormErrors as problem:
            return await form_again(request, sector, referral_id, form, problem.errors)
        return await run_step(request, sector, referral_id, form, name, step)

    return record


def roles_of(sector: str) -> frozenset[str]:
    """The staff roles of `sector`."""
    return frozenset(role for role, found in STAFF_SECTORS.items() if found == sector)


# --- capacity -------------------------------------------------------------------------

# The provider ids each sector's capacity form may name (anything else is "not allowed").
PROVIDER_ID = {
    "shelter": re.compile(r"^shl-[0-9a-f]{1,32}$"),
    "employment": re.compile(r"^prg-[0-9a-f]{1,32}$"),
}
NUMBER = re.compile(r"^[0-9]{1,5}$")
CAPACITY_SAVED = {
    "shelter": N_("Number of beds saved."),
    "employment": N_("Number of seats saved."),
}
ENTER_NUMBER = N_("Enter a whole number, 0 or more.")
BELOW_IN_USE = N_("This cannot be less than what is in use now: %(n)s.")
FORM_SENT = N_("This form had already been sent. The numbers shown are the ones now.")
# The fields of a refused SetShelterCapacity / SetProgrammeSeats that are the number.
NUMBER_FIELDS = frozenset({"capacity", "seats"})


@dataclass(frozen=True)
class FieldError:
    """A field's error on the capacity page: a msgid, with `n` when it says a number."""

    message: str
    n: int | None = None


def in_use(provider: Any) -> int:
    """Beds reserved or occupied (a shelter), seats taken (a programme): the
    least the number may be."""
    if "shelter_id" in provider.DESCRIPTOR.fields_by_name:
        return int(provider.reserved_beds) + int(provider.occupied_beds)
    return int(provider.seats_taken)


def capacity_of(provider: Any) -> int:
    if "shelter_id" in provider.DESCRIPTOR.fields_by_name:
        return int(provider.capacity)
    return int(provider.seats)


async def own_providers(request: Request, sector: str) -> list[Any]:
    """The shelters or programmes of the person's organisation, by region and name."""
    session = session_of(request)
    own = [
        p
        for p in await providers(request, sector)
        if session.organisation_id and p.organisation_id == session.organisation_id
    ]
    own.sort(key=lambda p: (p.region, p.name))
    return own


async def show_capacity(
    request: Request,
    *,
    errors: Mapping[str, FieldError] | None = None,
    values: Mapping[str, str] | None = None,
    refused_detail: str = "",
    status_code: int = 200,
) -> Response:
    sector = sector_of(request)
    own = await own_providers(request, sector)
    shown = {provider_id_of(p) for p in own}
    return render(
        request,
        "staff_capacity.html",
        status_code=status_code,
        sector=sector,
        providers=own,
        L=L,
        in_use=in_use,
        capacity_of=capacity_of,
        provider_id_of=provider_id_of,
        errors={k: v for k, v in (errors or {}).items() if k in shown},
        values=dict(values or {}),
        refused_detail=refused_detail,
        keys={provider_id_of(p): new_key() for p in own},
    )


async def capacity(request: Request) -> Response:
    """The beds of the organisation's shelters, the seats of its programmes."""
    return await show_capacity(request)


def capacity_request(sector: str, provider_id: str, number: int, key: str) -> tuple[str, Any]:
    """The RPC that sets the number, and its request."""
    if sector == "shelter":
        return "SetShelterCapacity", shelter_pb2.SetShelterCapacityRequest(
            shelter_id=provider_id, capacity=number, idempotency_key=key
        )
    return "SetProgrammeSeats", employment_pb2.SetProgrammeSeatsRequest(
        programme_id=provider_id, seats=number, idempotency_key=key
    )


async def set_capacity(request: Request, form: FormData) -> Response:
    """A new number of beds or seats for one row: back to the page with a
    notice, or the page again with the row's field named."""
    sector = sector_of(request)
    provider_id = text(form, "provider_id")
    if sector not in PROVIDER_ID or not PROVIDER_ID[sector].match(provider_id):
        raise _not_allowed_provider(sector)
    raw = text(form, "capacity")
    if not NUMBER.match(raw):
        return await show_capacity(
            request,
            errors={provider_id: FieldError(ENTER_NUMBER)},
            values={provider_id: raw},
            status_code=400,
        )
    number = int(raw)
    method, message = capacity_request(sector, provider_id, number, key_of(form))
    try:
        await call(request, sector, method, message)
    except Refused as refusal:
        if refusal.kind == "not_found":
            raise _not_allowed_provider(sector) from None
        if refusal.kind != "invalid":
            raise
        return await capacity_again(request, sector, provider_id, number, refusal)
    session_of(request).flash(CAPACITY_SAVED[sector])
    return back("/capacity")


async def capacity_again(
    request: Request, sector: str, provider_id: str, number: int, refusal: Refused
) -> Response:
    """The page again after the service refused the number (or the form)."""
    if refusal.field in NUMBER_FIELDS:
        least = {provider_id_of(p): in_use(p) for p in await own_providers(request, sector)}
        floor = least.get(provider_id)
        error = (
            FieldError(BELOW_IN_USE, floor)
            if floor is not None and number < floor
            else FieldError(REFUSED_VALUE)
        )
        return await show_capacity(
            request,
            errors={provider_id: error},
            values={provider_id: str(number)},
            refused_detail=refusal.message,
            status_code=400,
        )
    if refusal.field == "idempotency_key":
        # An earlier sending of this form (its key) for another number, e.g.
        # from a page kept open: show the numbers as they are now.
        return await show_capacity(
            request, errors={provider_id: FieldError(FORM_SENT)}, status_code=400
        )
    return await show_capacity(
        request,
        errors={provider_id: FieldError(REFUSED_VALUE)},
        values={provider_id: str(number)},
        refused_detail=refusal.message,
        status_code=400,
    )


def _not_allowed_provider(service: str) -> Refused:
    return Refused("not_allowed", "the provider is not run by your organisation", service=service)


routes: list[Route] = [
    page("/referrals", inbox, roles=STAFF_ROLES),
    page("/referrals/live", inbox_live, roles=STAFF_ROLES),
    page("/referrals/{referral_id}", referral_page, roles=STAFF_ROLES),
    action("/referrals/{referral_id}/accept", accept, roles=STAFF_ROLES),
    action("/referrals/{referral_id}/decline", decline, roles=STAFF_ROLES),
    action("/referrals/{referral_id}/start", start, roles=STAFF_ROLES),
    action("/referrals/{referral_id}/complete", complete, roles=STAFF_ROLES),
    *(
        action(f"/referrals/{{referral_id}}/{name}", recorder(name), roles=roles_of(sector))
        for name, sector in care.FORMS.items()
    ),
    page("/capacity", capacity, roles=CAPACITY_ROLES),
    action("/capacity", set_capacity, roles=CAPACITY_ROLES),
]


def _certificate(sector: str, file: Any) -> dict[str, Any] | None:
    """What legal aid may know of a medical certificate (the complaint needs
    it): that it exists, when it was issued, its ITT days — nothing clinical."""
    if sector != "legal" or file is None or not file.HasField("certificate"):
        return None
    cert = file.certificate
    return {
        "issued_at": when_of(cert, "issued_at"),
        "itt_days": cert.itt_days,
        "over_20": cert.itt_over_20_days,
    }
