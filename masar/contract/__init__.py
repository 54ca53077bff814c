"""The journey contract: what workflows and sector services share.

Services never import workflows and workflows never import services; both
import this module. It holds the names of task queues, activities, updates and
queries, and the dataclasses they carry (one in, one out, so fields can be
added later without breaking histories). Standard library only: it is imported
inside the workflow sandbox.

No dataclass here carries a name, a narrative, an address or a contact: ids
are opaque, and each sector receives only what it needs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

# Actor assertions (masar.contract.assertion), re-exported.
from masar.contract.assertion import ERR_FORBIDDEN as ERR_FORBIDDEN
from masar.contract.assertion import ERR_UNAUTHENTICATED as ERR_UNAUTHENTICATED
from masar.contract.assertion import ActorAssertion as ActorAssertion
from masar.contract.assertion import IssuerKey as IssuerKey

# Notifications (masar.contract.notify), re-exported.
from masar.contract.notify import NETWORK_ACKNOWLEDGEMENTS as NETWORK_ACKNOWLEDGEMENTS
from masar.contract.notify import NETWORK_NOTIFY as NETWORK_NOTIFY
from masar.contract.notify import NETWORK_TASK_QUEUE as NETWORK_TASK_QUEUE
from masar.contract.notify import Acknowledgement as Acknowledgement
from masar.contract.notify import AcknowledgementsQuery as AcknowledgementsQuery
from masar.contract.notify import AcknowledgementsResult as AcknowledgementsResult
from masar.contract.notify import NotifyEvent as NotifyEvent
from masar.contract.notify import NotifyKind as NotifyKind
from masar.contract.notify import NotifyResult as NotifyResult

# Case transfers between organisations (masar.contract.transfer), re-exported.
from masar.contract.transfer import ERR_STALE_TRANSFER as ERR_STALE_TRANSFER
from masar.contract.transfer import ERR_TRANSFER_OPEN as ERR_TRANSFER_OPEN
from masar.contract.transfer import ERR_UNKNOWN_TRANSFER as ERR_UNKNOWN_TRANSFER
from masar.contract.transfer import INTAKE_RECORD_TRANSFER_RUNG as INTAKE_RECORD_TRANSFER_RUNG
from masar.contract.transfer import (
    TRANSFER_ACCEPT_DEFAULT_SECONDS as TRANSFER_ACCEPT_DEFAULT_SECONDS,
)
from masar.contract.transfer import TRANSFER_ACCEPT_WAIT as TRANSFER_ACCEPT_WAIT
from masar.contract.transfer import UPDATE_TRANSFER_DECISION as UPDATE_TRANSFER_DECISION
from masar.contract.transfer import UPDATE_TRANSFER_REDIRECT as UPDATE_TRANSFER_REDIRECT
from masar.contract.transfer import UPDATE_TRANSFER_REQUEST as UPDATE_TRANSFER_REQUEST
from masar.contract.transfer import TransferDecision as TransferDecision
from masar.contract.transfer import TransferDeclineReason as TransferDeclineReason
from masar.contract.transfer import TransferReason as TransferReason
from masar.contract.transfer import TransferRedirect as TransferRedirect
from masar.contract.transfer import TransferRequest as TransferRequest
from masar.contract.transfer import TransferRungNotice as TransferRungNotice
from masar.contract.transfer import TransferStatus as TransferStatus
from masar.contract.transfer import TransferView as TransferView
from masar.contract.transfer import new_transfer_id as new_transfer_id

# --- names ------------------------------------------------------------------

ServiceName = Literal[
    "intake", "shelter", "legal", "employment", "network", "health", "psychosocial"
]

JOURNEY_WORKFLOW = "SurvivorJourney"
JOURNEY_TASK_QUEUE = "masar-journey"
SECTOR_TASK_QUEUES: dict[ServiceName, str] = {
    "intake": "masar-intake",
    "shelter": "masar-shelter",
    "legal": "masar-legal",
    "employment": "masar-employment",
    "network": "masar-network",
    "health": "masar-health",
    "psychosocial": "masar-psychosocial",
}

REGIONS: tuple[str, ...] = (
    "tanger-tetouan-al-hoceima",
    "oriental",
    "fes-meknes",
    "rabat-sale-kenitra",
    "beni-mellal-khenifra",
    "casablanca-settat",
    "marrakech-safi",
    "draa-tafilalet",
    "souss-massa",
    "guelmim-oued-noun",
    "laayoune-sakia-el-hamra",
    "dakhla-oued-ed-dahab",
)


class Sector(StrEnum):
    """Sectors that receive referrals from the journey. A sector's value is
    also its service's name (SECTOR_TASK_QUEUES) and its consent scope."""

    SHELTER = "shelter"
    LEGAL = "legal"
    EMPLOYMENT = "employment"
    # Hospital care units (services/health); masar.v1.Sector SECTOR_MEDICAL.
    HEALTH = "health"
    # Counselling and social support by associations (services/psychosocial).
    PSYCHOSOCIAL = "psychosocial"


class Need(StrEnum):
    """What intake can record as a need. Each need is met by one sector
    (`SECTOR_NEEDS`): the medical need by the health sector (hospital care
    units), which also holds the clinical windows it opens."""

    SHELTER = "shelter"
    LEGAL = "legal"
    EMPLOYMENT = "employment"
    MEDICAL = "medical"
    PSYCHOSOCIAL = "psychosocial"

    @classmethod
    def _missing_(cls, value: object) -> Need | None:
        # `Need(sector.value)` names each sector's need; the health sector's is
        # "medical" (code written before the health sector exists relies on it).
        return cls.MEDICAL if value == "health" else None


# The need each sector meets (the journey refers to a sector only for its need).
SECTOR_NEEDS: dict[Sector, Need] = {
    Sector.SHELTER: Need.SHELTER,
    Sector.LEGAL: Need.LEGAL,
    Sector.EMPLOYMENT: Need.EMPLOYMENT,
    Sector.HEALTH: Need.MEDICAL,
    Sector.PSYCHOSOCIAL: Need.PSYCHOSOCIAL,
}
# The sector that meets each need.
NEED_SECTORS: dict[Need, Sector] = {need: sector for sector, need in SECTOR_NEEDS.items()}


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}


class ViolenceType(StrEnum):
    """GBVIMS: exactly one type per incident."""

    RAPE = "rape"
    SEXUAL_ASSAULT = "sexual_assault"
    PHYSICAL_ASSAULT = "physical_assault"
    FORCED_MARRIAGE = "forced_marriage"
    DENIAL_OF_RESOURCES = "denial_of_resources"
    PSYCHOLOGICAL_ABUSE = "psychological_abuse"


class ReferralStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    IN_SERVICE = "IN_SERVICE"
    COMPLETED = "COMPLETED"
    REROUTED = "REROUTED"
    EXPIRED = "EXPIRED"
    WITHDRAWN = "WITHDRAWN"


class DeclineReason(StrEnum):
    """Why a provider declines a referral (masar.v1.DeclineReason without its
    prefix); no free text travels with a decline."""

    NO_CAPACITY = "NO_CAPACITY"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    OUT_OF_AREA = "OUT_OF_AREA"
    LANGUAGE = "LANGUAGE"
    CONFLICT_OF_INTEREST = "CONFLICT_OF_INTEREST"
    SAFETY_CONCERN = "SAFETY_CONCERN"
    ACCESSIBILITY = "ACCESSIBILITY"
    OTHER = "OTHER"


class Stage(StrEnum):
    TRIAGE = "TRIAGE"
    SAFETY = "SAFETY"
    JUSTICE = "JUSTICE"
    RECOVERY = "RECOVERY"
    FOLLOW_UP = "FOLLOW_UP"
    CLOSURE_PENDING = "CLOSURE_PENDING"
    CLOSED = "CLOSED"


class ClinicalItem(StrEnum):
    PEP = "pep"  # HIV post-exposure prophylaxis, 72 h from the incident
    EMERGENCY_CONTRACEPTION = "emergency_contraception"  # 120 h from the incident
    FORENSIC_EXAM = "forensic_exam"


# Search attributes (registered by the local stack and by tests).
SA_STAGE = "MasarStage"  # Keyword
SA_RISK = "MasarRisk"  # Keyword
SA_REGION = "MasarRegion"  # Keyword
SA_ESCALATION_LEVEL = "MasarEscalationLevel"  # Int
SA_PENDING_SECTORS = "MasarPendingSectors"  # KeywordList
SA_NEXT_DEADLINE = "MasarNextDeadline"  # Datetime
SEARCH_ATTRIBUTES: dict[str, str] = {
    SA_STAGE: "Keyword",
    SA_RISK: "Keyword",
    SA_REGION: "Keyword",
    SA_ESCALATION_LEVEL: "Int",
    SA_PENDING_SECTORS: "KeywordList",
    SA_NEXT_DEADLINE: "Datetime",
}

# Escalation levels, in the journey's status and MasarEscalationLevel.
LEVEL_NONE = 0
LEVEL_REMINDER = 1
LEVEL_COORDINATOR = 2
LEVEL_REGIONAL = 3


# --- ids ----------------------------------------------------------------------

REFERRAL_ID_PREFIX: dict[Sector, str] = {
    Sector.SHELTER: "shr",
    Sector.LEGAL: "leg",
    Sector.EMPLOYMENT: "emp",
    Sector.HEALTH: "hlt",
    Sector.PSYCHOSOCIAL: "psy",
}


def new_case_id() -> str:
    """Opaque and random: nothing about the survivor can be read from it."""
    return secrets.token_hex(8)


def journey_workflow_id(case_id: str) -> str:
    return f"journey-{case_id}"


def new_referral_id(sector: Sector) -> str:
    return f"{REFERRAL_ID_PREFIX[sector]}-{secrets.token_hex(8)}"


def sector_of_referral(referral_id: str) -> Sector | None:
    """Referral ids carry their sector so any client can route a decision."""
    prefix = referral_id.split("-", 1)[0]
    for sector, known in REFERRAL_ID_PREFIX.items():
        if prefix == known:
            return sector
    return None


# --- activities ---------------------------------------------------------------
# Each sector (shelter, legal, employment, health, psychosocial) implements four
# activities on its own task queue, named "<sector>.<verb>"; intake implements
# "intake.record_escalation" (EscalationNotice -> None): the coordinators' inbox
# and the case worker's reminders live with intake.
#
# The registered activity names, written out so that grep lands on them. Each
# sector's activity class decorates its methods with these; the journey calls
# them through SECTOR_ACTIVITIES and INTAKE_RECORD_ESCALATION.
SHELTER_REQUEST_REFERRAL = "shelter.request_referral"
SHELTER_REMIND_PROVIDER = "shelter.remind_provider"
SHELTER_CLOSE_REFERRAL = "shelter.close_referral"
SHELTER_PURGE_CASE = "shelter.purge_case"
LEGAL_REQUEST_REFERRAL = "legal.request_referral"
LEGAL_REMIND_PROVIDER = "legal.remind_provider"
LEGAL_CLOSE_REFERRAL = "legal.close_referral"
LEGAL_PURGE_CASE = "legal.purge_case"
EMPLOYMENT_REQUEST_REFERRAL = "employment.request_referral"
EMPLOYMENT_REMIND_PROVIDER = "employment.remind_provider"
EMPLOYMENT_CLOSE_REFERRAL = "employment.close_referral"
EMPLOYMENT_PURGE_CASE = "employment.purge_case"
HEALTH_REQUEST_REFERRAL = "health.request_referral"
HEALTH_REMIND_PROVIDER = "health.remind_provider"
HEALTH_CLOSE_REFERRAL = "health.close_referral"
HEALTH_PURGE_CASE = "health.purge_case"
PSYCHOSOCIAL_REQUEST_REFERRAL = "psychosocial.request_referral"
PSYCHOSOCIAL_REMIND_PROVIDER = "psychosocial.remind_provider"
PSYCHOSOCIAL_CLOSE_REFERRAL = "psychosocial.close_referral"
PSYCHOSOCIAL_PURGE_CASE = "psychosocial.purge_case"
INTAKE_RECORD_ESCALATION = "intake.record_escalation"
# Legal aid learns that a medical certificate exists (CertificateNotice ->
# None, on legal's task queue): its date and ITT days, never clinical content.
LEGAL_NOTE_CERTIFICATE = "legal.note_certificate"


@dataclass(frozen=True)
class SectorActivityNames:
    """The four activities every referral sector implements on its task queue."""

    request_referral: str  # ReferralRequest -> ReferralCreated
    remind_provider: str  # ProviderReminder -> None
    close_referral: str  # ReferralClosure -> None
    purge_case: str  # CasePurge -> PurgeResult


SECTOR_ACTIVITIES: dict[Sector, SectorActivityNames] = {
    Sector.SHELTER: SectorActivityNames(
        SHELTER_REQUEST_REFERRAL,
        SHELTER_REMIND_PROVIDER,
        SHELTER_CLOSE_REFERRAL,
        SHELTER_PURGE_CASE,
    ),
    Sector.LEGAL: SectorActivityNames(
        LEGAL_REQUEST_REFERRAL, LEGAL_REMIND_PROVIDER, LEGAL_CLOSE_REFERRAL, LEGAL_PURGE_CASE
    ),
    Sector.EMPLOYMENT: SectorActivityNames(
        EMPLOYMENT_REQUEST_REFERRAL,
        EMPLOYMENT_REMIND_PROVIDER,
        EMPLOYMENT_CLOSE_REFERRAL,
        EMPLOYMENT_PURGE_CASE,
    ),
    Sector.HEALTH: SectorActivityNames(
        HEALTH_REQUEST_REFERRAL, HEALTH_REMIND_PROVIDER, HEALTH_CLOSE_REFERRAL, HEALTH_PURGE_CASE
    ),
    Sector.PSYCHOSOCIAL: SectorActivityNames(
        PSYCHOSOCIAL_REQUEST_REFERRAL,
        PSYCHOSOCIAL_REMIND_PROVIDER,
        PSYCHOSOCIAL_CLOSE_REFERRAL,
        PSYCHOSOCIAL_PURGE_CASE,
    ),
}

# ApplicationError types raised by sector activities (non-retryable).
ERR_NO_PROVIDER = "NoEligibleProvider"
ERR_NO_CONSENT = "NoConsent"
ERR_UNKNOWN_CASE = "UnknownCase"
ERR_UNKNOWN_REFERRAL = "UnknownReferral"
ERR_INVALID = "InvalidRequest"
# ApplicationError types with which the journey's update validators reject an
# update (nothing is written): the caller gets a synchronous answer.
ERR_STALE_REFERRAL = "StaleReferral"  # known referral, but not in a state for this
ERR_JOURNEY_CLOSED = "JourneyClosed"
ERR_NOT_CLOSED = "NotClosed"  # reopen on a journey that is not closed
ERR_NO_CLOSURE_PENDING = "NoClosurePending"
ERR_CLOSURE_PENDING = "ClosurePending"  # a closure request is already waiting
ERR_UNKNOWN_WAIT = "UnknownWait"  # extension target that names no wait
ERR_NO_OPEN_WAIT = "NoOpenWait"  # extension target with no running deadline
ERR_REFERRAL_BUSY = "ReferralBusy"  # a request for that sector is already under way
ERR_SECTOR_UNAVAILABLE = "SectorUnavailable"  # a reassignment could not reach the sector


# Vocabularies the needs below use (intake records them, sectors match on them).
ACCESSIBILITY_FEATURES: tuple[str, ...] = (
    "wheelchair",  # step-free access and an accessible bathroom
    "ground_floor",
    "sign_language",
    "visual_support",
    "nursing_care",
)
PROGRAMME_KINDS: tuple[str, ...] = (
    "confectionery",
    "goldsmithing",
    "cookery",
    "sewing",
    "embroidery",
    "hairdressing",
    "carpet_weaving",
    "literacy",
    "digital_skills",
    "entrepreneurship",
)


# What a hospital care unit offers and a medical referral asks for (HealthNeeds.care).
CARE_SERVICES: tuple[str, ...] = (
    "pep",  # HIV post-exposure prophylaxis (ClinicalItem.PEP)
    "emergency_contraception",  # ClinicalItem.EMERGENCY_CONTRACEPTION
    "forensic_exam",  # ClinicalItem.FORENSIC_EXAM
    "certificate",  # the medico-legal certificate, with its ITT days
)
# What a psychosocial provider (an association) offers (PsychosocialNeeds.support).
SUPPORT_KINDS: tuple[str, ...] = (
    "counselling",  # individual psychological counselling
    "group_support",  # support groups
    "social_support",  # social work: papers, housing, family mediation
    "child_support",  # support for her children
)
# The goals of a psychosocial support plan (codes, never free text).
SUPPORT_GOALS: tuple[str, ...] = (
    "safety_planning",
    "trauma_recovery",
    "self_esteem",
    "parenting",
    "social_reintegration",
    "administrative_papers",
    "housing",
    "income",
    "family_relations",
    "health_access",
)

# Ours: clinical care the incident still calls for (DOMAIN.md's windows).
PEP_WINDOW = timedelta(hours=72)
EMERGENCY_CONTRACEPTION_WINDOW = timedelta(hours=120)
FORENSIC_WINDOW = timedelta(hours=72)  # evidence loses value sharply after it


def care_called_for(
    violence_type: ViolenceType | None, incident_at: datetime | None, now: datetime
) -> list[str]:
    """The CARE_SERVICES a medical referral asks for at `now` (pure, so the
    journey may call it too): after rape or sexual assault, PEP, emergency
    contraception and a forensic examination while their windows are open;
    a certificate after any rape, sexual or physical assault. Empty (any
    care unit) otherwise."""
    care: list[str] = []
    sexual = violence_type in (ViolenceType.RAPE, ViolenceType.SEXUAL_ASSAULT)
    if sexual and incident_at is not None:
        elapsed = now - incident_at
        if elapsed < PEP_WINDOW:
            care.append("pep")
        if elapsed < EMERGENCY_CONTRACEPTION_WINDOW:
            care.append("emergency_contraception")
        if elapsed < FORENSIC_WINDOW:
            care.append("forensic_exam")
    if sexual or violence_type is ViolenceType.PHYSICAL_ASSAULT:
        care.append("certificate")
    return care


@dataclass
class ShelterNeeds:
    """All a shelter learns about the survivor: never a name or a narrative."""

    household_size: int = 1  # the survivor plus accompanying children
    children: int = 0
    accessibility_needs: list[str] = field(default_factory=list)


@dataclass
class LegalNeeds:
    matters: list[str] = field(default_factory=list)  # protection_order, criminal_complaint, ...
    languages: list[str] = field(default_factory=list)


@dataclass
class EmploymentNeeds:
    interests: list[str] = field(default_factory=list)  # programme kinds: sewing, cookery, ...
    languages: list[str] = field(default_factory=list)


@dataclass
class HealthNeeds:
    """All a hospital care unit learns besides region and risk: the care she
    needs now, the incident's time (to the hour: the unit sees how long the
    clinical windows stay open) and her languages. Never a narrative."""

    care: list[str] = field(default_factory=list)  # CARE_SERVICES codes; any unit when empty
    incident_at: datetime | None = None
    languages: list[str] = field(default_factory=list)


@dataclass
class PsychosocialNeeds:
    """All a psychosocial provider learns besides region and risk."""

    support: list[str] = field(default_factory=list)  # SUPPORT_KINDS codes; any when empty
    languages: list[str] = field(default_factory=list)


@dataclass
class ReferralRequest:
    case_id: str
    sector: Sector
    region: str
    risk: Risk
    # Derived from the workflow id and the attempt number: a retried activity
    # returns the first referral instead of creating a second one.
    idempotency_key: str
    exclude_provider_ids: list[str] = field(default_factory=list)
    # Set when a coordinator reassigns to a named provider.
    provider_id: str | None = None
    shelter: ShelterNeeds | None = None
    legal: LegalNeeds | None = None
    employment: EmploymentNeeds | None = None
    health: HealthNeeds | None = None
    psychosocial: PsychosocialNeeds | None = None


@dataclass
class ReferralCreated:
    referral_id: str
    provider_id: str
    region: str
    # The network organisation the provider belongs to (its staff are told of
    # the referral); empty when the sector does not know it.
    organisation_id: str = ""


@dataclass
class ProviderReminder:
    referral_id: str
    idempotency_key: str


@dataclass
class ReferralClosure:
    referral_id: str
    status: ReferralStatus  # REROUTED, EXPIRED or WITHDRAWN
    idempotency_key: str


@dataclass
class CasePurge:
    case_id: str
    sector: Sector
    idempotency_key: str
    # When intake recorded the withdrawal (its ConsentChange.at): the sector
    # refuses consent proofs of a consent given before it. None: not known.
    withdrawn_at: datetime | None = None


@dataclass
class PurgeResult:
    referrals_withdrawn: int
    records_purged: int


@dataclass
class EscalationNotice:
    case_id: str
    region: str
    level: int  # LEVEL_REMINDER, LEVEL_COORDINATOR, LEVEL_REGIONAL
    # What is late: "shelter_accept", "shelter_checkin", "legal_accept",
    # "employment_accept", "follow_up", "clinical:pep", ...
    wait: str
    due_at: datetime
    idempotency_key: str
    referral_id: str | None = None


# --- workflow input -------------------------------------------------------------


@dataclass
class JourneyInput:
    """What intake gives the journey when it starts: no PII."""

    case_id: str
    region: str
    risk: Risk
    needs: list[Need]
    consents: list[Sector]  # sectors the survivor consented to be referred to
    opened_at: datetime
    incident_at: datetime | None = None
    violence_type: ViolenceType | None = None
    shelter: ShelterNeeds | None = None
    legal: LegalNeeds | None = None
    employment: EmploymentNeeds | None = None
    # Carried across continue-as-new; opaque to everyone but the workflow.
    carried_state: str | None = None
    # Continue-as-new once the run's history reaches this many events (besides
    # whenever Temporal suggests it); tests set it low. None: Temporal decides.
    max_history_events: int | None = None
    # The organisation holding the case (told of decisions on its referrals);
    # empty when intake did not say (the journey learns it from a transfer).
    holding_organisation_id: str = ""
    # Set by intake when she needs medical care / psychosocial support.
    health: HealthNeeds | None = None
    psychosocial: PsychosocialNeeds | None = None


# --- updates ------------------------------------------------------------------
# Every update carries an event_id: the journey answers a repeated event_id
# with the first answer, so an outbox may deliver more than once and the
# journey still sees each event once. Every update also carries, in
# `assertion`, who sent it, signed by the sending service
# (masar.contract.assertion): the journey refuses one without.

UPDATE_REFERRAL_DECISION = "referral_decision"  # ReferralDecision -> UpdateResult
UPDATE_REFERRAL_MILESTONE = "referral_milestone"  # ReferralMilestone -> UpdateResult
UPDATE_CONSENT = "consent_changed"  # ConsentChange -> UpdateResult
UPDATE_RISK = "risk_reassessed"  # RiskChange -> UpdateResult
UPDATE_FOLLOW_UP = "follow_up_recorded"  # FollowUpContact -> UpdateResult
UPDATE_MEDICAL_CARE = "medical_care_confirmed"  # MedicalCareConfirmed -> UpdateResult
# Sent by the health service when its staff record clinical care on a referral.
UPDATE_CLINICAL_CARE = "clinical_care_recorded"  # ClinicalCareRecorded -> UpdateResult
# Sent by the legal service when its staff record a breach of a protection order.
UPDATE_BREACH = "protection_order_breached"  # ProtectionOrderBreach -> UpdateResult
UPDATE_CLOSURE_REQUEST = "closure_requested"  # ClosureRequest -> UpdateResult
UPDATE_REOPEN = "reopen"  # ReopenRequest -> UpdateResult
UPDATE_REASSIGN = "reassign_referral"  # Reassignment -> UpdateResult
UPDATE_EXTEND = "extend_deadline"  # DeadlineExtension -> UpdateResult
UPDATE_CLOSURE_DECISION = "decide_closure"  # ClosureDecision -> UpdateResult
QUERY_STATUS = "status"  # -> JourneyStatus


@dataclass
class UpdateResult:
    event_id: str
    duplicate: bool = False
    stage: Stage | None = None


@dataclass
class ReferralDecision:
    event_id: str
    referral_id: str
    sector: Sector
    accepted: bool
    decided_at: datetime
    decline_reason: str | None = None  # DeclineReason name without prefix, e.g. "NO_CAPACITY"
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


class Milestone(StrEnum):
    STARTED = "STARTED"  # shelter check-in, lawyer's first meeting, enrolment start
    COMPLETED = "COMPLETED"  # check-out, matter closed, training completed / job placed


@dataclass
class ReferralMilestone:
    event_id: str
    referral_id: str
    sector: Sector
    milestone: Milestone
    at: datetime
    detail: str | None = None  # a structured code (exit reason, outcome), never free text
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class ConsentChange:
    event_id: str
    sector: Sector
    granted: bool
    at: datetime
    # "withdrawn" (consent withdrawn) or "declined" (she declines the service).
    reason: str = "withdrawn"
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class RiskChange:
    event_id: str
    risk: Risk
    at: datetime
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class FollowUpContact:
    event_id: str
    at: datetime
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class MedicalCareConfirmed:
    event_id: str
    item: ClinicalItem
    at: datetime
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


class CareEvent(StrEnum):
    """What health staff record on a medical referral, each with its time."""

    PEP_STARTED = "pep_started"
    PEP_DECLINED = "pep_declined"
    EMERGENCY_CONTRACEPTION_GIVEN = "emergency_contraception_given"
    EMERGENCY_CONTRACEPTION_DECLINED = "emergency_contraception_declined"
    FORENSIC_EXAM_DONE = "forensic_exam_done"
    FORENSIC_EXAM_DECLINED = "forensic_exam_declined"
    CERTIFICATE_ISSUED = "certificate_issued"  # with itt_days
    FOLLOW_UP_VISIT_DONE = "follow_up_visit_done"  # with visit

    @property
    def item(self) -> ClinicalItem | None:
        """The clinical window this event closes, if any."""
        return _CARE_ITEMS.get(self)

    @property
    def declined(self) -> bool:
        """She declined the care: her decision, closed without escalation."""
        return self in _DECLINED


_CARE_ITEMS: dict[CareEvent, ClinicalItem] = {
    CareEvent.PEP_STARTED: ClinicalItem.PEP,
    CareEvent.PEP_DECLINED: ClinicalItem.PEP,
    CareEvent.EMERGENCY_CONTRACEPTION_GIVEN: ClinicalItem.EMERGENCY_CONTRACEPTION,
    CareEvent.EMERGENCY_CONTRACEPTION_DECLINED: ClinicalItem.EMERGENCY_CONTRACEPTION,
    CareEvent.FORENSIC_EXAM_DONE: ClinicalItem.FORENSIC_EXAM,
    CareEvent.FORENSIC_EXAM_DECLINED: ClinicalItem.FORENSIC_EXAM,
}
_DECLINED = frozenset(
    {
        CareEvent.PEP_DECLINED,
        CareEvent.EMERGENCY_CONTRACEPTION_DECLINED,
        CareEvent.FORENSIC_EXAM_DECLINED,
    }
)


class FollowUpVisit(StrEnum):
    """The medical follow-up visits after the incident (WHO)."""

    TWO_WEEKS = "two_weeks"
    THREE_MONTHS = "three_months"
    SIX_MONTHS = "six_months"


# When each visit falls due, counted from the incident (ours: months as days).
FOLLOW_UP_VISIT_AFTER: dict[FollowUpVisit, timedelta] = {
    FollowUpVisit.TWO_WEEKS: timedelta(days=14),
    FollowUpVisit.THREE_MONTHS: timedelta(days=91),
    FollowUpVisit.SIX_MONTHS: timedelta(days=182),
}
# ITT (total incapacity for work) on a certificate: whole days; more than
# ITT_HEAVIER_ABOVE days makes the heavier charge (Penal Code art. 401).
MAX_ITT_DAYS = 365
ITT_HEAVIER_ABOVE = 20


@dataclass
class ClinicalCareRecorded:
    """One fact health staff recorded on a medical referral (the health
    service's outbox delivers it as UPDATE_CLINICAL_CARE). Codes and times
    only: never a clinical note."""

    event_id: str
    referral_id: str
    sector: Sector  # always Sector.HEALTH (the sender speaks for its own referrals)
    event: CareEvent
    at: datetime  # when it happened, as staff recorded it (UTC)
    recorded_at: datetime
    itt_days: int | None = None  # CERTIFICATE_ISSUED only: 0..MAX_ITT_DAYS
    visit: FollowUpVisit | None = None  # FOLLOW_UP_VISIT_DONE only
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class ProtectionOrderBreach:
    """Legal aid recorded a breach of a protection order."""

    event_id: str
    referral_id: str
    sector: Sector
    at: datetime
    recorded_at: datetime
    risk: Risk | None = None
    assertion: ActorAssertion | None = None


@dataclass
class CertificateNotice:
    """What the legal aid referral may know of a medical certificate (the
    journey sends it with LEGAL_NOTE_CERTIFICATE when she consented to legal
    aid): that one exists, its date and its ITT days; never clinical content."""

    referral_id: str  # the legal aid referral
    issued_at: datetime
    itt_days: int
    idempotency_key: str


@dataclass
class ClosureRequest:
    event_id: str
    at: datetime
    reason: str  # "survivor_request", "needs_met", "no_contact", "moved", "transferred"
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class ReopenRequest:
    event_id: str
    at: datetime
    risk: Risk | None = None
    needs: list[Need] = field(default_factory=list)
    consents: list[Sector] = field(default_factory=list)
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class Reassignment:
    event_id: str
    referral_id: str
    provider_id: str
    coordinator_id: str
    reason: str
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class DeadlineExtension:
    event_id: str
    # A referral id, or a wait name for waits without a referral ("follow_up",
    # "clinical:pep", "clinical:emergency_contraception").
    target: str
    extend_by_seconds: int
    coordinator_id: str
    reason: str
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class ClosureDecision:
    event_id: str
    approve: bool
    coordinator_id: str
    reason: str
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


# --- query --------------------------------------------------------------------


@dataclass
class ReferralView:
    sector: Sector
    referral_id: str
    provider_id: str
    status: ReferralStatus
    deadline: datetime | None
    escalation_level: int
    requested_at: datetime
    decline_reason: str | None = None


@dataclass
class EscalationView:
    wait: str
    level: int
    at: datetime
    referral_id: str | None = None
    sector: Sector | None = None


@dataclass
class ClinicalWindowView:
    item: ClinicalItem
    deadline: datetime
    status: str  # "OPEN", "MET", "MISSED", "DECLINED", "CANCELLED"
    escalation_level: int


@dataclass
class TimelineEvent:
    at: datetime
    event: str  # e.g. "referral_requested", "reminder", "escalated", "rerouted", ...
    sector: Sector | None = None
    referral_id: str | None = None
    level: int | None = None
    detail: str | None = None  # structured codes only
    actor: str | None = None  # the coordinator's opaque id, for coordinator actions


@dataclass
class JourneyStatus:
    case_id: str
    stage: Stage
    risk: Risk
    region: str
    referrals: list[ReferralView]
    escalations: list[EscalationView]
    timeline: list[TimelineEvent]
    clinical_windows: list[ClinicalWindowView] = field(default_factory=list)
    escalation_level: int = LEVEL_NONE
    next_deadline: datetime | None = None
    consents: list[Sector] = field(default_factory=list)
    closure_requested: bool = False
    next_follow_up: datetime | None = None
    # Case transfers between organisations (masar.contract.transfer), oldest first.
    transfers: list[TransferView] = field(default_factory=list)
