"""The intake pages, for the people who hold cases (intake officers,
supervisors) and the care units that register cases for others to hold.

- `GET /cases`: the cases in my scope (ListCases with my token: my
  organisation's, or for a care unit those it registered) — ids, regions,
  levels, statuses and dates only, never an alias or a contact.
- `GET|POST /cases/new`: register a case with the full form (the consent
  script read aloud in her language first, then who and where, the incident,
  the risk checklist, needs). The incident time is read as Morocco's local
  time and sent in UTC. A refused value re-renders the form (400) with the
  error beside its field and every value kept, personal data included, in
  that POST response only; success redirects (303) to `/cases/{case_id}`.
- `POST /cases/{case_id}/follow-up | /consent/withdraw | /closure |
  /transfer`: the holder's changes, as the CLI makes them (the journey API
  for follow-up, consent and closure; IntakeService for a transfer), then
  back to the case page with a notice.
- `intake_panel(request, case_id)`: what `_intake_actions.html`, included
  by the case page, needs.

Personal data (alias, contact, notes) travel only in POST bodies: never in a
URL, a title, a flash or a log line."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console import i18n
from console.backend import Refused
from console.consent_scripts import SCRIPTS, default_script
from console.i18n import N_
from console.labels import OTHER, RISK_CLASSES, RISKS, label
from console.sessions import Session
from console.web import (
    CASE_HOLDERS,
    action,
    back,
    console_of,
    language_of,
    page,
    render,
    session_of,
    text,
    texts,
)
from masar.v1 import common_pb2, intake_pb2, journey_pb2, legal_pb2, network_pb2

# Who may change a case (the service's HOLDER_ROLES); a care unit registers
# cases for another organisation to hold and only follows them.
HOLDERS = frozenset({"intake_officer", "supervisor"})
CARE_UNIT = "care_unit_officer"

CASE_ID = re.compile(r"[0-9a-f]{16}")
ORGANISATION_ID = re.compile(r"org-[0-9a-f]{12}")
KEY = re.compile(r"web-[0-9a-f]{32}")
PAGE_SIZE = 50
ORGANISATION_PAGES = 10  # at most 10 pages of 200 organisations for a choice list

# --- what people read for each code ---------------------------------------------------

REGIONS = {
    "tanger-tetouan-al-hoceima": N_("Tanger-Tétouan-Al Hoceïma"),
    "oriental": N_("Oriental"),
    "fes-meknes": N_("Fès-Meknès"),
    "rabat-sale-kenitra": N_("Rabat-Salé-Kénitra"),
    "beni-mellal-khenifra": N_("Béni Mellal-Khénifra"),
    "casablanca-settat": N_("Casablanca-Settat"),
    "marrakech-safi": N_("Marrakech-Safi"),
    "draa-tafilalet": N_("Drâa-Tafilalet"),
    "souss-massa": N_("Souss-Massa"),
    "guelmim-oued-noun": N_("Guelmim-Oued Noun"),
    "laayoune-sakia-el-hamra": N_("Laâyoune-Sakia El Hamra"),
    "dakhla-oued-ed-dahab": N_("Dakhla-Oued Ed-Dahab"),
}
CASE_STATUSES = {
    intake_pb2.CASE_STATUS_OPEN: N_("Open"),
    intake_pb2.CASE_STATUS_CLOSURE_REQUESTED: N_("Closure requested"),
}
JOURNEY_STATES = {
    intake_pb2.JOURNEY_STATE_START_PENDING: N_("Starting soon"),
    intake_pb2.JOURNEY_STATE_STARTED: N_("Running"),
}
# GBVIMS: one type per incident, the most specific (the classification
# tool's order).
VIOLENCE_TYPES = {
    "rape": N_("Rape"),
    "sexual_assault": N_("Sexual assault (includes attempted rape and FGM/C)"),
    "physical_assault": N_("Physical assault"),
    "forced_marriage": N_("Forced marriage (includes early marriage)"),
    "denial_of_resources": N_("Denial of resources, opportunities or services"),
    "psychological_abuse": N_("Psychological or emotional abuse"),
}
CONTEXTS = {
    "intimate_partner": N_("Intimate partner"),
    "family_member": N_("Another family member"),
    "trafficking": N_("Trafficking (Law 27-14)"),
    "child_sexual_abuse": N_("Child sexual abuse"),
    "workplace": N_("Workplace"),
    "technology_facilitated": N_("Technology-facilitated"),
}
# The checklist (masar.v1.RiskChecklist), one question per indicator.
RISK_QUESTIONS = {
    "threats_to_kill": N_("Has the perpetrator threatened to kill her?"),
    "strangulation": N_("Has the perpetrator ever strangled or choked her?"),
    "weapon": N_("Has the perpetrator used or threatened to use a weapon?"),
    "escalation": N_("Is the violence getting more frequent or more severe?"),
    "separation": N_("Has she recently left the perpetrator, or is she about to?"),
    "stalking": N_("Does the perpetrator follow, watch or harass her?"),
    "pregnancy": N_("Is she pregnant?"),
    "children_threatened": N_("Has the perpetrator threatened the children?"),
    "perpetrator_access": N_("Can the perpetrator reach her (lives with her, knows where she is)?"),
}
ANSWERS = {
    "yes": N_("Yes"),
    "no": N_("No"),
    "unknown": N_("She does not know, or prefers not to say"),
}
OVERRIDE_LEVELS = {"medium": N_("Medium"), "high": N_("High"), "critical": N_("Critical")}
NEEDS = {
    "shelter": N_("Shelter"),
    "legal": N_("Legal aid"),
    "employment": N_("Training and work"),
    "medical": N_("Health care"),
}
# What she consents to, in the order the script explains it.
CONSENTS = {
    "shelter": N_("Shelter: she agrees to be referred"),
    "legal": N_("Legal aid: she agrees to be referred"),
    "employment": N_("Training and work: she agrees to be referred"),
    "reporting": N_("Statistics: she agrees to be counted, without her name"),
}
SCOPES = {
    "shelter": N_("Shelter"),
    "legal": N_("Legal aid"),
    "employment": N_("Training and work"),
    "reporting": N_("De-identified statistics"),
}
ACCESSIBILITY = {
    "wheelchair": N_("Wheelchair (step-free access, accessible bathroom)"),
    "ground_floor": N_("Ground floor"),
    "sign_language": N_("Sign language"),
    "visual_support": N_("Support for low vision"),
    "nursing_care": N_("Nursing care"),
}
LEGAL_MATTERS = {
    "protection_order": N_("Protection order"),
    "criminal_complaint": N_("Criminal complaint"),
    "family_law": N_("Family law (divorce, custody, maintenance)"),
    "residency": N_("Residency papers"),
    "trafficking": N_("Trafficking (Law 27-14)"),
}
PROGRAMMES = {
    "confectionery": N_("Confectionery"),
    "goldsmithing": N_("Goldsmithing"),
    "cookery": N_("Cookery"),
    "sewing": N_("Sewing"),
    "embroidery": N_("Embroidery"),
    "hairdressing": N_("Hairdressing"),
    "carpet_weaving": N_("Carpet weaving"),
    "literacy": N_("Literacy"),
    "digital_skills": N_("Digital skills"),
    "entrepreneurship": N_("Entrepreneurship"),
}
# The languages she speaks (lowercase ISO 639 codes, as the service stores them).
LANGUAGES = {
    "ary": N_("Darija"),
    "zgh": N_("Tamazight"),
    "shi": N_("Tachelhit"),
    "tzm": N_("Central Atlas Tamazight"),
    "rif": N_("Tarifit"),
    "ar": N_("Arabic"),
    "fr": N_("French"),
    "es": N_("Spanish"),
    "en": N_("English"),
}
MIGRANT_STATUSES = {
    "not_a_migrant": N_("Not a migrant"),
    "in_transit": N_("Migrant in transit"),
    "settled": N_("Migrant settled in Morocco"),
    "refugee_or_asylum_seeker": N_("Refugee or asylum seeker"),
    "returned_national": N_("Moroccan who returned from abroad"),
}
FOLLOW_UP_CHANNELS = {
    "phone": N_("Phone"),
    "in_person": N_("In person"),
    "home_visit": N_("Home visit"),
    "message": N_("Message"),
}
CLOSURE_REASONS = {
    "survivor_request": N_("She asked for it"),
    "needs_met": N_("Her needs are met"),
    "no_contact": N_("No contact with her for a long time"),
    "moved": N_("She moved away"),
    "transferred": N_("Her case was transferred"),
}
TRANSFER_REASONS = {
    "closer_to_home": N_("Closer to her home"),
    "specialised_service": N_("A service we do not offer"),
    "capacity": N_("We have no capacity"),
    "language": N_("Her language"),
    "survivor_request": N_("She asked for it"),
}
ORGANISATION_KINDS = {
    network_pb2.ORGANISATION_KIND_ASSOCIATION: N_("Association"),
    network_pb2.ORGANISATION_KIND_MULTIFUNCTIONAL_CENTRE: N_("Multifunctional centre"),
    network_pb2.ORGANISATION_KIND_SHELTER_OPERATOR: N_("Shelter operator"),
    network_pb2.ORGANISATION_KIND_LEGAL_AID_PROVIDER: N_("Legal aid provider"),
    network_pb2.ORGANISATION_KIND_TRAINING_CENTRE: N_("Training centre"),
}
CARE_UNIT_KINDS = frozenset(
    {
        network_pb2.ORGANISATION_KIND_HOSPITAL_CARE_UNIT,
        network_pb2.ORGANISATION_KIND_COURT_CARE_UNIT,
        network_pb2.ORGANISATION_KIND_POLICE_CARE_UNIT,
        network_pb2.ORGANISATION_KIND_GENDARMERIE_CARE_UNIT,
    }
)


V_co = TypeVar("V_co", covariant=True)


class _Enum(Protocol[V_co]):
    """A generated protobuf enum (its `Value` by name)."""

    def Value(self, name: str) -> V_co: ...


def _values(enum: _Enum[V_co], prefix: str, slugs: Iterable[str]) -> dict[str, V_co]:
    return {slug: enum.Value(prefix + slug.upper()) for slug in slugs}


VIOLENCE_PB = _values(intake_pb2.ViolenceType, "VIOLENCE_TYPE_", VIOLENCE_TYPES)
CONTEXT_PB = _values(intake_pb2.IncidentContext, "INCIDENT_CONTEXT_", CONTEXTS)
ANSWER_PB = _values(intake_pb2.RiskAnswer, "RISK_ANSWER_", ANSWERS)
LEVEL_PB = _values(common_pb2.RiskLevel, "RISK_LEVEL_", OVERRIDE_LEVELS)
NEED_PB = _values(common_pb2.Sector, "SECTOR_", NEEDS)
SCOPE_PB = {
    **_values(intake_pb2.ConsentScope, "CONSENT_SCOPE_", ("shelter", "legal", "employment")),
    "reporting": intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
}
SCOPE_SLUG = {value: slug for slug, value in SCOPE_PB.items()}
MATTER_PB = _values(legal_pb2.LegalMatter, "LEGAL_MATTER_", LEGAL_MATTERS)
MIGRANT_PB = _values(intake_pb2.MigrantStatus, "MIGRANT_STATUS_", MIGRANT_STATUSES)
CHANNEL_PB = _values(intake_pb2.FollowUpChannel, "FOLLOW_UP_CHANNEL_", FOLLOW_UP_CHANNELS)
CLOSURE_PB = _values(intake_pb2.ClosureReason, "CLOSURE_REASON_", CLOSURE_REASONS)
TRANSFER_PB = _values(intake_pb2.TransferReason, "TRANSFER_REASON_", TRANSFER_REASONS)


def options(table: Mapping[str, str]) -> list[tuple[str, str]]:
    """(value, message id) pairs for a select or a group of checkboxes."""
    return list(table.items())


# --- time --------------------------------------------------------------------------------


def local_to_utc(value: str) -> datetime:
    """A `datetime-local` value ("2026-03-14T22:00"), read as Morocco's local
    time (`Africa/Casablanca`, whose offset changes around Ramadan), in UTC.
    ValueError if it is not one."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        raise ValueError("a datetime-local value carries no offset")
    return moment.replace(tzinfo=i18n.MOROCCO).astimezone(UTC)


def local_input(moment: datetime) -> str:
    """`moment` as a `datetime-local` value in Morocco's local time, to the minute."""
    return moment.astimezone(i18n.MOROCCO).strftime("%Y-%m-%dT%H:%M")


def _now() -> datetime:
    return datetime.now(UTC)


def new_key() -> str:
    return f"web-{secrets.token_hex(16)}"


def key_of(form: FormData) -> str:
    """The form's idempotency key (a resubmitted form is answered once), or a new one."""
    sent = text(form, "idempotency_key")
    return sent if KEY.fullmatch(sent) else new_key()


# --- the registration form ---------------------------------------------------------------

RISK_FIELDS = tuple(f"risk_{name}" for name in RISK_QUESTIONS)
SINGLE_FIELDS = (
    "idempotency_key",
    "script_language",
    "region",
    "holding_organisation_id",
    "incident_at",
    "violence_type",
    *RISK_FIELDS,
    "override_level",
    "override_reason",
    "children",
    "birth_year",
    "nationality",
    "migrant_status",
    "languages_other",
    "alias",
    "phone",
    "safe_contact",
)
MULTI_FIELDS: dict[str, Mapping[str, str]] = {
    "consents": CONSENTS,
    "needs": NEEDS,
    "contexts": CONTEXTS,
    "accessibility": ACCESSIBILITY,
    "legal_matters": LEGAL_MATTERS,
    "employment_interests": PROGRAMMES,
    "languages": LANGUAGES,
}
MAX_CHILDREN = 20
MAX_LANGUAGES = 10
ALIAS_MAX = 100
CONTACT_MAX = 500
OVERRIDE_REASON_MAX = 2000
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
_NATIONALITY = re.compile(r"[A-Z]{2}")
_PHONE = re.compile(r"\+?[0-9 ]{6,20}")

# What the officer reads beside a field the console refuses itself.
CHOOSE_REGION = N_("Choose the region where she is.")
CHOOSE_HOLDER = N_("Choose the organisation that will hold the case.")
CHOOSE_LISTED = N_("Choose one of the organisations listed.")
CHOOSE_VIOLENCE = N_("Choose the type of violence: one, the most specific.")
GIVE_INCIDENT = N_("Give the date and hour of the incident.")
ON_THE_HOUR = N_("The incident time is kept to the hour: the minutes were dropped.")
NOT_FUTURE = N_("This time is in the future.")
ANSWER_IT = N_("Answer this question (or: she does not know).")
OVERRIDE_REASON = N_("Say why you raise the level.")
OVERRIDE_LEVEL = N_("Choose the level you raise it to, or leave the reason empty.")
TOO_LONG = N_("This text is too long.")
CHILDREN_RANGE = N_("A number from 0 to 20.")
BIRTH_YEAR = N_("A year between 1900 and this year, or nothing.")
NATIONALITY = N_("Two letters (the country's ISO code, e.g. MA), or nothing.")
LANGUAGE_CODES = N_("Codes of 2 or 3 lowercase letters, separated by commas (e.g. wo, bm).")
TOO_MANY_LANGUAGES = N_("At most 10 languages.")
PHONE = N_("6 to 20 digits or spaces, optionally after +.")
LEGAL_MATTER_NEEDED = N_("Choose at least one legal matter when she needs legal aid.")
REFUSED_VALUE = N_("This value was refused.")
REFUSED_FORM = N_("The case was not registered: a value was refused.")

# A field path the service names (InvalidArgument) -> the form's field.
_FIELD_OF = {
    "survivor.region": "region",
    "survivor.alias": "alias",
    "survivor.contact.safe_contact_instructions": "safe_contact",
    "survivor.contact": "phone",
    "survivor.languages": "languages",
    "survivor.accompanying_children": "children",
    "survivor.birth_year": "birth_year",
    "survivor.nationality": "nationality",
    "survivor.migrant_status": "migrant_status",
    "incident.occurred_at": "incident_at",
    "incident.violence_type": "violence_type",
    "incident.contexts": "contexts",
    "incident": "incident_at",
    "risk.override.level": "override_level",
    "risk.override.reason": "override_reason",
    "needs": "needs",
    "household.accessibility_needs": "accessibility",
    "legal_matters": "legal_matters",
    "employment_interests": "employment_interests",
    "consents": "consents",
    "holding_organisation_id": "holding_organisation_id",
}


def form_field(path: str) -> str:
    """The form field a service's field path names ("" for the form as a
    whole): `risk.checklist.weapon` -> `risk_weapon`, `consents[1]` ->
    `consents`, `survivor.contact.phone` -> `phone`."""
    path = re.sub(r"\[\d+\]", "", path)
    if path.startswith("risk.checklist."):
        name = f"risk_{path.removeprefix('risk.checklist.')}"
        return name if name in RISK_FIELDS else ""
    while path:
        if path in _FIELD_OF:
            return _FIELD_OF[path]
        path = path.rpartition(".")[0]
    return ""


@dataclass
class CaseForm:
    """The registration form as sent (kept to show it again) and what was
    refused: `errors` maps a field ("" for the form) to a message id,
    `details` to the service's own words when it refused the value."""

    values: dict[str, str] = field(default_factory=dict)
    choices: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    # The incident time had minutes: it was kept to the hour.
    floored: bool = False

    @classmethod
    def blank(cls, session: Session, console_language: str) -> CaseForm:
        return cls(
            values={
                "idempotency_key": new_key(),
                "script_language": default_script(console_language),
                "region": session.region if session.region in REGIONS else "",
                "children": "0",
            },
            choices={name: [] for name in MULTI_FIELDS},
        )

    @classmethod
    def sent(cls, form: FormData) -> CaseForm:
        values = {name: text(form, name) for name in SINGLE_FIELDS}
        if not KEY.fullmatch(values["idempotency_key"]):
            values["idempotency_key"] = new_key()
        # Only the codes the form offers: anything else was not offered.
        choices = {
            name: [v for v in dict.fromkeys(texts(form, name)) if v in table]
            for name, table in MULTI_FIELDS.items()
        }
        return cls(values=values, choices=choices)

    def refuse(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def refused_by_service(self, refusal: Refused) -> None:
        name = form_field(refusal.field)
        self.errors[name] = REFUSED_VALUE if name else REFUSED_FORM
        self.details[name] = refusal.message


def build_registration(
    sent: CaseForm,
    *,
    care_unit: bool,
    holders: Iterable[str] = (),
    now: datetime | None = None,
) -> intake_pb2.RegisterCaseRequest | None:
    """The RegisterCase request the form asks for, or None with `sent.errors`
    naming each field the console refuses itself (then nothing is called).
    `holders`: the organisation ids a care unit may choose from."""
    now = now or _now()
    v, c = sent.values, sent.choices

    region = v["region"]
    if region not in REGIONS:
        sent.refuse("region", CHOOSE_REGION)
    holder = ""
    if care_unit:
        holder = v["holding_organisation_id"]
        if not holder:
            sent.refuse("holding_organisation_id", CHOOSE_HOLDER)
        elif holder not in set(holders):
            sent.refuse("holding_organisation_id", CHOOSE_LISTED)

    occurred = _incident_time(sent, now)
    if v["violence_type"] not in VIOLENCE_PB:
        sent.refuse("violence_type", CHOOSE_VIOLENCE)

    answers: dict[str, intake_pb2.RiskAnswer.ValueType] = {}
    for name in RISK_QUESTIONS:
        answer = v[f"risk_{name}"]
        if answer in ANSWER_PB:
            answers[name] = ANSWER_PB[answer]
        else:
            sent.refuse(f"risk_{name}", ANSWER_IT)
    override_level, override_reason = v["override_level"], v["override_reason"]
    if override_level and override_level not in LEVEL_PB:
        sent.refuse("override_level", OVERRIDE_LEVEL)
    elif override_level and not override_reason:
        sent.refuse("override_reason", OVERRIDE_REASON)
    elif override_reason and not override_level:
        sent.refuse("override_level", OVERRIDE_LEVEL)
    if len(override_reason) > OVERRIDE_REASON_MAX:
        sent.refuse("override_reason", TOO_LONG)

    children = _whole(v["children"] or "0")
    if children is None or not 0 <= children <= MAX_CHILDREN:
        sent.refuse("children", CHILDREN_RANGE)
    birth_year = _whole(v["birth_year"] or "0")
    if birth_year is None or (birth_year and not 1900 <= birth_year <= now.year):
        sent.refuse("birth_year", BIRTH_YEAR)
    nationality = v["nationality"].upper()
    if nationality and not _NATIONALITY.fullmatch(nationality):
        sent.refuse("nationality", NATIONALITY)
    migrant = v["migrant_status"]
    if migrant and migrant not in MIGRANT_PB:
        migrant = ""
    languages = _languages(sent)

    if len(v["alias"]) > ALIAS_MAX:
        sent.refuse("alias", TOO_LONG)
    if v["phone"] and not _PHONE.fullmatch(v["phone"]):
        sent.refuse("phone", PHONE)
    if len(v["safe_contact"]) > CONTACT_MAX:
        sent.refuse("safe_contact", TOO_LONG)
    if "legal" in c["needs"] and not c["legal_matters"]:
        sent.refuse("legal_matters", LEGAL_MATTER_NEEDED)

    if sent.errors or occurred is None:
        return None
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=v["idempotency_key"],
        survivor=intake_pb2.SurvivorProfile(
            alias=v["alias"],
            birth_year=birth_year or 0,
            nationality=nationality,
            migrant_status=MIGRANT_PB.get(migrant, intake_pb2.MIGRANT_STATUS_UNSPECIFIED),
            languages=languages,
            region=region,
            contact=intake_pb2.ContactDetails(
                phone=v["phone"], safe_contact_instructions=v["safe_contact"]
            ),
            accompanying_children=children or 0,
        ),
        incident=intake_pb2.Incident(
            violence_type=VIOLENCE_PB[v["violence_type"]],
            contexts=[CONTEXT_PB[x] for x in c["contexts"]],
        ),
        risk=intake_pb2.RiskAssessmentInput(
            checklist=intake_pb2.RiskChecklist(**answers),
        ),
        needs=[NEED_PB[x] for x in c["needs"]],
        household=intake_pb2.HouseholdNeeds(accessibility_needs=c["accessibility"]),
        legal_matters=[MATTER_PB[x] for x in c["legal_matters"]],
        employment_interests=c["employment_interests"],
        consents=[SCOPE_PB[x] for x in c["consents"]],
        holding_organisation_id=holder,
    )
    request.incident.occurred_at.FromDatetime(occurred)
    if override_level:
        request.risk.override.level = LEVEL_PB[override_level]
        request.risk.override.reason = override_reason
    return request


def _incident_time(sent: CaseForm, now: datetime) -> datetime | None:
    value = sent.values["incident_at"]
    if not value:
        sent.refuse("incident_at", GIVE_INCIDENT)
        return None
    try:
        occurred = local_to_utc(value)
    except ValueError:
        sent.refuse("incident_at", GIVE_INCIDENT)
        return None
    if occurred > now:
        sent.refuse("incident_at", NOT_FUTURE)
        return None
    # Kept to the hour (GBVIMS; intake floors it too): the officer is told.
    # Morocco's offsets are whole hours: the hour locally is the hour in UTC.
    if occurred.minute or occurred.second or occurred.microsecond:
        sent.floored = True
    return occurred.replace(minute=0, second=0, microsecond=0)


def _languages(sent: CaseForm) -> list[str]:
    """The languages she speaks: those ticked, the others typed, and the one
    the consent script was read in (she understood it)."""
    chosen = list(sent.choices["languages"])
    script = sent.values["script_language"]
    if script in SCRIPTS and script not in chosen:
        chosen.append(script)
    other = [x.strip().lower() for x in sent.values["languages_other"].split(",") if x.strip()]
    if any(not _LANGUAGE_CODE.fullmatch(x) for x in other):
        sent.refuse("languages_other", LANGUAGE_CODES)
        return chosen
    languages = list(dict.fromkeys(chosen + other))
    if len(languages) > MAX_LANGUAGES:
        sent.refuse("languages_other", TOO_MANY_LANGUAGES)
    return languages


def _whole(value: str) -> int | None:
    return int(value) if value.isdecimal() else None


# --- organisations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Organisation:
    organisation_id: str
    name: str
    kind: str  # message id


async def organisations_of(
    request: Request, region: str, *, excluding: Iterable[str] = ()
) -> list[Organisation] | None:
    """The active organisations of `region` that may hold a case (not a care
    unit), but those `excluding`, by name; None if the network service
    cannot tell now."""
    if region not in REGIONS:
        return []  # never every region's organisations
    console = console_of(request)
    session = session_of(request)
    left_out = set(excluding)
    found: list[Organisation] = []
    token = ""
    try:
        for _ in range(ORGANISATION_PAGES):
            reply = await console.backend.call(
                session,
                "network",
                console.backend.stubs.network.ListOrganisations,
                network_pb2.ListOrganisationsRequest(
                    region=region,
                    status=network_pb2.ORGANISATION_STATUS_ACTIVE,
                    page_size=200,
                    page_token=token,
                ),
            )
            found += [
                Organisation(o.organisation_id, o.name, label(ORGANISATION_KINDS, o.kind))
                for o in reply.organisations
                if o.kind not in CARE_UNIT_KINDS
                and o.organisation_id not in left_out
                and o.status == network_pb2.ORGANISATION_STATUS_ACTIVE
            ]
            token = reply.next_page_token
            if not token:
                break
    except Refused as refusal:
        if refusal.kind == "signed_out":
            raise
        return None
    return sorted(found, key=lambda o: o.name.casefold())


# --- pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    region: str
    risk: str
    risk_class: str
    status: str
    journey: str
    opened_at: datetime | None


def case_row(summary: intake_pb2.CaseSummary) -> CaseRow:
    return CaseRow(
        case_id=summary.case_id,
        region=REGIONS.get(summary.region, OTHER),
        risk=label(RISKS, summary.risk),
        risk_class=RISK_CLASSES.get(summary.risk, ""),
        status=label(CASE_STATUSES, summary.status),
        journey=label(JOURNEY_STATES, summary.journey),
        opened_at=(
            summary.created_at.ToDatetime(tzinfo=UTC) if summary.HasField("created_at") else None
        ),
    )


async def case_list(request: Request) -> Response:
    console = console_of(request)
    session = session_of(request)
    page_token = request.query_params.get("page", "")
    if len(page_token) > 500 or not page_token.isprintable():
        page_token = ""
    reply = await console.backend.call(
        session,
        "intake",
        console.backend.stubs.intake.ListCases,
        intake_pb2.ListCasesRequest(page_size=PAGE_SIZE, page_token=page_token),
    )
    return render(
        request,
        "intake_cases.html",
        rows=[case_row(s) for s in reply.cases],
        next_page=reply.next_page_token,
        first_page=not page_token,
        care_unit=session.role == CARE_UNIT,
    )


async def new_case(request: Request) -> Response:
    session = session_of(request)
    sent = CaseForm.blank(session, language_of(request))
    return await _case_form(request, sent)


async def register_case(request: Request, form: FormData) -> Response:
    console = console_of(request)
    session = session_of(request)
    care_unit = session.role == CARE_UNIT
    sent = CaseForm.sent(form)
    holders: list[Organisation] | None = None
    if care_unit:
        holders = await organisations_of(
            request, session.region, excluding=[session.organisation_id]
        )
    registration = build_registration(
        sent, care_unit=care_unit, holders=[o.organisation_id for o in holders or []]
    )
    if registration is None:
        return await _case_form(request, sent, holders=holders, status_code=400)
    try:
        reply = await console.backend.call(
            session, "intake", console.backend.stubs.intake.RegisterCase, registration
        )
    except Refused as refusal:
        if refusal.kind != "invalid":
            raise
        sent.refused_by_service(refusal)
        return await _case_form(request, sent, holders=holders, status_code=400)
    session.flash(N_("Case registered."))
    if sent.floored:
        session.flash(ON_THE_HOUR)
    if reply.journey_start == common_pb2.DELIVERY_STATE_QUEUED:
        session.flash(N_("Its journey starts as soon as the journey service is reachable."))
    if reply.needs_without_consent:
        session.flash(N_("Some of her needs have no consent: no referral is made for them."))
    return back(f"/cases/{reply.case.summary.case_id}")


async def _case_form(
    request: Request,
    sent: CaseForm,
    *,
    holders: list[Organisation] | None = None,
    status_code: int = 200,
) -> Response:
    session = session_of(request)
    care_unit = session.role == CARE_UNIT
    if care_unit and holders is None:
        holders = await organisations_of(
            request, session.region, excluding=[session.organisation_id]
        )
    script = sent.values.get("script_language", "")
    return render(
        request,
        "intake_new.html",
        status_code=status_code,
        form=sent,
        values=sent.values,
        choices=sent.choices,
        errors=sent.errors,
        details=sent.details,
        care_unit=care_unit,
        holders=holders or [],
        holders_known=holders is not None,
        scripts=list(SCRIPTS.values()),
        open_script=script if script in SCRIPTS else default_script(language_of(request)),
        script_labels={code: LANGUAGES[code] for code in SCRIPTS},
        regions=options(REGIONS),
        violence_types=options(VIOLENCE_TYPES),
        contexts=options(CONTEXTS),
        risk_questions=[(f"risk_{n}", q) for n, q in RISK_QUESTIONS.items()],
        answers=options(ANSWERS),
        override_levels=options(OVERRIDE_LEVELS),
        needs=options(NEEDS),
        consents=options(CONSENTS),
        accessibility=options(ACCESSIBILITY),
        legal_matters=options(LEGAL_MATTERS),
        programmes=options(PROGRAMMES),
        languages_spoken=options(LANGUAGES),
        migrant_statuses=options(MIGRANT_STATUSES),
        now_local=local_input(_now()),
    )


# --- the holder's actions on a case ------------------------------------------------------

NOT_RECORDED = N_("Nothing was recorded: a value was refused. Check the form and try again.")
CHOOSE_CHANNEL = N_("The follow-up was not recorded: choose how she was reached.")
FOLLOW_UP_TIME = N_(
    "The follow-up was not recorded: give a valid date and time, not in the future."
)
CHOOSE_SCOPE = N_("No consent was withdrawn: choose the one she withdraws.")
CHOOSE_CLOSURE = N_("Closure was not requested: choose the reason.")
CHOOSE_TARGET = N_("The transfer was not requested: choose an organisation of the network.")
CHOOSE_TRANSFER_REASON = N_("The transfer was not requested: choose the reason.")
TRANSFER_CONSENT = N_("The transfer was not requested: she must consent to it first.")
QUEUED = N_("The journey hears of it as soon as it is reachable: nothing was lost.")


def _case_id(request: Request) -> str | None:
    case_id = str(request.path_params.get("case_id", ""))
    return case_id if CASE_ID.fullmatch(case_id) else None


def _not_found(request: Request) -> Response:
    return render(request, "not_found.html", status_code=404)


def _refused(request: Request, case_id: str, message: str) -> Response:
    session_of(request).flash(message, "error")
    return back(f"/cases/{case_id}")


async def _change(
    request: Request, case_id: str, service: str, method: Any, change: Any, *, done: str
) -> Response:
    """Make `change`; back to the case with `done`, or with what went wrong
    when a value was refused (other refusals get their page)."""
    session = session_of(request)
    try:
        reply = await console_of(request).backend.call(session, service, method, change)
    except Refused as refusal:
        if refusal.kind != "invalid":
            raise
        return _refused(request, case_id, NOT_RECORDED)
    session.flash(done)
    if getattr(reply, "delivery", 0) == common_pb2.DELIVERY_STATE_QUEUED:
        session.flash(QUEUED)
    return back(f"/cases/{case_id}")


async def record_follow_up(request: Request, form: FormData) -> Response:
    case_id = _case_id(request)
    if case_id is None:
        return _not_found(request)
    channel = text(form, "channel")
    if channel not in CHANNEL_PB:
        return _refused(request, case_id, CHOOSE_CHANNEL)
    now = _now()
    contacted = now
    if text(form, "contacted_at"):
        try:
            contacted = local_to_utc(text(form, "contacted_at"))
        except ValueError:
            return _refused(request, case_id, FOLLOW_UP_TIME)
        if contacted > now:
            return _refused(request, case_id, FOLLOW_UP_TIME)
    change = intake_pb2.RecordFollowUpRequest(
        case_id=case_id,
        channel=CHANNEL_PB[channel],
        notes=text(form, "notes"),
        idempotency_key=key_of(form),
    )
    change.contacted_at.FromDatetime(contacted)
    stubs = console_of(request).backend.stubs
    return await _change(
        request,
        case_id,
        "intake",
        stubs.journeys.RecordFollowUp,
        change,
        done=N_("Follow-up recorded."),
    )


async def withdraw_consent(request: Request, form: FormData) -> Response:
    case_id = _case_id(request)
    if case_id is None:
        return _not_found(request)
    scope = text(form, "scope")
    if scope not in SCOPE_PB:
        return _refused(request, case_id, CHOOSE_SCOPE)
    change = journey_pb2.ChangeConsentRequest(
        case_id=case_id,
        scope=SCOPE_PB[scope],
        change=journey_pb2.CONSENT_CHANGE_KIND_WITHDRAW,
        idempotency_key=key_of(form),
    )
    done = (
        N_("Consent withdrawn: she is no longer counted in statistics.")
        if scope == "reporting"
        else N_(
            "Consent withdrawn: that sector's referral is cancelled and it is asked "
            "to erase what it received."
        )
    )
    stubs = console_of(request).backend.stubs
    return await _change(
        request, case_id, "intake", stubs.journeys.ChangeConsent, change, done=done
    )


async def request_closure(request: Request, form: FormData) -> Response:
    case_id = _case_id(request)
    if case_id is None:
        return _not_found(request)
    reason = text(form, "reason")
    if reason not in CLOSURE_PB:
        return _refused(request, case_id, CHOOSE_CLOSURE)
    change = intake_pb2.RequestClosureRequest(
        case_id=case_id,
        reason=CLOSURE_PB[reason],
        idempotency_key=key_of(form),
    )
    stubs = console_of(request).backend.stubs
    return await _change(
        request,
        case_id,
        "intake",
        stubs.journeys.RequestClosure,
        change,
        done=N_("Closure requested: a coordinator decides."),
    )


async def request_transfer(request: Request, form: FormData) -> Response:
    case_id = _case_id(request)
    if case_id is None:
        return _not_found(request)
    target = text(form, "to_organisation_id")
    reason = text(form, "reason")
    if not ORGANISATION_ID.fullmatch(target):
        return _refused(request, case_id, CHOOSE_TARGET)
    if reason not in TRANSFER_PB:
        return _refused(request, case_id, CHOOSE_TRANSFER_REASON)
    if text(form, "survivor_consents") != "yes":
        return _refused(request, case_id, TRANSFER_CONSENT)
    console = console_of(request)
    session = session_of(request)
    try:
        found = await console.backend.call(
            session,
            "network",
            console.backend.stubs.network.GetOrganisation,
            network_pb2.GetOrganisationRequest(organisation_id=target),
        )
    except Refused as refusal:
        if refusal.kind not in ("invalid", "not_found"):
            raise
        return _refused(request, case_id, CHOOSE_TARGET)
    organisation = found.organisation
    if (
        organisation.kind in CARE_UNIT_KINDS
        or organisation.status != network_pb2.ORGANISATION_STATUS_ACTIVE
    ):
        return _refused(request, case_id, CHOOSE_TARGET)
    change = intake_pb2.RequestTransferRequest(
        case_id=case_id,
        to_organisation_id=target,
        reason=TRANSFER_PB[reason],
        survivor_consents=True,
        idempotency_key=key_of(form),
    )
    return await _change(
        request,
        case_id,
        "intake",
        console.backend.stubs.intake.RequestTransfer,
        change,
        done=N_("Transfer requested: the other organisation accepts or declines it."),
    )


# --- the panel the case page includes ----------------------------------------------------


@dataclass(frozen=True)
class IntakePanel:
    """What `_intake_actions.html` shows: the forms of the case holder's
    actions, with what they offer now."""

    may_change: bool
    # (scope slug, message id) of the consents in force, to withdraw one.
    granted: list[tuple[str, str]] = field(default_factory=list)
    closure_requested: bool = False
    transfer_pending: bool = False
    # Organisations of the case's region that may take it over (not its
    # holder, not a care unit); None if the network service cannot tell now.
    transfer_targets: list[Organisation] | None = None
    channels: list[tuple[str, str]] = field(default_factory=list)
    closure_reasons: list[tuple[str, str]] = field(default_factory=list)
    transfer_reasons: list[tuple[str, str]] = field(default_factory=list)
    # One idempotency key per form: "follow_up", "withdraw", "closure", "transfer".
    keys: dict[str, str] = field(default_factory=dict)
    now_local: str = ""


async def intake_panel(request: Request, case_id: str) -> dict[str, Any]:
    """The context `_intake_actions.html` needs, under the one name `intake`:
    `ctx.update(await intake_panel(request, case_id))`. A care unit's officer
    (who follows, never changes, a case) gets `intake.may_change` false and
    the partial shows nothing. Refusals (not allowed, not found) propagate
    like the case page's own calls."""
    session = session_of(request)
    if session.role not in HOLDERS or not CASE_ID.fullmatch(case_id):
        return {"intake": IntakePanel(may_change=False)}
    console = console_of(request)
    stubs = console.backend.stubs
    reply = await console.backend.call(
        session,
        "intake",
        stubs.intake.GetCaseFollowUp,
        intake_pb2.GetCaseFollowUpRequest(case_id=case_id),
    )
    follow_up = reply.follow_up
    summary = follow_up.summary
    granted = [
        (SCOPE_SLUG[c.scope], SCOPES[SCOPE_SLUG[c.scope]])
        for c in follow_up.consents
        if c.state == intake_pb2.CONSENT_STATE_GRANTED and c.scope in SCOPE_SLUG
    ]
    pending = await console.backend.call(
        session,
        "intake",
        stubs.intake.ListTransfers,
        intake_pb2.ListTransfersRequest(
            case_id=case_id, status=intake_pb2.TRANSFER_STATUS_PENDING, page_size=1
        ),
    )
    targets = await organisations_of(
        request, summary.region, excluding=[summary.holding_organisation_id]
    )
    return {
        "intake": IntakePanel(
            may_change=True,
            granted=sorted(granted, key=lambda g: list(SCOPE_PB).index(g[0])),
            closure_requested=summary.status == intake_pb2.CASE_STATUS_CLOSURE_REQUESTED,
            transfer_pending=bool(pending.transfers),
            transfer_targets=targets,
            channels=options(FOLLOW_UP_CHANNELS),
            closure_reasons=options(CLOSURE_REASONS),
            transfer_reasons=options(TRANSFER_REASONS),
            keys={name: new_key() for name in ("follow_up", "withdraw", "closure", "transfer")},
            now_local=local_input(_now()),
        )
    }


routes: list[Route] = [
    page("/cases", case_list, roles=CASE_HOLDERS),
    page("/cases/new", new_case, roles=CASE_HOLDERS),
    action("/cases/new", register_case, roles=CASE_HOLDERS),
    action("/cases/{case_id}/follow-up", record_follow_up, roles=HOLDERS),
    action("/cases/{case_id}/consent/withdraw", withdraw_consent, roles=HOLDERS),
    action("/cases/{case_id}/closure", request_closure, roles=HOLDERS),
    action("/cases/{case_id}/transfer", request_transfer, roles=HOLDERS),
]
