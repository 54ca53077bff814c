"""The care sectors' part of a referral's page (console.pages.staff serves
the page, its inbox and its accept / decline / start / complete forms):

- health staff (`health_staff`, a hospital care unit): what she needs (the
  care asked for, the incident's time, the time left in each clinical
  window), the care recorded, and one small form for each record, each with
  the time it happened (Morocco's local time, sent in UTC): HIV PEP started
  or declined, emergency contraception given or declined, the forensic
  examination done or declined, the medico-legal certificate with its ITT
  days (0-365), a follow-up visit (2 weeks, 3 months, 6 months after the
  incident, once each); start is "she was seen", complete is how her care
  ended.
- psychosocial staff (`psychosocial_staff`, an association): the sessions
  (a time and whether she came: never a note), the support plan (goals from
  the coded list) and its reviews at follow-ups; the first session she
  attends starts the support, complete is how it ended.

Care given (started, given, done) is never recorded as declined afterwards
(the service refuses it): once given, that item's form is gone; once
declined, only giving it is offered. A visit done is not offered again.

Pure: checks forms and builds the RPC each asks for (`forms.Step`), and what
the templates show; the calls are console.pages.staff's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.datastructures import FormData

from console import i18n, labels
from console.pages.forms import (
    UNKNOWN_CHOICE,
    Choice,
    Choices,
    Collected,
    FormErrors,
    Step,
    from_labels,
    stamp,
    when_of,
)
from console.web import text, texts
from masar.contract import (
    EMERGENCY_CONTRACEPTION_WINDOW,
    FOLLOW_UP_VISIT_AFTER,
    FORENSIC_WINDOW,
    ITT_HEAVIER_ABOVE,
    MAX_ITT_DAYS,
    PEP_WINDOW,
    FollowUpVisit,
)
from masar.v1 import common_pb2, health_pb2, intake_pb2, psychosocial_pb2

N_ = i18n.N_
HEALTH = "health"
PSYCHOSOCIAL = "psychosocial"
SECTORS = (HEALTH, PSYCHOSOCIAL)

CARE = from_labels(labels.CARE_SERVICES, health_pb2.CareService, "CARE_SERVICE_")
PEP_OUTCOMES = from_labels(labels.PEP_OUTCOMES, health_pb2.PepOutcome, "PEP_OUTCOME_")
CONTRACEPTION_OUTCOMES = from_labels(
    labels.CONTRACEPTION_OUTCOMES, health_pb2.ContraceptionOutcome, "CONTRACEPTION_OUTCOME_"
)
FORENSIC_OUTCOMES = from_labels(
    labels.FORENSIC_OUTCOMES, health_pb2.ForensicOutcome, "FORENSIC_OUTCOME_"
)
VISITS = from_labels(labels.FOLLOW_UP_VISITS, health_pb2.FollowUpVisit, "FOLLOW_UP_VISIT_")
CARE_OUTCOMES = from_labels(labels.CARE_OUTCOMES, health_pb2.CareOutcome, "CARE_OUTCOME_")
SUPPORT_KINDS = from_labels(labels.SUPPORT_KINDS, psychosocial_pb2.SupportKind, "SUPPORT_KIND_")
ATTENDANCE = from_labels(labels.ATTENDANCE, psychosocial_pb2.Attendance, "ATTENDANCE_")
GOALS = from_labels(labels.SUPPORT_GOALS, psychosocial_pb2.SupportGoal, "SUPPORT_GOAL_")
PROGRESS = from_labels(labels.GOAL_PROGRESS, psychosocial_pb2.GoalProgress, "GOAL_PROGRESS_")
SUPPORT_OUTCOMES = from_labels(
    labels.SUPPORT_OUTCOMES, psychosocial_pb2.SupportOutcome, "SUPPORT_OUTCOME_"
)
# How a referral of each care sector ends (the `outcome` of the complete form).
OUTCOMES: Mapping[str, Choices] = {HEALTH: CARE_OUTCOMES, PSYCHOSOCIAL: SUPPORT_OUTCOMES}

# --- messages -------------------------------------------------------------------------

SEEN = N_("Recorded: she was seen at the unit.")
COMPLETED = N_("Outcome recorded. The referral is completed.")
CERTIFICATE_DONE = N_("Certificate recorded.")
VISIT_DONE = N_("Follow-up visit recorded.")
SESSION_DONE = N_("Session recorded.")
SUPPORT_STARTED = N_("Session recorded. Her support has started.")
PLAN_DONE = N_("Support plan saved.")
REVIEW_DONE = N_("Review of the plan recorded.")
NO_SUPPORT_START = "psychosocial support starts with the first session she attends"

ITT_RANGE = N_("Enter a whole number of days between 0 and 365.")
CHOOSE_GOALS = N_("Choose at least one goal.")
REVIEW_ONE = N_("Choose the progress of at least one goal.")
_WHOLE = re.compile(r"^[0-9]{1,3}$")


# --- health ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicalStep:
    """One clinical item recorded with an outcome, its window and its form."""

    form: str  # the form's name, the last part of its path
    item: str  # the care code (CARE_SERVICES, the journey's ClinicalItem)
    title: str  # msgid: the item
    window_label: str  # msgid: the item with its window (the case page's words)
    when_label: str  # msgid: the time field's label
    window: timedelta
    outcomes: Choices
    given: str  # the outcome code that is care given
    method: str
    request: Any  # the request message type
    done: str  # msgid: the notice once recorded

    @property
    def outcome_field(self) -> str:
        return f"{self.item}_outcome"

    @property
    def at_field(self) -> str:
        return f"{self.item}_at"

    @property
    def element(self) -> str:
        return self.item.replace("_", "-")


STEPS = (
    ClinicalStep(
        form="pep",
        item="pep",
        title=N_("HIV post-exposure prophylaxis"),
        window_label=labels.CLINICAL_ITEMS[intake_pb2.CLINICAL_ITEM_PEP],
        when_label=N_("When PEP was started or declined"),
        window=PEP_WINDOW,
        outcomes=PEP_OUTCOMES,
        given="started",
        method="RecordPep",
        request=health_pb2.RecordPepRequest,
        done=N_("PEP recorded."),
    ),
    ClinicalStep(
        form="emergency-contraception",
        item="emergency_contraception",
        title=N_("Emergency contraception"),
        window_label=labels.CLINICAL_ITEMS[intake_pb2.CLINICAL_ITEM_EMERGENCY_CONTRACEPTION],
        when_label=N_("When emergency contraception was given or declined"),
        window=EMERGENCY_CONTRACEPTION_WINDOW,
        outcomes=CONTRACEPTION_OUTCOMES,
        given="given",
        method="RecordEmergencyContraception",
        request=health_pb2.RecordEmergencyContraceptionRequest,
        done=N_("Emergency contraception recorded."),
    ),
    ClinicalStep(
        form="forensic-exam",
        item="forensic_exam",
        title=N_("Forensic examination"),
        window_label=N_("Forensic examination (72 h)"),
        when_label=N_("When the examination was done or declined"),
        window=FORENSIC_WINDOW,
        outcomes=FORENSIC_OUTCOMES,
        given="done",
        method="RecordForensicExam",
        request=health_pb2.RecordForensicExamRequest,
        done=N_("Forensic examination recorded."),
    ),
)
STEP_FORMS = {step.form: step for step in STEPS}


@dataclass(frozen=True)
class Window:
    """A clinical window as the unit sees it: when it closes (from the
    incident, when known) and what was recorded."""

    step: ClinicalStep
    closes: datetime | None
    outcome: Choice | None
    at: datetime | None

    def state(self, now: datetime) -> str:
        """recorded, open, closed or unknown (no incident time)."""
        if self.outcome is not None:
            return "recorded"
        if self.closes is None:
            return "unknown"
        return "open" if now < self.closes else "closed"


@dataclass(frozen=True)
class Visit:
    """A follow-up visit: when it falls due (from the incident), when done."""

    choice: Choice
    due: datetime | None
    done_at: datetime | None


@dataclass(frozen=True)
class HealthView:
    """What the health staff's page shows of a care record, and what its
    forms offer."""

    care: list[Choice]  # what the referral asks for (empty: any care)
    incident_at: datetime | None
    windows: list[Window]  # the clinical items asked for or recorded
    recorded: list[Window]  # the clinical items recorded
    step_forms: list[tuple[ClinicalStep, Choices]]  # items still to record, outcomes offered
    certificate_at: datetime | None
    itt_days: int
    itt_heavier: bool  # ITT above 20 days: the heavier charge (Penal Code art. 401)
    visits: list[Visit]
    visits_open: Choices
    max_itt_days: int = MAX_ITT_DAYS


def recorded_step(record: Any, step: ClinicalStep) -> tuple[Choice | None, datetime | None]:
    return step.outcomes.find(int(getattr(record, step.item))), when_of(record, f"{step.item}_at")


def offered(step: ClinicalStep, before: Choice | None) -> Choices:
    """The outcomes the step's form offers: all of them at first, only the
    care given after she declined, none once given."""
    if before is None:
        return step.outcomes
    if before.code == step.given:
        return Choices()
    return step.outcomes.only({step.given})


def health_view(record: Any) -> HealthView:
    """`record`: a health_pb2.CareRecord."""
    asked = [c for c in CARE if c.value in set(record.care)]
    incident = when_of(record, "incident_at")
    windows: list[Window] = []
    recorded: list[Window] = []
    forms: list[tuple[ClinicalStep, Choices]] = []
    for step in STEPS:
        outcome, at = recorded_step(record, step)
        closes = incident + step.window if incident is not None else None
        window = Window(step, closes, outcome, at)
        if outcome is not None:
            recorded.append(window)
        if outcome is not None or any(c.code == step.item for c in asked):
            windows.append(window)
        choices = offered(step, outcome)
        if len(choices):
            forms.append((step, choices))
    done = {int(v.visit): when_of(v, "at") for v in record.follow_up_visits}
    visits = [
        Visit(
            choice,
            incident + FOLLOW_UP_VISIT_AFTER[FollowUpVisit(choice.code)] if incident else None,
            done.get(choice.value),
        )
        for choice in VISITS
    ]
    certificate_at = when_of(record, "certificate_issued_at")
    itt_days = int(record.certificate_itt_days) if certificate_at else 0
    return HealthView(
        care=asked,
        incident_at=incident,
        windows=windows,
        recorded=recorded,
        step_forms=forms,
        certificate_at=certificate_at,
        itt_days=itt_days,
        itt_heavier=certificate_at is not None and itt_days > ITT_HEAVIER_ABOVE,
        visits=visits,
        visits_open=VISITS.only(v.choice.code for v in visits if v.done_at is None),
    )


# --- psychosocial ---------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    held_at: datetime | None
    attendance: str  # msgid
    code: str


@dataclass(frozen=True)
class PlannedGoal:
    choice: Choice
    progress: Choice | None
    reviewed_at: datetime | None


@dataclass(frozen=True)
class SupportView:
    """What the psychosocial staff's page shows of a support file."""

    support: list[Choice]  # kinds of support she asks for (empty: any)
    sessions: list[Session]
    plan: list[PlannedGoal]
    plan_codes: list[str]
    plan_reviewed_at: datetime | None


def support_view(file: Any) -> SupportView:
    """`file`: a psychosocial_pb2.SupportFile."""
    plan = [
        PlannedGoal(
            choice,
            PROGRESS.find(int(g.progress)),
            when_of(g, "reviewed_at"),
        )
        for g in file.plan
        if (choice := GOALS.find(int(g.goal))) is not None
    ]
    return SupportView(
        support=[c for c in SUPPORT_KINDS if c.value in set(file.support)],
        sessions=[
            Session(
                when_of(s, "held_at"),
                ATTENDANCE.label(int(s.attendance)),
                ATTENDANCE.code_for(int(s.attendance)),
            )
            for s in file.sessions
        ],
        plan=plan,
        plan_codes=[g.choice.code for g in plan],
        plan_reviewed_at=when_of(file, "plan_reviewed_at"),
    )


def progress_field(goal: str) -> str:
    """The review form's field of one goal of the plan."""
    return f"progress_{goal}"


# --- what a referral of a care sector offers -------------------------------------------

IN_HAND = frozenset({common_pb2.REFERRAL_STATUS_ACCEPTED, common_pb2.REFERRAL_STATUS_IN_SERVICE})


def view(sector: str, file: Any) -> HealthView | SupportView | None:
    if sector == HEALTH:
        return health_view(file)
    if sector == PSYCHOSOCIAL:
        return support_view(file)
    return None


def actions(sector: str, status: int, file: Any) -> frozenset[str]:
    """The forms a referral of a care sector offers in its status (accept
    and decline are the same for every sector: not here)."""
    if status not in IN_HAND:
        return frozenset()
    found: set[str] = set()
    if sector == HEALTH:
        care = health_view(file)
        found |= {step.form for step, _ in care.step_forms}
        found.add("certificate")
        if len(care.visits_open):
            found.add("visit")
        found.add("start" if status == common_pb2.REFERRAL_STATUS_ACCEPTED else "complete")
    elif sector == PSYCHOSOCIAL:
        found |= {"session", "plan"}
        if len(file.plan):
            found.add("review")
        if status == common_pb2.REFERRAL_STATUS_IN_SERVICE:
            found.add("complete")
    return frozenset(found)


# --- the forms ------------------------------------------------------------------------

# Each record form: its sector (the role that may send it).
FORMS: dict[str, str] = {
    **{step.form: HEALTH for step in STEPS},
    "certificate": HEALTH,
    "visit": HEALTH,
    "session": PSYCHOSOCIAL,
    "plan": PSYCHOSOCIAL,
    "review": PSYCHOSOCIAL,
}
# The fields of each form a service's refusal may name -> the form's field.
FORM_FIELDS: dict[str, dict[str, str]] = {
    **{step.form: {"outcome": step.outcome_field, "at": step.at_field} for step in STEPS},
    "certificate": {"issued_at": "certificate_at", "itt_days": "itt_days"},
    "visit": {"visit": "visit", "at": "visit_at"},
    "session": {"held_at": "session_at", "attendance": "attendance"},
    "plan": {"goals": "goals"},
    "review": {
        "reviewed_at": "review_at",
        "reviews": "reviews",
        "reviews.goal": "reviews",
        "reviews.progress": "reviews",
    },
}
# Each field: its element id on the page and its label (msgid).
FIELDS: dict[str, tuple[str, str]] = {
    **{step.outcome_field: (f"{step.element}-outcome", step.title) for step in STEPS},
    **{step.at_field: (f"{step.element}-at", step.when_label) for step in STEPS},
    "certificate_at": ("certificate-at", N_("When the certificate was issued")),
    "itt_days": ("certificate-itt-days", N_("Days of total incapacity for work (ITT)")),
    "visit": ("visit-visit", N_("Follow-up visit")),
    "visit_at": ("visit-at", N_("When the visit took place")),
    "session_at": ("session-at", N_("When the session was held")),
    "attendance": ("session-attendance", N_("Did she come?")),
    "goals": ("plan-goals", N_("Goals of the support plan")),
    "review_at": ("review-at", N_("When the review took place")),
    "reviews": ("review-goals", N_("Progress of the goals")),
}
# Fields kept as typed when a form comes back: one value each, or several.
KEPT_VALUES = (*FIELDS, *(progress_field(g.code) for g in GOALS))
KEPT_LISTS = ("goals",)


def record_step(name: str, referral_id: str, file: Any, form: FormData, key: str) -> Step:
    """The RPC the record form `name` asks for, every field checked before
    anything is sent (each error named)."""
    builders: dict[str, Callable[[str, Any, FormData, str], Step]] = {
        "certificate": _certificate,
        "visit": _visit,
        "session": _session,
        "plan": _plan,
        "review": _review,
    }
    if name in STEP_FORMS:
        return _clinical(STEP_FORMS[name], referral_id, file, form, key)
    return builders[name](referral_id, file, form, key)


def _clinical(step: ClinicalStep, referral_id: str, record: Any, form: FormData, key: str) -> Step:
    before, _ = recorded_step(record, step)
    check = Collected()
    outcome = check.choice(form, step.outcome_field, offered(step, before))
    at = check.time(form, step.at_field)
    check.check()
    assert outcome is not None and at is not None
    message = step.request(referral_id=referral_id, outcome=outcome.value, idempotency_key=key)
    stamp(message, "at", at)
    return Step(step.method, message, step.done)


def _certificate(referral_id: str, record: Any, form: FormData, key: str) -> Step:
    check = Collected()
    issued_at = check.time(form, "certificate_at")
    raw = text(form, "itt_days")
    days = int(raw) if _WHOLE.match(raw) else -1
    if not 0 <= days <= MAX_ITT_DAYS:
        check.errors["itt_days"] = ITT_RANGE
    check.check()
    assert issued_at is not None
    message = health_pb2.IssueCertificateRequest(
        referral_id=referral_id, itt_days=days, idempotency_key=key
    )
    stamp(message, "issued_at", issued_at)
    return Step("IssueCertificate", message, CERTIFICATE_DONE)


def _visit(referral_id: str, record: Any, form: FormData, key: str) -> Step:
    check = Collected()
    visit = check.choice(form, "visit", health_view(record).visits_open)
    at = check.time(form, "visit_at")
    check.check()
    assert visit is not None and at is not None
    message = health_pb2.RecordFollowUpVisitRequest(
        referral_id=referral_id,
        visit=health_pb2.FollowUpVisit.ValueType(visit.value),
        idempotency_key=key,
    )
    stamp(message, "at", at)
    return Step("RecordFollowUpVisit", message, VISIT_DONE)


def _session(referral_id: str, file: Any, form: FormData, key: str) -> Step:
    check = Collected()
    held_at = check.time(form, "session_at")
    attendance = check.choice(form, "attendance", ATTENDANCE)
    check.check()
    assert held_at is not None and attendance is not None
    message = psychosocial_pb2.RecordSessionRequest(
        referral_id=referral_id,
        attendance=psychosocial_pb2.Attendance.ValueType(attendance.value),
        idempotency_key=key,
    )
    stamp(message, "held_at", held_at)
    return Step("RecordSession", message, SESSION_DONE)


def _plan(referral_id: str, file: Any, form: FormData, key: str) -> Step:
    codes = list(dict.fromkeys(texts(form, "goals")))
    if not codes:
        raise FormErrors({"goals": CHOOSE_GOALS})
    chosen = [GOALS.code(code) for code in codes]
    goals = [c for c in chosen if c is not None]
    if len(goals) != len(chosen):
        raise FormErrors({"goals": UNKNOWN_CHOICE})
    return Step(
        "SetSupportPlan",
        psychosocial_pb2.SetSupportPlanRequest(
            referral_id=referral_id,
            goals=[psychosocial_pb2.SupportGoal.ValueType(g.value) for g in goals],
            idempotency_key=key,
        ),
        PLAN_DONE,
    )


def _review(referral_id: str, file: Any, form: FormData, key: str) -> Step:
    """The progress of the plan's goals the person chose (a goal left at
    "not reviewed this time" is not sent)."""
    check = Collected()
    reviewed_at = check.time(form, "review_at")
    reviews: list[psychosocial_pb2.GoalReview] = []
    for goal in support_view(file).plan:
        code = text(form, progress_field(goal.choice.code))
        if not code:
            continue
        progress = PROGRESS.code(code)
        if progress is None:
            check.errors["reviews"] = UNKNOWN_CHOICE
            continue
        reviews.append(
            psychosocial_pb2.GoalReview(
                goal=psychosocial_pb2.SupportGoal.ValueType(goal.choice.value),
                progress=psychosocial_pb2.GoalProgress.ValueType(progress.value),
            )
        )
    if not reviews and "reviews" not in check.errors:
        check.errors["reviews"] = REVIEW_ONE
    check.check()
    assert reviewed_at is not None
    message = psychosocial_pb2.ReviewSupportPlanRequest(
        referral_id=referral_id, reviews=reviews, idempotency_key=key
    )
    stamp(message, "reviewed_at", reviewed_at)
    return Step("ReviewSupportPlan", message, REVIEW_DONE)


def start_step(referral_id: str, key: str) -> Step:
    """Health: she was seen at the unit."""
    return Step(
        "StartCare", health_pb2.StartCareRequest(referral_id=referral_id, idempotency_key=key), SEEN
    )


def complete_step(sector: str, referral_id: str, outcome: Choice, key: str) -> Step:
    """How her care or support ended (the outcome she, or the person, chose)."""
    if sector == HEALTH:
        return Step(
            "CompleteCare",
            health_pb2.CompleteCareRequest(
                referral_id=referral_id,
                outcome=health_pb2.CareOutcome.ValueType(outcome.value),
                idempotency_key=key,
            ),
            COMPLETED,
        )
    return Step(
        "CompleteSupport",
        psychosocial_pb2.CompleteSupportRequest(
            referral_id=referral_id,
            outcome=psychosocial_pb2.SupportOutcome.ValueType(outcome.value),
            idempotency_key=key,
        ),
        COMPLETED,
    )


def done_message(step: Step, reply: Any) -> str:
    """A session that started her support says so."""
    if step.method == "RecordSession" and reply.delivery != common_pb2.DELIVERY_STATE_UNSPECIFIED:
        return SUPPORT_STARTED
    return step.done


# --- the timeline ---------------------------------------------------------------------


def timeline(sector: str, file: Any) -> Iterable[tuple[datetime | None, str, str]]:
    """(when, what, detail) of the sector's own records (msgids)."""
    if sector == HEALTH:
        yield when_of(file, "started_at"), N_("Seen at the unit"), ""
        for step in STEPS:
            outcome, at = recorded_step(file, step)
            if outcome is not None:
                yield at, step.title, outcome.label
        yield when_of(file, "certificate_issued_at"), N_("Certificate issued"), ""
        for v in file.follow_up_visits:
            yield when_of(v, "at"), N_("Follow-up visit"), VISITS.label(int(v.visit))
        yield (
            when_of(file, "completed_at"),
            N_("Care ended"),
            CARE_OUTCOMES.label(int(file.outcome)) if file.outcome else "",
        )
    elif sector == PSYCHOSOCIAL:
        for s in file.sessions:
            yield when_of(s, "held_at"), N_("Session"), ATTENDANCE.label(int(s.attendance))
        yield when_of(file, "plan_reviewed_at"), N_("Support plan reviewed"), ""
        yield (
            when_of(file, "completed_at"),
            N_("Support ended"),
            SUPPORT_OUTCOMES.label(int(file.outcome)) if file.outcome else "",
        )
