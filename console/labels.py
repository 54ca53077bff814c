"""What people read for the codes the services return: every enum and
timeline code shown in the console has an entry here, marked for the
catalogs (`N_`) and translated when rendered (`_()`). A code without a label
is shown as a neutral dash-free fallback (`Other`), never in English."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.i18n import N_
from masar.v1 import common_pb2, health_pb2, intake_pb2, journey_pb2, network_pb2, psychosocial_pb2

SECTORS = {
    common_pb2.SECTOR_SHELTER: N_("Shelter"),
    common_pb2.SECTOR_LEGAL: N_("Legal aid"),
    common_pb2.SECTOR_EMPLOYMENT: N_("Training and work"),
    common_pb2.SECTOR_MEDICAL: N_("Health care"),
    common_pb2.SECTOR_PSYCHOSOCIAL: N_("Psychosocial support"),
}
SECTOR_SLUGS = {
    "shelter": N_("Shelter"),
    "legal": N_("Legal aid"),
    "employment": N_("Training and work"),
    "medical": N_("Health care"),
    "health": N_("Health care"),
    "psychosocial": N_("Psychosocial support"),
}
RISKS = {
    common_pb2.RISK_LEVEL_LOW: N_("Low"),
    common_pb2.RISK_LEVEL_MEDIUM: N_("Medium"),
    common_pb2.RISK_LEVEL_HIGH: N_("High"),
    common_pb2.RISK_LEVEL_CRITICAL: N_("Critical"),
}
RISK_CLASSES = {
    common_pb2.RISK_LEVEL_HIGH: "high",
    common_pb2.RISK_LEVEL_CRITICAL: "critical",
}
STAGES = {
    journey_pb2.JOURNEY_STAGE_TRIAGE: N_("Triage"),
    journey_pb2.JOURNEY_STAGE_SAFETY: N_("Safety"),
    journey_pb2.JOURNEY_STAGE_JUSTICE: N_("Justice"),
    journey_pb2.JOURNEY_STAGE_RECOVERY: N_("Recovery"),
    journey_pb2.JOURNEY_STAGE_FOLLOW_UP: N_("Follow-up"),
    journey_pb2.JOURNEY_STAGE_CLOSURE_PENDING: N_("Closure pending"),
    journey_pb2.JOURNEY_STAGE_CLOSED: N_("Closed"),
}
REFERRAL_STATUSES = {
    common_pb2.REFERRAL_STATUS_PENDING: N_("Waiting for an answer"),
    common_pb2.REFERRAL_STATUS_ACCEPTED: N_("Accepted"),
    common_pb2.REFERRAL_STATUS_DECLINED: N_("Declined"),
    common_pb2.REFERRAL_STATUS_IN_SERVICE: N_("In service"),
    common_pb2.REFERRAL_STATUS_COMPLETED: N_("Completed"),
    common_pb2.REFERRAL_STATUS_REROUTED: N_("Rerouted"),
    common_pb2.REFERRAL_STATUS_EXPIRED: N_("Expired"),
    common_pb2.REFERRAL_STATUS_WITHDRAWN: N_("Withdrawn"),
}
ESCALATION_LEVELS = {
    0: N_("None"),
    1: N_("Reminder"),
    2: N_("Coordinator"),
    3: N_("Regional"),
}
CLINICAL_ITEMS = {
    intake_pb2.CLINICAL_ITEM_PEP: N_("HIV post-exposure prophylaxis (72 h)"),
    intake_pb2.CLINICAL_ITEM_EMERGENCY_CONTRACEPTION: N_("Emergency contraception (120 h)"),
    intake_pb2.CLINICAL_ITEM_FORENSIC_EXAM: N_("Forensic examination"),
}
CLINICAL_STATUSES = {
    journey_pb2.CLINICAL_WINDOW_STATUS_OPEN: N_("Open"),
    journey_pb2.CLINICAL_WINDOW_STATUS_MET: N_("Met"),
    journey_pb2.CLINICAL_WINDOW_STATUS_MISSED: N_("Missed"),
    journey_pb2.CLINICAL_WINDOW_STATUS_DECLINED: N_("Declined by her"),
    journey_pb2.CLINICAL_WINDOW_STATUS_CANCELLED: N_("No longer followed"),
}
TRANSFER_STATUSES = {
    intake_pb2.TRANSFER_STATUS_PENDING: N_("Waiting for an answer"),
    intake_pb2.TRANSFER_STATUS_ACCEPTED: N_("Accepted"),
    intake_pb2.TRANSFER_STATUS_DECLINED: N_("Declined"),
    intake_pb2.TRANSFER_STATUS_LAPSED: N_("Lapsed"),
}
DECLINE_REASONS = {
    common_pb2.DECLINE_REASON_NO_CAPACITY: N_("No capacity"),
    common_pb2.DECLINE_REASON_NOT_ELIGIBLE: N_("Not eligible"),
    common_pb2.DECLINE_REASON_OUT_OF_AREA: N_("Out of area"),
    common_pb2.DECLINE_REASON_LANGUAGE: N_("Language"),
    common_pb2.DECLINE_REASON_CONFLICT_OF_INTEREST: N_("Conflict of interest"),
    common_pb2.DECLINE_REASON_SAFETY_CONCERN: N_("Safety concern"),
    common_pb2.DECLINE_REASON_ACCESSIBILITY: N_("Accessibility"),
    common_pb2.DECLINE_REASON_OTHER: N_("Other reason"),
}
# Health: what a hospital care unit offers and records (health.proto).
CARE_SERVICES = {
    health_pb2.CARE_SERVICE_PEP: N_("HIV post-exposure prophylaxis"),
    health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION: N_("Emergency contraception"),
    health_pb2.CARE_SERVICE_FORENSIC_EXAM: N_("Forensic examination"),
    health_pb2.CARE_SERVICE_CERTIFICATE: N_("Medico-legal certificate"),
}
PEP_OUTCOMES = {
    health_pb2.PEP_OUTCOME_STARTED: N_("Started"),
    health_pb2.PEP_OUTCOME_DECLINED: N_("Declined by her"),
}
CONTRACEPTION_OUTCOMES = {
    health_pb2.CONTRACEPTION_OUTCOME_GIVEN: N_("Given"),
    health_pb2.CONTRACEPTION_OUTCOME_DECLINED: N_("Declined by her"),
}
FORENSIC_OUTCOMES = {
    health_pb2.FORENSIC_OUTCOME_DONE: N_("Done"),
    health_pb2.FORENSIC_OUTCOME_DECLINED: N_("Declined by her"),
}
FOLLOW_UP_VISITS = {
    health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS: N_("Visit at 2 weeks"),
    health_pb2.FOLLOW_UP_VISIT_THREE_MONTHS: N_("Visit at 3 months"),
    health_pb2.FOLLOW_UP_VISIT_SIX_MONTHS: N_("Visit at 6 months"),
}
CARE_OUTCOMES = {
    health_pb2.CARE_OUTCOME_COMPLETED: N_("The care she needed was given"),
    health_pb2.CARE_OUTCOME_STOPPED: N_("She stopped coming or chose to stop"),
    health_pb2.CARE_OUTCOME_TRANSFERRED: N_("Her care continues elsewhere"),
}
# Psychosocial: what an association offers and records (psychosocial.proto).
SUPPORT_KINDS = {
    psychosocial_pb2.SUPPORT_KIND_COUNSELLING: N_("Individual counselling"),
    psychosocial_pb2.SUPPORT_KIND_GROUP_SUPPORT: N_("Support group"),
    psychosocial_pb2.SUPPORT_KIND_SOCIAL_SUPPORT: N_(
        "Social support (papers, housing, family mediation)"
    ),
    psychosocial_pb2.SUPPORT_KIND_CHILD_SUPPORT: N_("Support for her children"),
}
ATTENDANCE = {
    psychosocial_pb2.ATTENDANCE_ATTENDED: N_("She came"),
    psychosocial_pb2.ATTENDANCE_MISSED: N_("She did not come"),
    psychosocial_pb2.ATTENDANCE_CANCELLED: N_("Cancelled beforehand"),
}
SUPPORT_GOALS = {
    psychosocial_pb2.SUPPORT_GOAL_SAFETY_PLANNING: N_("Safety planning"),
    psychosocial_pb2.SUPPORT_GOAL_TRAUMA_RECOVERY: N_("Recovery from trauma"),
    psychosocial_pb2.SUPPORT_GOAL_SELF_ESTEEM: N_("Self-esteem"),
    psychosocial_pb2.SUPPORT_GOAL_PARENTING: N_("Parenting"),
    psychosocial_pb2.SUPPORT_GOAL_SOCIAL_REINTEGRATION: N_("Social reintegration"),
    psychosocial_pb2.SUPPORT_GOAL_ADMINISTRATIVE_PAPERS: N_("Administrative papers"),
    psychosocial_pb2.SUPPORT_GOAL_HOUSING: N_("Housing"),
    psychosocial_pb2.SUPPORT_GOAL_INCOME: N_("Income"),
    psychosocial_pb2.SUPPORT_GOAL_FAMILY_RELATIONS: N_("Family relations"),
    psychosocial_pb2.SUPPORT_GOAL_HEALTH_ACCESS: N_("Access to health care"),
}
GOAL_PROGRESS = {
    psychosocial_pb2.GOAL_PROGRESS_NOT_STARTED: N_("Not started"),
    psychosocial_pb2.GOAL_PROGRESS_IN_PROGRESS: N_("In progress"),
    psychosocial_pb2.GOAL_PROGRESS_ACHIEVED: N_("Achieved"),
    psychosocial_pb2.GOAL_PROGRESS_DROPPED: N_("Set aside by her"),
}
SUPPORT_OUTCOMES = {
    psychosocial_pb2.SUPPORT_OUTCOME_GOALS_MET: N_("Goals met"),
    psychosocial_pb2.SUPPORT_OUTCOME_ENDED_BY_HER: N_("She chose to end the support"),
    psychosocial_pb2.SUPPORT_OUTCOME_NO_CONTACT: N_("No contact with her"),
    psychosocial_pb2.SUPPORT_OUTCOME_TRANSFERRED: N_("Transferred"),
}
NOTIFICATION_KINDS = {
    network_pb2.NOTIFICATION_KIND_NEW_REFERRAL: N_("New referral"),
    network_pb2.NOTIFICATION_KIND_REMINDER: N_("Reminder"),
    network_pb2.NOTIFICATION_KIND_ESCALATION: N_("Escalation"),
    network_pb2.NOTIFICATION_KIND_REROUTED: N_("Referral rerouted"),
    network_pb2.NOTIFICATION_KIND_REGIONAL: N_("Regional escalation"),
    network_pb2.NOTIFICATION_KIND_EXPIRED: N_("Referral expired"),
    network_pb2.NOTIFICATION_KIND_CLINICAL_WINDOW: N_("Clinical window closing"),
    network_pb2.NOTIFICATION_KIND_REFERRAL_DECIDED: N_("Referral answered"),
    network_pb2.NOTIFICATION_KIND_TRANSFER_REQUESTED: N_("Transfer requested"),
    network_pb2.NOTIFICATION_KIND_TRANSFER_ANSWERED: N_("Transfer answered"),
    network_pb2.NOTIFICATION_KIND_BREACH: N_("Protection order breached"),
}
# The journey's timeline codes (workflows: Timeline.note).
TIMELINE = {
    "journey_opened": N_("Journey opened"),
    "stage_changed": N_("Stage changed"),
    "referral_requested": N_("Referral sent"),
    "referral_accepted": N_("Referral accepted"),
    "referral_declined": N_("Referral declined"),
    "declined": N_("Referral declined"),
    "referral_superseded": N_("Referral replaced"),
    "service_started": N_("Service started"),
    "service_completed": N_("Service completed"),
    "service_declined": N_("Service declined by her"),
    "reminder": N_("Reminder sent"),
    "escalated": N_("Escalated to the coordinator"),
    "regional_escalation": N_("Escalated to the region"),
    "expired": N_("Referral expired"),
    "rerouted": N_("Rerouted to another provider"),
    "no_alternative": N_("No other provider available"),
    "no_provider": N_("No provider available"),
    "reassign_requested": N_("Reassignment requested"),
    "reassigned": N_("Reassigned"),
    "reassign_failed": N_("Reassignment failed"),
    "deadline_extended": N_("Deadline extended"),
    "acknowledged": N_("Acknowledged"),
    "undelivered": N_("A notice reached nobody"),
    "consent_granted": N_("Consent given"),
    "consent_withdrawn": N_("Consent withdrawn"),
    "case_purged": N_("Sector asked to erase the file"),
    "follow_up_recorded": N_("Follow-up recorded"),
    "follow_up_missed": N_("Follow-up missed"),
    "clinical_window_opened": N_("Clinical window opened"),
    "clinical_window_met": N_("Clinical window met"),
    "clinical_window_missed": N_("Clinical window missed"),
    "clinical_window_declined": N_("Clinical window closed: she declined the care"),
    "clinical_care_recorded": N_("Care recorded by the care unit"),
    "medical_care_confirmed": N_("Medical care confirmed"),
    "health_visits_scheduled": N_("Medical follow-up visits scheduled"),
    "health_visit_due": N_("Medical follow-up visit due"),
    "health_visit_missed": N_("Medical follow-up visit missed"),
    "health_visits_cancelled": N_("Medical follow-up visits cancelled"),
    "risk_reassessed": N_("Risk reassessed"),
    "closure_requested": N_("Closure requested"),
    "closure_approved": N_("Closure approved"),
    "closure_refused": N_("Closure refused"),
    "reopened": N_("Case reopened"),
    "transfer_requested": N_("Transfer requested"),
    "transfer_accepted": N_("Transfer accepted"),
    "transfer_declined": N_("Transfer declined"),
    "transfer_redirected": N_("Transfer redirected"),
    "transfer_lapsed": N_("Transfer lapsed"),
    "action_failed": N_("An action failed and will be retried"),
    "collaborator_unavailable": N_("A service was unavailable"),
}
OTHER = N_("Other")


def label(table: Mapping[Any, str], code: object) -> str:
    """The label (a message id) of `code`, or `Other`."""
    found = table.get(code)
    return found if found is not None else OTHER
