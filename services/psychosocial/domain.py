"""Psychosocial rules: support providers (associations), which one fits a
referral, sessions, the support plan and how support ends.

No protobuf and no SQL here. A provider has no capacity to reserve; it fits
when it offers every kind of support she asks for and speaks one of her
languages. A session is a date and an attendance, never a note; the first
session she attends on an accepted referral starts the support (the
journey hears of it). The plan is a list of goals from a fixed vocabulary
(contract SUPPORT_GOALS), each with its progress at the last review.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from masar.contract import SUPPORT_GOALS, SUPPORT_KINDS, PsychosocialNeeds
from masar.platform.errors import InvalidArgument
from masar.referral import ReferralRecord

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
CLOCK_SKEW = timedelta(minutes=5)
MAX_SESSIONS = 500


class Attendance(StrEnum):
    ATTENDED = "attended"
    MISSED = "missed"
    CANCELLED = "cancelled"


class GoalProgress(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    ACHIEVED = "achieved"
    DROPPED = "dropped"


class SupportOutcome(StrEnum):
    GOALS_MET = "goals_met"
    ENDED_BY_HER = "ended_by_her"
    NO_CONTACT = "no_contact"
    TRANSFERRED = "transferred"


# Milestone details sent to the journey when support ends (structured codes).
SUPPORT_DETAILS: dict[SupportOutcome, str] = {
    outcome: f"support_{outcome.value}" for outcome in SupportOutcome
}


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    name: str
    region: str
    kinds: frozenset[str]
    languages: frozenset[str]
    organisation_id: str  # the organisation of the network (an association) running it


@dataclass(frozen=True, kw_only=True)
class SupportProvider:
    provider_id: str
    name: str
    region: str
    kinds: frozenset[str]
    languages: frozenset[str]
    created_at: datetime
    organisation_id: str | None = None

    def fits(self, needs: PsychosocialNeeds) -> bool:
        if not set(needs.support) <= self.kinds:
            return False
        return not (needs.languages and self.languages) or bool(
            self.languages & set(needs.languages)
        )


@dataclass(frozen=True)
class Session:
    held_at: datetime
    attendance: Attendance


@dataclass(frozen=True)
class PlanGoal:
    goal: str
    progress: GoalProgress = GoalProgress.NOT_STARTED
    reviewed_at: datetime | None = None


@dataclass(frozen=True)
class SupportFile:
    """A referral with the provider's own record: sessions and plan."""

    referral: ReferralRecord
    support: list[str]
    sessions: list[Session]
    plan: list[PlanGoal]
    plan_reviewed_at: datetime | None
    outcome: SupportOutcome | None
    completed_at: datetime | None


def rank_providers(
    providers: Iterable[SupportProvider],
    needs: PsychosocialNeeds,
    *,
    region: str,
    exclude: Iterable[str],
) -> list[SupportProvider]:
    """Providers that fit, same region first, then by id (deterministic)."""
    excluded = set(exclude)
    fitting = [p for p in providers if p.provider_id not in excluded and p.fits(needs)]
    return sorted(fitting, key=lambda p: (p.region != region, p.provider_id))


def check_languages(tags: Iterable[str], field: str) -> frozenset[str]:
    result = frozenset(tags)
    for tag in result:
        if not _LANGUAGE.match(tag):
            raise InvalidArgument(field, "must be lowercase language tags such as ary, ar, fr")
    return result


def _check_codes(codes: Iterable[str], known: Sequence[str], field: str, what: str) -> list[str]:
    result: list[str] = []
    for code in codes:
        if code not in known:
            raise InvalidArgument(field, f"is not a known {what}")
        if code in result:
            raise InvalidArgument(field, f"names a {what} twice")
        result.append(code)
    return result


def check_kinds(codes: Iterable[str], field: str) -> list[str]:
    return _check_codes(codes, SUPPORT_KINDS, field, "kind of support")


def check_goals(codes: Iterable[str], field: str = "goals") -> list[str]:
    goals = _check_codes(codes, SUPPORT_GOALS, field, "support goal")
    if not goals:
        raise InvalidArgument(field, "at least one is required")
    return goals


def check_needs(needs: PsychosocialNeeds, prefix: str = "needs.") -> PsychosocialNeeds:
    check_kinds(needs.support, f"{prefix}support")
    check_languages(needs.languages, f"{prefix}languages")
    return needs


def check_spec(spec: ProviderSpec) -> ProviderSpec:
    if not spec.kinds:
        raise InvalidArgument("kinds", "at least one is required")
    return spec


def check_past(at: datetime, field: str, *, now: datetime) -> datetime:
    if at > now + CLOCK_SKEW:
        raise InvalidArgument(field, "is in the future")
    return at


def add_session(sessions: list[Session], session: Session) -> list[Session]:
    """The sessions with one more, oldest first."""
    if len(sessions) >= MAX_SESSIONS:
        raise InvalidArgument("held_at", f"a referral keeps at most {MAX_SESSIONS} sessions")
    return sorted([*sessions, session], key=lambda s: s.held_at)


def starts_support(sessions: Sequence[Session], session: Session) -> bool:
    """The first session she attends starts the support."""
    return session.attendance is Attendance.ATTENDED and not any(
        s.attendance is Attendance.ATTENDED for s in sessions
    )


def set_plan(plan: Sequence[PlanGoal], goals: Sequence[str]) -> list[PlanGoal]:
    """The plan with `goals`: a goal kept keeps its progress, a new one starts."""
    kept = {g.goal: g for g in plan}
    return [kept.get(goal, PlanGoal(goal)) for goal in goals]


def review_plan(
    plan: Sequence[PlanGoal], reviews: Sequence[tuple[str, GoalProgress]], at: datetime
) -> list[PlanGoal]:
    """The plan after a review of some of its goals (each a goal of the plan, once)."""
    if not plan:
        raise InvalidArgument("reviews", "the referral has no support plan yet")
    if not reviews:
        raise InvalidArgument("reviews", "at least one is required")
    seen: dict[str, GoalProgress] = {}
    in_plan = {g.goal for g in plan}
    for goal, progress in reviews:
        if goal not in in_plan:
            raise InvalidArgument("reviews.goal", "is not a goal of the plan")
        if goal in seen:
            raise InvalidArgument("reviews.goal", "names a goal twice")
        seen[goal] = progress
    return [
        replace(g, progress=seen[g.goal], reviewed_at=at) if g.goal in seen else g for g in plan
    ]
