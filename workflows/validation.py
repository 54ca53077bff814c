"""Update validators: an update the journey cannot take is rejected before
anything is written, so the caller (staff, a coordinator, intake) gets a
synchronous answer. A repeated event id always passes: it is answered with
the first answer. (Who sent it is checked first, by workflows.authentication.)

Each check reads the case file and raises an `ApplicationError` whose type is
one of the contract's ERR_* codes and whose message names the field, never a
value.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from masar.contract import (
    ERR_CLOSURE_PENDING,
    ERR_INVALID,
    ERR_JOURNEY_CLOSED,
    ERR_NO_CLOSURE_PENDING,
    ERR_NO_CONSENT,
    ERR_NO_OPEN_WAIT,
    ERR_NOT_CLOSED,
    ERR_REFERRAL_BUSY,
    ERR_STALE_REFERRAL,
    ERR_STALE_TRANSFER,
    ERR_TRANSFER_OPEN,
    ERR_UNKNOWN_REFERRAL,
    ERR_UNKNOWN_TRANSFER,
    ERR_UNKNOWN_WAIT,
    MAX_ITT_DAYS,
    CareEvent,
    ClinicalCareRecorded,
    ClinicalItem,
    ClosureDecision,
    ClosureRequest,
    DeadlineExtension,
    DeclineReason,
    FollowUpContact,
    FollowUpVisit,
    MedicalCareConfirmed,
    Milestone,
    ProtectionOrderBreach,
    Reassignment,
    ReferralDecision,
    ReferralMilestone,
    ReferralStatus,
    ReopenRequest,
    Risk,
    Sector,
    TransferDecision,
    TransferReason,
    TransferRedirect,
    TransferRequest,
    TransferStatus,
)
from workflows.care import in_care
from workflows.casefile import CaseFile
from workflows.state import (
    CLINICAL_PREFIX,
    FOLLOW_UP_WAIT,
    VISIT_PREFIX,
    ReferralState,
    TransferState,
)

MAX_EXTENSION = timedelta(days=365)
DECLINE_REASONS = frozenset(reason.value for reason in DeclineReason)


def reject(error_type: str, message: str) -> ApplicationError:
    """An update rejection: the message names the field, never a value."""
    return ApplicationError(message, type=error_type, non_retryable=True)


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _known_referral(case: CaseFile, referral_id: str, sector: Sector) -> ReferralState:
    ref = case.referral(referral_id)
    if ref is None:
        raise reject(ERR_UNKNOWN_REFERRAL, "referral_id: unknown to this journey")
    if ref.sector is not sector:
        raise reject(ERR_INVALID, "sector: does not match the referral")
    return ref


def accept_any(case: CaseFile, event: object) -> None:
    """The business rules of Updates that take any event (consent, risk)."""


# --- the sectors' staff -------------------------------------------------------------


def validate_decision(case: CaseFile, event: ReferralDecision) -> None:
    if case.is_answered(event.event_id):
        return
    ref = _known_referral(case, event.referral_id, event.sector)
    if (
        ref.status is not ReferralStatus.PENDING
        or case.progress(ref.sector).current != ref.referral_id
    ):
        raise reject(ERR_STALE_REFERRAL, f"referral_id: no decision pending ({ref.status})")
    if not event.accepted:
        if _blank(event.decline_reason):
            raise reject(ERR_INVALID, "decline_reason: required when declining")
        if event.decline_reason not in DECLINE_REASONS:
            raise reject(ERR_INVALID, "decline_reason: not a DeclineReason")


def validate_milestone(case: CaseFile, event: ReferralMilestone) -> None:
    if case.is_answered(event.event_id):
        return
    ref = _known_referral(case, event.referral_id, event.sector)
    if event.milestone is Milestone.STARTED:
        allowed: tuple[ReferralStatus, ...] = (
            ReferralStatus.PENDING,
            ReferralStatus.ACCEPTED,
        )
    else:
        allowed = (ReferralStatus.ACCEPTED, ReferralStatus.IN_SERVICE)
    if ref.status not in allowed or case.progress(ref.sector).current != ref.referral_id:
        raise reject(
            ERR_STALE_REFERRAL, f"referral_id: cannot record {event.milestone} ({ref.status})"
        )


def validate_clinical_care(case: CaseFile, event: ClinicalCareRecorded) -> None:
    """Care recorded by the care unit on its medical referral, while she is
    in its care; the certificate with its ITT days, a visit named."""
    if case.is_answered(event.event_id):
        return
    if event.sector is not Sector.HEALTH:
        raise reject(ERR_INVALID, "sector: clinical care is recorded on a medical referral")
    ref = _known_referral(case, event.referral_id, event.sector)
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    if event.event not in set(CareEvent):
        raise reject(ERR_INVALID, "event: not a CareEvent")
    if not in_care(ref):
        raise reject(ERR_STALE_REFERRAL, f"referral_id: not in the unit's care ({ref.status})")
    certificate = event.event is CareEvent.CERTIFICATE_ISSUED
    if certificate and event.itt_days is None:
        raise reject(ERR_INVALID, "itt_days: required for a certificate")
    if not certificate and event.itt_days is not None:
        raise reject(ERR_INVALID, "itt_days: only for a certificate")
    if event.itt_days is not None and not 0 <= event.itt_days <= MAX_ITT_DAYS:
        raise reject(ERR_INVALID, f"itt_days: whole days from 0 to {MAX_ITT_DAYS}")
    visit = event.event is CareEvent.FOLLOW_UP_VISIT_DONE
    if visit and event.visit not in set(FollowUpVisit):
        raise reject(ERR_INVALID, "visit: required for a follow-up visit (a FollowUpVisit)")
    if not visit and event.visit is not None:
        raise reject(ERR_INVALID, "visit: only for a follow-up visit")


def validate_breach(case: CaseFile, event: ProtectionOrderBreach) -> None:
    """A breach recorded by legal aid on one of its referrals (a completed
    one too: the order outlives it), on an open journey."""
    if case.is_answered(event.event_id):
        return
    if event.sector is not Sector.LEGAL:
        raise reject(ERR_INVALID, "sector: a breach is recorded on a legal aid referral")
    _known_referral(case, event.referral_id, event.sector)
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    if event.risk is not None and event.risk not in set(Risk):
        raise reject(ERR_INVALID, "risk: not a Risk")


# --- intake -------------------------------------------------------------------------


def validate_follow_up(case: CaseFile, event: FollowUpContact) -> None:
    if case.is_answered(event.event_id):
        return
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")


def validate_medical_care(case: CaseFile, event: MedicalCareConfirmed) -> None:
    """Care confirmed on an open journey (a closed one has no window left)."""
    if case.is_answered(event.event_id):
        return
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    if event.item not in set(ClinicalItem):
        raise reject(ERR_INVALID, "item: not a ClinicalItem")


def validate_closure_request(case: CaseFile, event: ClosureRequest) -> None:
    if case.is_answered(event.event_id):
        return
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    if case.state.closure_requested:
        raise reject(ERR_CLOSURE_PENDING, "journey: a closure request is already pending")
    if _blank(event.reason):
        raise reject(ERR_INVALID, "reason: required")
    if case.transfers.pending() is not None:
        raise reject(ERR_TRANSFER_OPEN, "journey: a transfer is waiting for an answer")


def validate_reopen(case: CaseFile, event: ReopenRequest) -> None:
    if case.is_answered(event.event_id):
        return
    if not case.closed:
        raise reject(ERR_NOT_CLOSED, "journey: not closed")


# --- coordinators -------------------------------------------------------------------


def validate_reassign(case: CaseFile, event: Reassignment) -> None:
    if case.is_answered(event.event_id):
        return
    for name in ("provider_id", "coordinator_id", "reason"):
        if _blank(getattr(event, name)):
            raise reject(ERR_INVALID, f"{name}: required")
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    ref = case.referral(event.referral_id)
    if ref is None:
        raise reject(ERR_UNKNOWN_REFERRAL, "referral_id: unknown to this journey")
    track = case.tracks[ref.sector]
    if not track.is_reassignable(ref):
        raise reject(ERR_STALE_REFERRAL, f"referral_id: not waiting for a provider ({ref.status})")
    if not case.consented(ref.sector) or not case.needs(ref.sector):
        raise reject(ERR_NO_CONSENT, "sector: no consent for this sector")
    if ref.status is ReferralStatus.PENDING and event.provider_id == ref.provider_id:
        raise reject(ERR_INVALID, "provider_id: already assigned to this referral")
    if track.owed_request() is not None:
        raise reject(ERR_REFERRAL_BUSY, "sector: a request is already under way")


def validate_extension(case: CaseFile, event: DeadlineExtension) -> None:
    if case.is_answered(event.event_id):
        return
    for name in ("coordinator_id", "reason", "target"):
        if _blank(getattr(event, name)):
            raise reject(ERR_INVALID, f"{name}: required")
    if event.extend_by_seconds <= 0:
        raise reject(ERR_INVALID, "extend_by_seconds: must be positive")
    if event.extend_by_seconds > MAX_EXTENSION.total_seconds():
        raise reject(ERR_INVALID, "extend_by_seconds: at most 365 days")
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    is_wait = event.target == FOLLOW_UP_WAIT or event.target.startswith(
        (CLINICAL_PREFIX, VISIT_PREFIX)
    )
    known = case.referral(event.target) is not None or case.transfers.find(event.target) is not None
    if not is_wait and not known:
        raise reject(ERR_UNKNOWN_WAIT, "target: names no referral or wait of this journey")
    if case.wait_for_target(event.target) is None:
        raise reject(ERR_NO_OPEN_WAIT, "target: has no open deadline")


def validate_closure_decision(case: CaseFile, event: ClosureDecision) -> None:
    if case.is_answered(event.event_id):
        return
    for name in ("coordinator_id", "reason"):
        if _blank(getattr(event, name)):
            raise reject(ERR_INVALID, f"{name}: required")
    if not case.state.closure_requested:
        raise reject(ERR_NO_CLOSURE_PENDING, "journey: no closure request pending")


# --- transfers between organisations -------------------------------------------------------


def validate_transfer_request(case: CaseFile, event: TransferRequest) -> None:
    if case.is_answered(event.event_id):
        return
    for name in ("transfer_id", "from_organisation_id", "to_organisation_id"):
        if _blank(getattr(event, name)):
            raise reject(ERR_INVALID, f"{name}: required")
    if event.to_organisation_id == event.from_organisation_id:
        raise reject(ERR_INVALID, "to_organisation_id: already holds the case")
    if event.reason not in set(TransferReason):
        raise reject(ERR_INVALID, "reason: not a TransferReason")
    if event.consent_at is None:
        raise reject(ERR_INVALID, "consent_at: the survivor's consent is required")
    if case.closed:
        raise reject(ERR_JOURNEY_CLOSED, "journey: closed")
    if case.state.closure_requested:
        raise reject(ERR_CLOSURE_PENDING, "journey: a closure request is pending")
    if case.transfers.find(event.transfer_id) is not None:
        raise reject(ERR_INVALID, "transfer_id: already known to this journey")
    if case.transfers.pending() is not None:
        raise reject(ERR_TRANSFER_OPEN, "journey: a transfer is already waiting for an answer")


def _waiting_transfer(case: CaseFile, transfer_id: str) -> TransferState:
    transfer = case.transfers.find(transfer_id)
    if transfer is None:
        raise reject(ERR_UNKNOWN_TRANSFER, "transfer_id: unknown to this journey")
    if transfer.status is not TransferStatus.PENDING:
        raise reject(ERR_STALE_TRANSFER, f"transfer_id: no answer pending ({transfer.status})")
    return transfer


def validate_transfer_decision(case: CaseFile, event: TransferDecision) -> None:
    if case.is_answered(event.event_id):
        return
    transfer = _waiting_transfer(case, event.transfer_id)
    if event.to_organisation_id != transfer.to_organisation_id:
        raise reject(ERR_STALE_TRANSFER, "to_organisation_id: the request went to another one")
    if not event.accepted and event.decline_reason is None:
        raise reject(ERR_INVALID, "decline_reason: required when declining")


def validate_transfer_redirect(case: CaseFile, event: TransferRedirect) -> None:
    if case.is_answered(event.event_id):
        return
    for name in ("to_organisation_id", "coordinator_id"):
        if _blank(getattr(event, name)):
            raise reject(ERR_INVALID, f"{name}: required")
    if event.consent_at is None:
        raise reject(ERR_INVALID, "consent_at: the survivor's consent is required")
    transfer = _waiting_transfer(case, event.transfer_id)
    if event.to_organisation_id in (transfer.to_organisation_id, transfer.from_organisation_id):
        raise reject(ERR_INVALID, "to_organisation_id: must name another organisation")
