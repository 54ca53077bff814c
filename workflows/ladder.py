"""The escalation ladder: when each rung of a wait is due.

A wait starts at T0 with a deadline D taken from the SLA policy (by risk). Its
rungs are due at T0 + reminder·D (level 1), T0 + escalate·D (level 2) and
T0 + expire·D (level 3); a coordinator's extension adds to D. A clinical
window is an absolute wait: D is chosen so that the last rung lands on the
window's closing time (reminder and coordinator escalation come before it),
and extensions never move that closing time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from masar.contract import LEVEL_COORDINATOR, LEVEL_REGIONAL, LEVEL_REMINDER, Risk
from workflows.policy import SlaPolicy
from workflows.state import LadderWait

RUNGS = (LEVEL_REMINDER, LEVEL_COORDINATOR, LEVEL_REGIONAL)
# The timeline event of each rung (a missed follow-up and a closed clinical
# window have their own at some rungs).
RUNG_EVENTS = {
    LEVEL_REMINDER: "reminder",
    LEVEL_COORDINATOR: "escalated",
    LEVEL_REGIONAL: "regional_escalation",
}


@dataclass(frozen=True)
class EscalationLadder:
    reminder: float
    escalate: float
    expire: float

    @classmethod
    def from_policy(cls, policy: SlaPolicy) -> EscalationLadder:
        return cls(reminder=policy.reminder, escalate=policy.escalate, expire=policy.expire)

    def fraction(self, level: int) -> float:
        return {
            LEVEL_REMINDER: self.reminder,
            LEVEL_COORDINATOR: self.escalate,
            LEVEL_REGIONAL: self.expire,
        }[level]

    def wait(self, name: str, started_at: datetime, deadline: timedelta) -> LadderWait:
        return LadderWait(
            name=name, started_at=started_at, deadline_seconds=deadline.total_seconds()
        )

    def absolute_wait(self, name: str, started_at: datetime, closes_at: datetime) -> LadderWait:
        """A wait whose last rung falls on `closes_at`."""
        span = max((closes_at - started_at).total_seconds(), 0.0)
        return LadderWait(
            name=name,
            started_at=started_at,
            deadline_seconds=span / self.expire,
            absolute_deadline=closes_at,
        )

    def rung_at(self, wait: LadderWait, level: int) -> datetime:
        if wait.absolute_deadline is not None and level == LEVEL_REGIONAL:
            return wait.absolute_deadline
        seconds = self.fraction(level) * (wait.deadline_seconds + wait.extension_seconds)
        due = wait.started_at + timedelta(seconds=seconds)
        if wait.absolute_deadline is not None:
            return min(due, wait.absolute_deadline)
        return due

    def deadline(self, wait: LadderWait) -> datetime:
        """The wait's deadline as coordinators see it: the escalation rung, or
        the closing time of an absolute wait."""
        if wait.absolute_deadline is not None:
            return wait.absolute_deadline
        return self.rung_at(wait, LEVEL_COORDINATOR)

    def next_rung(self, wait: LadderWait) -> tuple[int, datetime] | None:
        if wait.level >= LEVEL_REGIONAL:
            return None
        level = wait.level + 1
        return level, self.rung_at(wait, level)

    def due_rungs(self, wait: LadderWait, now: datetime) -> list[int]:
        """Rungs not yet climbed whose time has come, lowest first."""
        return [level for level in RUNGS if level > wait.level and self.rung_at(wait, level) <= now]


@dataclass(frozen=True)
class SlaTerms:
    """The SLA terms a wait opens under: the policy at the case's current risk.

    `squeeze_until`: a time no rung may fall after (the closing of a clinical
    window, for the medical referral): a wait that would climb past it gets
    the shorter deadline whose last rung falls on it."""

    policy: SlaPolicy
    risk: Risk
    squeeze_until: datetime | None = None

    @property
    def ladder(self) -> EscalationLadder:
        return EscalationLadder.from_policy(self.policy)

    def deadline(self, name: str) -> timedelta | None:
        return self.policy.deadline(name, self.risk)

    def deadline_from(self, name: str, started_at: datetime) -> timedelta | None:
        """The deadline of a wait that started at `started_at`, squeezed."""
        deadline = self.deadline(name)
        until = self.squeeze_until
        if deadline is None or until is None or until <= started_at:
            return deadline
        return min(deadline, (until - started_at) / self.policy.expire)

    def wait(self, name: str, now: datetime) -> LadderWait | None:
        """A new wait under the ladder, or None when the policy has no deadline for it."""
        deadline = self.deadline_from(name, now)
        if deadline is None:
            return None
        return self.ladder.wait(name, now, deadline)
