"""Notifications: what the journey tells the network service to tell people.

Each journey event that needs a person (a new referral, a rung of the
escalation ladder, a clinical window about to close, a decision, a transfer,
a closure request) becomes one call of the activity `network.notify` on the
network service's task queue (`masar-network`) with a `NotifyEvent`. The
network service resolves the recipients from its directory (staff of the
provider's organisation, the region's coordinators, the holding
organisation's supervisors or intake officers), stores the notification and
each recipient's inbox copy in one unit of work, then delivers it by e-mail
and signed webhooks, retrying in the background.

The `idempotency_key` is fixed by the journey when the event happened (e.g.
`<case>:<referral>:reminder:1`): a retried, replayed or restarted activity
with the same key never produces a second inbox entry.

`NotifyResult.undelivered` is True when the event reached nobody (its
recipient set was empty, e.g. an organisation with no active staff): the
network escalated it at once to the region's coordinators, and the journey
flags the event "undelivered" rather than counting it as sent.

`network.acknowledgements` tells the journey which of its notifications were
acknowledged, by whom and when, and which were found undelivered later (every
channel failed past the delay): the journey polls it (on a timer) for the
keys it cares about.

Ids and codes only, never a name, an alias, a contact or free text.
Standard library only (imported inside the workflow sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# --- names --------------------------------------------------------------------

# NotifyEvent -> NotifyResult, on masar-network.
NETWORK_NOTIFY = "network.notify"
# AcknowledgementsQuery -> AcknowledgementsResult, on masar-network.
NETWORK_ACKNOWLEDGEMENTS = "network.acknowledgements"
# = masar.contract.SECTOR_TASK_QUEUES["network"] (not imported: no cycle).
NETWORK_TASK_QUEUE = "masar-network"


class NotifyKind(StrEnum):
    """Who is told (resolved by the network service from its directory):"""

    # Staff of the provider's organisation with the sector's role.
    NEW_REFERRAL = "new_referral"
    REMINDER = "reminder"
    # The region's coordinators (a rerouting is told the same way).
    ESCALATION = "escalation"
    REROUTED = "rerouted"
    # The region's coordinators and the holding organisation's supervisors.
    REGIONAL = "regional"
    EXPIRED = "expired"
    # The region's coordinators and the holding organisation's intake officers.
    CLINICAL_WINDOW = "clinical_window"
    # The holding organisation (intake officers and supervisors); a transfer
    # request and its answer also the receiving organisation.
    REFERRAL_DECIDED = "referral_decided"
    TRANSFER_REQUESTED = "transfer_requested"
    TRANSFER_ANSWERED = "transfer_answered"
    # The region's coordinators.
    CLOSURE_REQUESTED = "closure_requested"
    # The region's coordinators and the holding organisation.
    BREACH = "protection_order_breach"
    # Nobody: the open items of (case, referral) — of the whole case when no
    # referral is named — are resolved (they leave the daily digest).
    RESOLVED = "resolved"
    # Sent by the network service itself: an event that reached nobody,
    # escalated to the region's coordinators; an account's daily digest.
    UNDELIVERED = "undelivered"
    DIGEST = "digest"


@dataclass
class NotifyEvent:
    kind: NotifyKind
    # Fixed by the journey when the event happened: the same key is the same
    # notification, however often the activity runs.
    idempotency_key: str
    case_id: str
    region: str
    referral_id: str = ""
    # shelter, legal, employment (Sector values); empty for a case-level event.
    sector: str = ""
    provider_organisation_id: str = ""
    holding_organisation_id: str = ""
    # The escalation ladder's rung (1 reminder, 2 coordinator, 3 regional).
    rung: int = 0
    # What the recipients must act before (the wait's deadline).
    deadline: datetime | None = None
    # Transfers: the request and the organisation it is addressed to.
    transfer_id: str = ""
    receiving_organisation_id: str = ""
    # When the event happened (journey time); the network's clock if None.
    occurred_at: datetime | None = None


@dataclass
class NotifyResult:
    notification_id: str
    # How many people the event itself was addressed to (0: nobody to tell).
    recipients: int
    # Reached nobody: escalated at once to the region's coordinators.
    undelivered: bool = False
    # How many coordinators the undelivered escalation went to.
    escalated_to: int = 0
    # True when this key had already been notified (a retry or a replay).
    already: bool = False


@dataclass
class AcknowledgementsQuery:
    case_id: str
    # The notifications' idempotency keys (empty: every one of the case).
    idempotency_keys: list[str] = field(default_factory=list)


@dataclass
class Acknowledgement:
    idempotency_key: str
    notification_id: str
    account_id: str
    role: str
    organisation_id: str
    acknowledged_at: datetime


@dataclass
class AcknowledgementsResult:
    acknowledgements: list[Acknowledgement] = field(default_factory=list)
    # Keys found undelivered (nobody to tell, or every channel failed past
    # the delay), escalated to the region's coordinators.
    undelivered: list[str] = field(default_factory=list)
