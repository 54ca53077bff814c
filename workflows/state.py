"""The journey's state: plain dataclasses, carried whole across continue-as-new.

Everything a journey knows lives here, so that a new run resumes exactly where
the last one stopped: open waits (with their start, deadline, extensions and
rung reached), referrals, owed side effects (actions not yet performed), the
timeline and the answers already given to update events (for deduplication).
Standard library and the contract only: imported inside the workflow sandbox.
No field holds a name, a narrative or a contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from masar.contract import (
    ClinicalItem,
    EmploymentNeeds,
    FollowUpVisit,
    HealthNeeds,
    LegalNeeds,
    Need,
    PsychosocialNeeds,
    ReferralStatus,
    Risk,
    Sector,
    ShelterNeeds,
    Stage,
    TimelineEvent,
    TransferReason,
    TransferStatus,
    UpdateResult,
    ViolenceType,
)
from masar.contract.notify import NotifyEvent
from workflows.policy import SlaPolicy

# Bounds on what the state keeps, so a years-long journey's carried state stays small.
MAX_TIMELINE = 500
MAX_ANSWERS = 1000

# The waits of the referral handshake, per sector: the provider's decision, then
# the milestone that starts the service (check-in, first meeting, enrolment).
ACCEPT_WAIT: dict[Sector, str] = {
    Sector.SHELTER: "shelter_accept",
    Sector.LEGAL: "legal_accept",
    Sector.EMPLOYMENT: "employment_accept",
    Sector.HEALTH: "health_accept",
    Sector.PSYCHOSOCIAL: "psychosocial_accept",
}
# (No policy sets `health_start` or `psychosocial_start`: once accepted, the
# journey waits for the first visit or session without a deadline.)
MILESTONE_WAIT: dict[Sector, str] = {
    Sector.SHELTER: "shelter_checkin",
    Sector.LEGAL: "legal_meeting",
    Sector.EMPLOYMENT: "employment_start",
    Sector.HEALTH: "health_start",
    Sector.PSYCHOSOCIAL: "psychosocial_start",
}
# The sectors of care (issue 15): referred to only in runs with the care patch.
CARE_SECTORS: tuple[Sector, ...] = (Sector.HEALTH, Sector.PSYCHOSOCIAL)
FOLLOW_UP_WAIT = "follow_up"
CLINICAL_PREFIX = "clinical:"
# The medical follow-up visits' waits (workflows.visits): the policy's
# `health_visit` is how long after a visit falls due before it counts as
# missed; each visit's wait is named `health_visit:<visit>`.
HEALTH_VISIT_WAIT = "health_visit"
VISIT_PREFIX = "health_visit:"

# Referral statuses in which the sector is still working on the referral.
LIVE_STATUSES = (ReferralStatus.PENDING, ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE)


def clinical_wait_name(item: ClinicalItem) -> str:
    return f"{CLINICAL_PREFIX}{item.value}"


def visit_wait_name(visit: FollowUpVisit) -> str:
    return f"{VISIT_PREFIX}{visit.value}"


@dataclass
class LadderWait:
    """One wait under the escalation ladder.

    Rungs are at `started_at + fraction * (deadline_seconds + extension_seconds)`;
    an absolute wait (a clinical window) has its last rung on
    `absolute_deadline`, whatever the extensions.
    """

    name: str
    started_at: datetime
    deadline_seconds: float
    extension_seconds: float = 0.0
    level: int = 0  # highest rung already climbed
    last_rung_at: datetime | None = None
    absolute_deadline: datetime | None = None


@dataclass
class ReferralState:
    sector: Sector
    referral_id: str
    provider_id: str
    status: ReferralStatus
    requested_at: datetime
    attempt: int
    wait: LadderWait | None = None
    decline_reason: str | None = None
    # The ladder level reached when the referral ended EXPIRED.
    final_level: int = 0
    # The network organisation of the provider (its staff are told).
    organisation_id: str = ""


@dataclass
class TransferState:
    """A request that another organisation take over the case (workflows.transfers)."""

    transfer_id: str
    from_organisation_id: str
    to_organisation_id: str  # the organisation asked now (a redirect changes it)
    reason: TransferReason
    status: TransferStatus
    requested_at: datetime
    wait: LadderWait | None = None  # `transfer_accept`, while PENDING
    decided_at: datetime | None = None  # accepted, declined or lapsed
    final_level: int = 0  # the ladder level reached when it ended
    redirects: int = 0


@dataclass
class TrackState:
    """The journey's dealings with one sector in the current cycle (the state
    a `workflows.tracks.ReferralTrack` works on)."""

    sector: Sector
    tried_provider_ids: list[str] = field(default_factory=list)
    current: str | None = None  # referral id of the live attempt
    exhausted_level: int = 0  # > 0: no provider left; escalated at this level
    exhausted_at: datetime | None = None
    exhausted_reason: str | None = None  # an error type code
    served: bool = False  # the service started (for shelter: she is placed, so safe)
    done: bool = False  # the service completed
    contacted: bool = False  # the sector holds something about the case (purge on withdrawal)
    attempts: int = 0


# The values below are in recorded histories and carried states: never change one.


class ActionKind(StrEnum):
    REQUEST = "request"
    REMIND = "remind"
    CLOSE = "close"
    PURGE = "purge"
    ESCALATE = "escalate"
    TRANSFER_RUNG = "transfer_rung"  # intake.record_transfer_rung
    NOTIFY = "notify"  # network.notify (workflows.notices)
    ACKNOWLEDGEMENTS = "acknowledgements"  # network.acknowledgements
    CERTIFICATE = "certificate"  # legal.note_certificate (workflows.care)


class RequestPurpose(StrEnum):
    NONE = ""  # not a request (remind, close, purge, escalate)
    NEW = "new"
    REROUTE = "reroute"
    REASSIGN = "reassign"


INTAKE_LANE = "intake"
LANES: tuple[str, ...] = (
    Sector.SHELTER.value,
    Sector.LEGAL.value,
    Sector.EMPLOYMENT.value,
    INTAKE_LANE,
)
# The network service's lane (notifications), in runs that tell people.
NETWORK_LANE = "network"
# The care sectors' lanes, in runs with the care patch.
CARE_LANES: tuple[str, ...] = tuple(sector.value for sector in CARE_SECTORS)


@dataclass
class Action:
    """A side effect the journey owes a collaborator (one activity call).

    Actions wait in their lane (one per sector, one for intake) and are
    performed in order; their idempotency key is fixed when they are owed, so
    a retry after a failure cannot create a second referral.
    """

    lane: str
    kind: ActionKind
    key: str
    referral_id: str | None = None  # remind/close target; for a request, the one it replaces
    status: ReferralStatus | None = None  # close: REROUTED, EXPIRED or WITHDRAWN
    purpose: RequestPurpose = RequestPurpose.NONE  # request: why it is asked
    provider_id: str | None = None  # request: a coordinator's named provider
    expire_if_none: bool = False  # request: no provider left -> the replaced one EXPIRES
    level: int = 0  # escalate
    wait: str = ""  # escalate: which wait is late
    due_at: datetime | None = None  # escalate; purge: when the consent was withdrawn
    sector: Sector | None = None  # escalate: the sector concerned, if any
    failures: int = 0
    awaited_by: str | None = None  # event id of an update waiting for the outcome
    transfer_id: str | None = None  # transfer_rung: the transfer
    to_organisation_id: str | None = None  # transfer_rung: the organisation asked
    lapsed: bool = False  # transfer_rung: the last rung (the request lapsed)
    notice: NotifyEvent | None = None  # notify: the event (its key is the action's)
    issued_at: datetime | None = None  # certificate: when it was issued
    itt_days: int | None = None  # certificate: its days of total incapacity for work


class WindowStatus(StrEnum):
    OPEN = "OPEN"
    MET = "MET"
    MISSED = "MISSED"
    CANCELLED = "CANCELLED"
    DECLINED = "DECLINED"  # she declined the care: her decision, never escalated


@dataclass
class ClinicalWindow:
    item: ClinicalItem
    deadline: datetime
    status: WindowStatus
    wait: LadderWait | None = None
    level: int = 0
    # A missed window stays among the open escalations until care is confirmed.
    escalation_open: bool = False
    closed_at: datetime | None = None


class VisitStatus(StrEnum):
    OPEN = "OPEN"  # waiting for the visit (its wait climbs: due, missed, regional)
    DONE = "DONE"
    CANCELLED = "CANCELLED"  # consent to health care withdrawn, or the case closed


@dataclass
class HealthVisit:
    """A medical follow-up visit after the incident (workflows.visits)."""

    visit: FollowUpVisit
    due_at: datetime
    status: VisitStatus
    referral_id: str  # the medical referral whose care unit follows her up
    wait: LadderWait | None = None
    closed_at: datetime | None = None


@dataclass
class Certificate:
    """The latest medico-legal certificate (workflows.care): that it exists,
    when and its ITT days — all legal aid may learn of it."""

    issued_at: datetime
    itt_days: int
    # The legal aid referrals already told of it (legal.note_certificate).
    noted_referral_ids: list[str] = field(default_factory=list)


@dataclass
class AcknowledgementWatch:
    """A notification whose acknowledgement the journey waits to see
    (workflows.notices): polled with a backoff, a bounded number of times."""

    key: str  # the notification's idempotency key
    kind: str  # its NotifyKind value
    since: datetime
    first_seconds: float  # the first poll's delay, doubled at each poll ...
    cap_seconds: float  # ... up to this
    polls: int = 0
    referral_id: str | None = None
    sector: Sector | None = None
    level: int = 0


@dataclass
class UndeliveredFlag:
    """A notification that reached nobody (the network told the region's
    coordinators instead): shown among the escalations until one of them
    acknowledges it, or its referral is over."""

    key: str
    kind: str
    at: datetime
    level: int
    referral_id: str | None = None
    sector: Sector | None = None


@dataclass
class SeenAssertion:
    """An actor assertion the journey accepted (workflows.authentication): the
    same one is refused again while it lives."""

    assertion_id: str
    issued_at: datetime


@dataclass
class JourneyState:
    case_id: str
    workflow_id: str
    region: str
    risk: Risk
    needs: list[Need]
    consents: list[Sector]
    opened_at: datetime
    policy: SlaPolicy | None = None
    incident_at: datetime | None = None
    violence_type: ViolenceType | None = None
    shelter: ShelterNeeds | None = None
    legal: LegalNeeds | None = None
    employment: EmploymentNeeds | None = None
    health: HealthNeeds | None = None
    psychosocial: PsychosocialNeeds | None = None
    stage: Stage = Stage.TRIAGE
    started: bool = False  # the first plan ran (TRIAGE is over)
    closure_requested: bool = False
    closed_at: datetime | None = None
    tracks: dict[str, TrackState] = field(default_factory=dict)
    referrals: list[ReferralState] = field(default_factory=list)
    follow_up: LadderWait | None = None
    clinical: list[ClinicalWindow] = field(default_factory=list)
    # The medical referral's follow-up visits and certificate (workflows.visits, .care).
    visits: list[HealthVisit] = field(default_factory=list)
    certificate: Certificate | None = None
    transfers: list[TransferState] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    answers: list[UpdateResult] = field(default_factory=list)
    # Actor assertions used within their lifetime (a replayed one is refused).
    seen_assertions: list[SeenAssertion] = field(default_factory=list)
    # Notifications (workflows.notices): the organisation holding the case,
    # the escalations whose acknowledgement is awaited, when to ask next,
    # and what reached nobody.
    holding_organisation_id: str = ""
    watches: list[AcknowledgementWatch] = field(default_factory=list)
    acknowledgements_due_at: datetime | None = None
    undelivered: list[UndeliveredFlag] = field(default_factory=list)
    seq: int = 0
    runs: int = 1
    max_history_events: int | None = None


def encode_state(state: JourneyState, payload_converter: Any) -> str:
    """The state as a JSON document (for JourneyInput.carried_state)."""
    payload = payload_converter.to_payloads([state])[0]
    return str(payload.data.decode("utf-8"))


def decode_state(text: str, payload_converter: Any) -> JourneyState:
    from temporalio.api.common.v1 import Payload

    payload = Payload(metadata={"encoding": b"json/plain"}, data=text.encode("utf-8"))
    state = payload_converter.from_payloads([payload], [JourneyState])[0]
    if not isinstance(state, JourneyState):  # pragma: no cover - converter contract
        raise TypeError("carried state did not decode to a JourneyState")
    return state
