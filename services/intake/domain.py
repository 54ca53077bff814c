"""Intake's domain: the case an intake officer registers, risk triage, consents,
and the facts the journey is given (never personal data).

No protobuf and no SQL here. Rules raise `InvalidArgument` naming the field
(paths follow the API's field names) and never echo the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from masar.contract import (
    ACCESSIBILITY_FEATURES,
    LEVEL_COORDINATOR,
    LEVEL_REGIONAL,
    LEVEL_REMINDER,
    NEED_SECTORS,
    PROGRAMME_KINDS,
    ClinicalItem,
    EmploymentNeeds,
    HealthNeeds,
    JourneyInput,
    LegalNeeds,
    Need,
    PsychosocialNeeds,
    Risk,
    Sector,
    ShelterNeeds,
    ViolenceType,
    care_called_for,
)
from masar.platform.errors import InvalidArgument
from masar.platform.outbox import DeliveryOutcome
from masar.platform.validation import require_case_id, require_idempotency_key, require_region

# --- vocabularies ---------------------------------------------------------------


class MigrantStatus(StrEnum):
    NOT_A_MIGRANT = "not_a_migrant"
    IN_TRANSIT = "in_transit"
    SETTLED = "settled"
    REFUGEE_OR_ASYLUM_SEEKER = "refugee_or_asylum_seeker"
    RETURNED_NATIONAL = "returned_national"


class IncidentContext(StrEnum):
    INTIMATE_PARTNER = "intimate_partner"
    TRAFFICKING = "trafficking"
    CHILD_SEXUAL_ABUSE = "child_sexual_abuse"
    FAMILY_MEMBER = "family_member"
    WORKPLACE = "workplace"
    TECHNOLOGY_FACILITATED = "technology_facilitated"


class LegalMatter(StrEnum):
    """The matters legal aid takes (the contract's LegalNeeds.matters)."""

    PROTECTION_ORDER = "protection_order"
    CRIMINAL_COMPLAINT = "criminal_complaint"
    FAMILY_LAW = "family_law"
    RESIDENCY = "residency"
    TRAFFICKING = "trafficking"


class ConsentScope(StrEnum):
    SHELTER = "shelter"
    LEGAL = "legal"
    EMPLOYMENT = "employment"
    DEIDENTIFIED_REPORTING = "deidentified_reporting"
    HEALTH = "health"  # health care at a hospital care unit
    PSYCHOSOCIAL = "psychosocial"  # counselling and social support

    @property
    def sector(self) -> Sector | None:
        """The sector this consent lets the journey refer to, if any."""
        return _SCOPE_SECTORS.get(self)

    @classmethod
    def of(cls, sector: Sector) -> ConsentScope:
        return cls(sector.value)


_SCOPE_SECTORS = {
    ConsentScope.SHELTER: Sector.SHELTER,
    ConsentScope.LEGAL: Sector.LEGAL,
    ConsentScope.EMPLOYMENT: Sector.EMPLOYMENT,
    ConsentScope.HEALTH: Sector.HEALTH,
    ConsentScope.PSYCHOSOCIAL: Sector.PSYCHOSOCIAL,
}


class ConsentState(StrEnum):
    NOT_GIVEN = "not_given"
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    DECLINED = "declined"  # she declined the service itself


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSURE_REQUESTED = "closure_requested"


class JourneyState(StrEnum):
    START_PENDING = "start_pending"
    STARTED = "started"


class ClosureReason(StrEnum):
    """The contract's ClosureRequest.reason values."""

    SURVIVOR_REQUEST = "survivor_request"
    NEEDS_MET = "needs_met"
    NO_CONTACT = "no_contact"
    MOVED = "moved"
    TRANSFERRED = "transferred"


class FollowUpChannel(StrEnum):
    PHONE = "phone"
    IN_PERSON = "in_person"
    HOME_VISIT = "home_visit"
    MESSAGE = "message"


class ChangeKind(StrEnum):
    CONSENT_GRANTED = "consent_granted"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    SERVICE_DECLINED = "service_declined"
    RISK_REASSESSED = "risk_reassessed"
    FOLLOW_UP = "follow_up"
    MEDICAL_CARE = "medical_care"
    CLOSURE_REQUESTED = "closure_requested"
    REOPENED = "reopened"
    TRANSFER_REQUESTED = "transfer_requested"
    TRANSFER_DECIDED = "transfer_decided"
    TRANSFER_REDIRECTED = "transfer_redirected"


# --- risk triage ----------------------------------------------------------------


class Answer(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"  # she does not know or prefers not to say: not scored


class Indicator(StrEnum):
    THREATS_TO_KILL = "threats_to_kill"
    STRANGULATION = "strangulation"
    WEAPON = "weapon"
    ESCALATION = "escalation"
    SEPARATION = "separation"
    STALKING = "stalking"
    PREGNANCY = "pregnancy"
    CHILDREN_THREATENED = "children_threatened"
    PERPETRATOR_ACCESS = "perpetrator_access"


# Weights and thresholds are ours (DASH / Danger Assessment style), not a
# published scale: each "yes" adds its weight; the sum gives the level.
RISK_WEIGHTS: Mapping[Indicator, int] = {
    Indicator.THREATS_TO_KILL: 3,
    Indicator.STRANGULATION: 3,
    Indicator.WEAPON: 3,
    Indicator.ESCALATION: 2,
    Indicator.SEPARATION: 2,
    Indicator.STALKING: 2,
    Indicator.PREGNANCY: 1,
    Indicator.CHILDREN_THREATENED: 2,
    Indicator.PERPETRATOR_ACCESS: 1,
}
# Lowest score for each level above LOW.
RISK_THRESHOLDS: Sequence[tuple[int, Risk]] = (
    (12, Risk.CRITICAL),
    (6, Risk.HIGH),
    (3, Risk.MEDIUM),
)
OVERRIDE_REASON_MAX = 2000


def critical_indicators(answers: Mapping[Indicator, Answer]) -> list[Indicator]:
    """Indicators that make a case critical whatever the score: strangulation,
    and a threat to kill by a perpetrator who can reach her."""
    found: list[Indicator] = []
    if answers.get(Indicator.STRANGULATION) is Answer.YES:
        found.append(Indicator.STRANGULATION)
    if (
        answers.get(Indicator.THREATS_TO_KILL) is Answer.YES
        and answers.get(Indicator.PERPETRATOR_ACCESS) is Answer.YES
    ):
        found += [Indicator.THREATS_TO_KILL, Indicator.PERPETRATOR_ACCESS]
    return found


def risk_score(answers: Mapping[Indicator, Answer]) -> int:
    return sum(RISK_WEIGHTS[i] for i, a in answers.items() if a is Answer.YES)


def level_for(answers: Mapping[Indicator, Answer]) -> Risk:
    if critical_indicators(answers):
        return Risk.CRITICAL
    score = risk_score(answers)
    for threshold, level in RISK_THRESHOLDS:
        if score >= threshold:
            return level
    return Risk.LOW


@dataclass(frozen=True)
class RiskOverride:
    level: Risk
    reason: str


@dataclass(frozen=True)
class RiskAssessment:
    answers: Mapping[Indicator, Answer]
    score: int
    computed: Risk
    critical: list[Indicator]
    override: RiskOverride | None
    assessed_at: datetime

    @property
    def level(self) -> Risk:
        return self.override.level if self.override is not None else self.computed


def assess_risk(
    answers: Mapping[Indicator, Answer],
    override: RiskOverride | None,
    *,
    at: datetime,
    field_path: str = "risk",
) -> RiskAssessment:
    """Score the checklist; a professional override may only raise the level."""
    for indicator in Indicator:
        if indicator not in answers:
            raise InvalidArgument(f"{field_path}.checklist.{indicator.value}", "must be answered")
    computed = level_for(answers)
    if override is not None:
        if override.level.rank <= computed.rank:
            raise InvalidArgument(
                f"{field_path}.override.level",
                "an override may only raise the computed level",
            )
        reason = override.reason.strip()
        if not reason:
            raise InvalidArgument(f"{field_path}.override.reason", "is required with an override")
        if len(reason) > OVERRIDE_REASON_MAX:
            raise InvalidArgument(
                f"{field_path}.override.reason", f"must be at most {OVERRIDE_REASON_MAX} characters"
            )
        override = RiskOverride(level=override.level, reason=reason)
    return RiskAssessment(
        answers=dict(answers),
        score=risk_score(answers),
        computed=computed,
        critical=critical_indicators(answers),
        override=override,
        assessed_at=at,
    )


# --- registration -----------------------------------------------------------------

ALIAS_MAX = 100
NARRATIVE_MAX = 20_000
NOTES_MAX = 5_000
CONTACT_FIELD_MAX = 500
MAX_CHILDREN = 20
MAX_LANGUAGES = 10
# Lowercase ISO 639 codes: "ar", "ary" (Darija), "zgh" (Standard Moroccan
# Tamazight), "tzm", "shi", "rif", "fr", "en", ...
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_NATIONALITY = re.compile(r"^[A-Z]{2}$")
_PHONE = re.compile(r"^\+?[0-9 ]{6,20}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The ids intake issues (contract.new_case_id): 16 lowercase hex digits.
_ISSUED_CASE_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class ContactDetails:
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    safe_contact_instructions: str | None = None


@dataclass(frozen=True)
class SurvivorProfile:
    region: str
    alias: str | None = None
    birth_year: int | None = None
    nationality: str | None = None
    migrant_status: MigrantStatus | None = None
    languages: list[str] = field(default_factory=list)
    contact: ContactDetails = field(default_factory=ContactDetails)
    accompanying_children: int = 0
    # Whether she needs an interpreter (None: not asked). Recorded at intake
    # only: the sectors' needs carry her languages, not this.
    interpreter_needed: bool | None = None


@dataclass(frozen=True)
class Incident:
    occurred_at: datetime
    violence_type: ViolenceType
    contexts: list[IncidentContext] = field(default_factory=list)
    narrative: str | None = None


@dataclass(frozen=True)
class Registration:
    """What the intake officer submits; validated by `validate_registration`."""

    idempotency_key: str
    survivor: SurvivorProfile
    incident: Incident
    risk_answers: Mapping[Indicator, Answer]
    risk_override: RiskOverride | None
    needs: list[Need]
    accessibility_needs: list[str] = field(default_factory=list)
    legal_matters: list[LegalMatter] = field(default_factory=list)
    employment_interests: list[str] = field(default_factory=list)
    consents: list[ConsentScope] = field(default_factory=list)


def require_intake_case_id(case_id: str, field_path: str = "case_id") -> str:
    """The platform's case-id rule, narrowed to the ids intake issues: intake
    made every case id there is, so anything else cannot name one of its
    cases and is refused as bad input (INVALID_ARGUMENT) rather than looked
    up (NOT_FOUND). The sectors take case ids as opaque and keep the wider rule."""
    require_case_id(case_id, field_path)
    if not _ISSUED_CASE_ID.match(case_id):
        raise InvalidArgument(field_path, "is not a case id")
    return case_id


def validate_past_time(at: datetime, field_path: str, *, now: datetime) -> datetime:
    if at.tzinfo is None:
        raise InvalidArgument(field_path, "must carry a time zone")
    if at > now:
        raise InvalidArgument(field_path, "must not be in the future")
    return at.astimezone(UTC)


def validate_incident_time(at: datetime, field_path: str, *, now: datetime) -> datetime:
    """Incidents are recorded to the hour (clinical windows count from it):
    any past time is accepted and kept to the hour it fell in (floored, in
    UTC — Morocco's offsets are whole hours, so its local hour too). Whether
    it is in the future is judged on the time as given."""
    at = validate_past_time(at, field_path, now=now)
    return at.replace(minute=0, second=0, microsecond=0)


def _no_repeats(values: Sequence[object], field_path: str) -> None:
    seen: set[object] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise InvalidArgument(f"{field_path}[{index}]", "is repeated")
        seen.add(value)


def _codes(values: Sequence[str], field_path: str, known: Sequence[str]) -> list[str]:
    """Codes from a shared vocabulary (the contract's), so sectors can match them."""
    for index, value in enumerate(values):
        if value not in known:
            raise InvalidArgument(f"{field_path}[{index}]", "is not a known code")
    _no_repeats(values, field_path)
    return list(values)


def _optional_text(value: str | None, field_path: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise InvalidArgument(field_path, f"must be at most {limit} characters")
    return value


def validate_languages(languages: Sequence[str], field_path: str) -> list[str]:
    if len(languages) > MAX_LANGUAGES:
        raise InvalidArgument(field_path, f"must have at most {MAX_LANGUAGES} entries")
    for index, language in enumerate(languages):
        if not _LANGUAGE.match(language):
            raise InvalidArgument(
                f"{field_path}[{index}]", "must be a lowercase ISO 639 code, e.g. ary"
            )
    _no_repeats(languages, field_path)
    return list(languages)


def validate_needs(needs: Sequence[Need], field_path: str) -> list[Need]:
    _no_repeats(needs, field_path)
    return list(needs)


def validate_contact(contact: ContactDetails, field_path: str) -> ContactDetails:
    phone = _optional_text(contact.phone, f"{field_path}.phone", 20)
    if phone is not None and not _PHONE.match(phone):
        raise InvalidArgument(
            f"{field_path}.phone", "must be 6 to 20 digits or spaces, optionally after +"
        )
    email = _optional_text(contact.email, f"{field_path}.email", 254)
    if email is not None and not _EMAIL.match(email):
        raise InvalidArgument(f"{field_path}.email", "is not an email address")
    return ContactDetails(
        phone=phone,
        email=email,
        address=_optional_text(contact.address, f"{field_path}.address", CONTACT_FIELD_MAX),
        safe_contact_instructions=_optional_text(
            contact.safe_contact_instructions,
            f"{field_path}.safe_contact_instructions",
            CONTACT_FIELD_MAX,
        ),
    )


def _require_trafficking_profile(
    nationality: str | None, migrant_status: MigrantStatus | None, languages: Sequence[str]
) -> None:
    """Law 27-14: a trafficking case needs who she is to reach her rights
    (nationality, migrant status) and the language she speaks."""
    if nationality is None:
        raise InvalidArgument("survivor.nationality", "is required when the context is trafficking")
    if migrant_status is None:
        raise InvalidArgument(
            "survivor.migrant_status", "is required when the context is trafficking"
        )
    if not languages:
        raise InvalidArgument("survivor.languages", "is required when the context is trafficking")


def validate_registration(reg: Registration, *, now: datetime) -> Registration:
    """Every rule of a registration; returns the normalised registration."""
    require_idempotency_key(reg.idempotency_key)
    s = reg.survivor
    region = require_region(s.region, "survivor.region")
    alias = _optional_text(s.alias, "survivor.alias", ALIAS_MAX)
    if s.birth_year is not None and not 1900 <= s.birth_year <= now.year:
        raise InvalidArgument("survivor.birth_year", "must be between 1900 and this year")
    if s.nationality is not None and not _NATIONALITY.match(s.nationality):
        raise InvalidArgument("survivor.nationality", "must be an ISO 3166-1 alpha-2 code")
    languages = validate_languages(s.languages, "survivor.languages")
    contact = validate_contact(s.contact, "survivor.contact")
    if not 0 <= s.accompanying_children <= MAX_CHILDREN:
        raise InvalidArgument(
            "survivor.accompanying_children", f"must be between 0 and {MAX_CHILDREN}"
        )

    incident = reg.incident
    occurred_at = validate_incident_time(incident.occurred_at, "incident.occurred_at", now=now)
    if s.birth_year is not None and occurred_at.year < s.birth_year:
        raise InvalidArgument("incident.occurred_at", "is before the survivor's birth year")
    _no_repeats(incident.contexts, "incident.contexts")
    trafficking = IncidentContext.TRAFFICKING in incident.contexts
    if trafficking:
        _require_trafficking_profile(s.nationality, s.migrant_status, languages)
    narrative = _optional_text(incident.narrative, "incident.narrative", NARRATIVE_MAX)

    needs = validate_needs(reg.needs, "needs")
    accessibility = _codes(
        reg.accessibility_needs, "household.accessibility_needs", ACCESSIBILITY_FEATURES
    )
    _no_repeats(reg.legal_matters, "legal_matters")
    legal_matters = list(reg.legal_matters)
    if trafficking and LegalMatter.TRAFFICKING not in legal_matters:
        legal_matters.append(LegalMatter.TRAFFICKING)
    if Need.LEGAL in needs and not legal_matters:
        raise InvalidArgument("legal_matters", "at least one is required when legal aid is needed")
    interests = _codes(reg.employment_interests, "employment_interests", PROGRAMME_KINDS)
    _no_repeats(reg.consents, "consents")

    return Registration(
        idempotency_key=reg.idempotency_key,
        survivor=SurvivorProfile(
            region=region,
            alias=alias,
            birth_year=s.birth_year,
            nationality=s.nationality,
            migrant_status=s.migrant_status,
            languages=languages,
            contact=contact,
            accompanying_children=s.accompanying_children,
            interpreter_needed=s.interpreter_needed,
        ),
        incident=Incident(
            occurred_at=occurred_at,
            violence_type=incident.violence_type,
            contexts=list(incident.contexts),
            narrative=narrative,
        ),
        risk_answers=dict(reg.risk_answers),
        risk_override=reg.risk_override,
        needs=needs,
        accessibility_needs=accessibility,
        legal_matters=legal_matters,
        employment_interests=interests,
        consents=list(reg.consents),
    )


def validate_notes(notes: str | None, field_path: str) -> str | None:
    return _optional_text(notes, field_path, NOTES_MAX)


# --- the case as intake keeps it -----------------------------------------------------


@dataclass(frozen=True)
class CaseFacts:
    """What the journey may know of a case: no personal data."""

    case_id: str
    region: str
    risk: Risk
    needs: list[Need]
    declined: list[Sector]
    consents: Mapping[ConsentScope, ConsentState]
    incident_at: datetime | None
    violence_type: ViolenceType | None
    accompanying_children: int
    accessibility_needs: list[str]
    legal_matters: list[str]
    employment_interests: list[str]
    languages: list[str]
    # The organisation holding the case (None for a case registered before the
    # network existed): the journey tells it of decisions, transfers and last rungs.
    holding_organisation_id: str | None = None

    def consented_sectors(self) -> list[Sector]:
        return [
            scope.sector
            for scope in ConsentScope
            if scope.sector is not None and self.consents.get(scope) is ConsentState.GRANTED
        ]

    def needs_without_consent(self) -> list[Sector]:
        # The medical need is left out: without consent to health care its
        # clinical windows are still followed (and escalated) by the journey.
        consented = set(self.consented_sectors())
        return [
            NEED_SECTORS[need]
            for need in self.needs
            if need is not Need.MEDICAL
            and NEED_SECTORS[need] not in consented
            and NEED_SECTORS[need] not in self.declined
        ]


def journey_input(facts: CaseFacts, *, opened_at: datetime) -> JourneyInput:
    """The journey's start argument. Each sector's needs travel only if she
    needs that sector; the journey passes them on only to a consented one."""
    needs = set(facts.needs)
    return JourneyInput(
        case_id=facts.case_id,
        region=facts.region,
        risk=facts.risk,
        needs=list(facts.needs),
        consents=facts.consented_sectors(),
        opened_at=opened_at,
        incident_at=facts.incident_at,
        violence_type=facts.violence_type,
        holding_organisation_id=facts.holding_organisation_id or "",
        shelter=(
            ShelterNeeds(
                household_size=1 + facts.accompanying_children,
                children=facts.accompanying_children,
                accessibility_needs=list(facts.accessibility_needs),
            )
            if Need.SHELTER in needs
            else None
        ),
        legal=(
            LegalNeeds(matters=list(facts.legal_matters), languages=list(facts.languages))
            if Need.LEGAL in needs
            else None
        ),
        employment=(
            EmploymentNeeds(
                interests=list(facts.employment_interests), languages=list(facts.languages)
            )
            if Need.EMPLOYMENT in needs
            else None
        ),
        health=(
            HealthNeeds(
                care=care_called_for(facts.violence_type, facts.incident_at, opened_at),
                incident_at=facts.incident_at,
                languages=list(facts.languages),
            )
            if Need.MEDICAL in needs
            else None
        ),
        psychosocial=(
            PsychosocialNeeds(languages=list(facts.languages))
            if Need.PSYCHOSOCIAL in needs
            else None
        ),
    )


def initial_consents(granted: Iterable[ConsentScope]) -> dict[ConsentScope, ConsentState]:
    chosen = set(granted)
    return {
        scope: ConsentState.GRANTED if scope in chosen else ConsentState.NOT_GIVEN
        for scope in ConsentScope
    }


# --- views -------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSummary:
    """A case without personal data (lists, and every change's answer)."""

    case_id: str
    region: str
    risk: Risk
    status: CaseStatus
    journey: JourneyState
    created_at: datetime
    updated_at: datetime
    reopen_count: int
    # Who registered the case and who holds it now (None: not recorded).
    source_organisation_id: str | None = None
    holding_organisation_id: str | None = None


@dataclass(frozen=True)
class ConsentView:
    scope: ConsentScope
    state: ConsentState
    updated_at: datetime


@dataclass(frozen=True)
class ChangeView:
    change_id: str
    kind: ChangeKind
    recorded_at: datetime
    # None when the change stays with intake (reporting consent).
    delivery: DeliveryOutcome | None
    rejected: bool
    scope: ConsentScope | None = None
    at: datetime | None = None
    clinical_item: ClinicalItem | None = None
    closure_reason: ClosureReason | None = None
    channel: FollowUpChannel | None = None
    risk: Risk | None = None
    notes: str | None = None
    new_journey_run: bool = False
    transfer_id: str | None = None


@dataclass(frozen=True)
class CaseView:
    """The intake officer's view, personal data included."""

    summary: CaseSummary
    survivor: SurvivorProfile
    incident: Incident
    assessment: RiskAssessment
    needs: list[Need]
    declined: list[Sector]
    accessibility_needs: list[str]
    legal_matters: list[LegalMatter]
    employment_interests: list[str]
    consents: list[ConsentView]
    changes: list[ChangeView]


@dataclass(frozen=True)
class Escalation:
    """A reminder or escalation raised by a journey (no personal data)."""

    escalation_id: str
    case_id: str
    region: str
    level: int
    wait: str
    due_at: datetime
    referral_id: str | None
    recorded_at: datetime
    transfer_id: str | None = None
    # The organisation a reminder is addressed to (a transfer's receiver).
    organisation_id: str | None = None


ESCALATION_LEVELS = (LEVEL_REMINDER, LEVEL_COORDINATOR, LEVEL_REGIONAL)
_WAIT = re.compile(r"^[a-z][a-z0-9_:]{0,63}$")
_REFERRAL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def validate_escalation(
    *, case_id: str, region: str, level: int, wait: str, referral_id: str | None
) -> None:
    require_intake_case_id(case_id)
    require_region(region, "region")
    if level not in ESCALATION_LEVELS:
        raise InvalidArgument("level", "must be 1 (reminder), 2 (coordinator) or 3 (regional)")
    if not _WAIT.match(wait):
        raise InvalidArgument("wait", "must be a wait code, e.g. shelter_accept or clinical:pep")
    if referral_id is not None and not _REFERRAL_ID.match(referral_id):
        raise InvalidArgument("referral_id", "is not a referral id")


# --- organisations ----------------------------------------------------------------

# The token's `org` claim: an id, never free text.
_ORGANISATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")


def require_organisation_id(value: str, field_path: str) -> str:
    if not value:
        raise InvalidArgument(field_path, "is required")
    if not _ORGANISATION_ID.match(value):
        raise InvalidArgument(field_path, "is not an organisation id")
    return value
