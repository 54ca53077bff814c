"""Rung times of the escalation ladder (pure arithmetic, no Temporal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflows.ladder import EscalationLadder
from workflows.policy import load_policy

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LADDER = EscalationLadder.from_policy(load_policy())


def test_rungs_are_fractions_of_the_deadline() -> None:
    wait = LADDER.wait("shelter_accept", T0, timedelta(hours=2))
    assert [LADDER.rung_at(wait, level) for level in (1, 2, 3)] == [
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
        T0 + timedelta(hours=4),
    ]
    assert LADDER.deadline(wait) == T0 + timedelta(hours=2)
    assert LADDER.next_rung(wait) == (1, T0 + timedelta(hours=1))
    assert LADDER.due_rungs(wait, T0 + timedelta(hours=2, minutes=1)) == [1, 2]
    wait.level = 3
    assert LADDER.next_rung(wait) is None


def test_an_extension_moves_every_rung() -> None:
    wait = LADDER.wait("shelter_accept", T0, timedelta(hours=2))
    wait.extension_seconds = 3600
    assert LADDER.rung_at(wait, 1) == T0 + timedelta(hours=1, minutes=30)
    assert LADDER.deadline(wait) == T0 + timedelta(hours=3)


def test_an_absolute_wait_expires_on_its_closing_time() -> None:
    closes = T0 + timedelta(hours=62)
    wait = LADDER.absolute_wait("clinical:pep", T0, closes)
    assert LADDER.rung_at(wait, 1) == T0 + timedelta(hours=15, minutes=30)
    assert LADDER.rung_at(wait, 2) == T0 + timedelta(hours=31)
    assert LADDER.rung_at(wait, 3) == closes
    # An extension delays the reminders, never the closing of the window.
    wait.extension_seconds = timedelta(hours=100).total_seconds()
    assert LADDER.rung_at(wait, 2) == closes
    assert LADDER.rung_at(wait, 3) == closes
    assert LADDER.deadline(wait) == closes
