"""Case transfer between organisations: what intake and the journey share.

An organisation holding a case asks another to take it over, with a reason
from a structured list and the survivor's recorded consent. The journey keeps
the request under the escalation ladder of the `transfer_accept` wait
(reminder to the receiving organisation, then the region's coordinators, then
the request lapses and the case stays with its holder). A coordinator may
redirect the request to another organisation; nothing reroutes it by itself.

Intake records each change (request, decision, redirect) and delivers it as
one of the Updates below (one dataclass in, the contract's `UpdateResult`
out); the journey reports each rung of the ladder back to intake through the
activity `intake.record_transfer_rung`.

Standard library only (imported inside the workflow sandbox); ids and codes
only, never a name or free text.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from masar.contract.assertion import ActorAssertion

# --- names --------------------------------------------------------------------

# The SLA wait (workflows/policy.toml `[deadlines.transfer_accept]`).
TRANSFER_ACCEPT_WAIT = "transfer_accept"
# Its shipped defaults (ours): also the deadline of a journey whose recorded
# policy predates the wait.
TRANSFER_ACCEPT_DEFAULT_SECONDS: dict[str, int] = {
    "critical": 24 * 3600,
    "high": 24 * 3600,
    "medium": 72 * 3600,
    "low": 7 * 86400,
}

UPDATE_TRANSFER_REQUEST = "transfer_requested"  # TransferRequest -> UpdateResult
UPDATE_TRANSFER_DECISION = "transfer_decided"  # TransferDecision -> UpdateResult
UPDATE_TRANSFER_REDIRECT = "transfer_redirected"  # TransferRedirect -> UpdateResult
# Intake implements it on masar-intake: TransferRungNotice -> None.
INTAKE_RECORD_TRANSFER_RUNG = "intake.record_transfer_rung"

# Update rejections (ApplicationError types).
ERR_UNKNOWN_TRANSFER = "UnknownTransfer"
ERR_STALE_TRANSFER = "StaleTransfer"  # known, but no longer waiting for this answer
ERR_TRANSFER_OPEN = "TransferOpen"  # another transfer of the case is waiting for an answer

TRANSFER_ID_PREFIX = "trf"


def new_transfer_id() -> str:
    return f"{TRANSFER_ID_PREFIX}-{secrets.token_hex(8)}"


class TransferReason(StrEnum):
    """Why an organisation asks another to take over a case."""

    CLOSER_TO_HOME = "closer_to_home"
    SPECIALISED_SERVICE = "specialised_service"
    CAPACITY = "capacity"
    LANGUAGE = "language"
    SURVIVOR_REQUEST = "survivor_request"


class TransferDeclineReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    SERVICE_NOT_OFFERED = "service_not_offered"
    OUT_OF_AREA = "out_of_area"
    LANGUAGE = "language"
    OTHER = "other"


class TransferStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    LAPSED = "LAPSED"  # the ladder's last rung passed unanswered: the case stays


# --- updates ------------------------------------------------------------------


@dataclass
class TransferRequest:
    event_id: str
    transfer_id: str
    from_organisation_id: str
    to_organisation_id: str
    reason: TransferReason
    requested_at: datetime
    # When the survivor's consent to this transfer was recorded (required).
    consent_at: datetime
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class TransferDecision:
    event_id: str
    transfer_id: str
    # The organisation deciding: must be the one the request is addressed to now.
    to_organisation_id: str
    accepted: bool
    decided_at: datetime
    decline_reason: TransferDeclineReason | None = None
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


@dataclass
class TransferRedirect:
    """A coordinator of the region addresses a waiting request to another
    organisation (with the survivor's consent to that one); its wait starts over."""

    event_id: str
    transfer_id: str
    to_organisation_id: str
    coordinator_id: str
    redirected_at: datetime
    consent_at: datetime
    # Who sent it, signed by the sending service (masar.contract.assertion).
    assertion: ActorAssertion | None = None


# --- the ladder's notices to intake ------------------------------------------------


@dataclass
class TransferRungNotice:
    case_id: str
    region: str
    transfer_id: str
    # The organisation the request is addressed to (the reminder goes to it).
    to_organisation_id: str
    level: int  # 1 reminder, 2 coordinators, 3 lapsed
    due_at: datetime
    idempotency_key: str
    lapsed: bool = False


# --- the status query ---------------------------------------------------------------


@dataclass
class TransferView:
    transfer_id: str
    from_organisation_id: str
    to_organisation_id: str
    status: TransferStatus
    deadline: datetime | None
    escalation_level: int
    reason: TransferReason
    requested_at: datetime
    decided_at: datetime | None = None
