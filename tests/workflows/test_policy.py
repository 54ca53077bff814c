"""The SLA policy file: shipped defaults, durations, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from masar.contract import Risk
from masar.platform.settings import SettingsError
from workflows.policy import (
    DEFAULT_POLICY_FILE,
    PolicyError,
    load_policy,
    parse_duration,
    parse_policy,
)

VALID = DEFAULT_POLICY_FILE.read_text()


def test_shipped_policy_has_the_design_values() -> None:
    policy = load_policy()
    assert (policy.reminder, policy.escalate, policy.expire) == (0.5, 1.0, 2.0)
    expected = {
        "shelter_accept": ("2h", "2h", "24h", "72h"),
        "shelter_checkin": ("12h", "12h", "48h", "72h"),
        "legal_accept": ("24h", "24h", "72h", "7d"),
        "employment_accept": ("7d", "7d", "14d", "14d"),
        "follow_up": ("14d", "14d", "30d", "30d"),
    }
    for wait, values in expected.items():
        for risk, value in zip(
            (Risk.CRITICAL, Risk.HIGH, Risk.MEDIUM, Risk.LOW), values, strict=True
        ):
            assert policy.deadline(wait, risk) == timedelta(
                seconds=parse_duration(value, key="x")
            ), (wait, risk)
    # Optional waits ship in the default; retention defaults to a year.
    assert policy.has("legal_meeting") and policy.has("employment_start")
    assert policy.closed_retention == timedelta(days=365)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), (" 3h ", 10800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text, key="k") == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2 h", "1.5h", "-2h", "0s", "2w", "2H"])
def test_malformed_durations_name_the_key(text: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_duration(text, key="deadlines.shelter_accept.high")
    assert str(err.value).startswith("deadlines.shelter_accept.high: ")
    assert err.value.key == "deadlines.shelter_accept.high"


def test_a_file_without_optional_waits_has_no_deadline_for_them(tmp_path: Path) -> None:
    start = VALID.index("[deadlines.legal_meeting]")
    end = VALID.index("[retention]")
    text = VALID[:start] + VALID[end:]
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.deadline("legal_meeting", Risk.HIGH) is None
    assert policy.deadline("employment_start", Risk.LOW) is None
    assert policy.deadline("legal_accept", Risk.LOW) == timedelta(days=7)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (('high = "2h"', 'high = "two hours"'), "deadlines.shelter_accept.high"),
        (('high = "2h"', "high = 7200"), "deadlines.shelter_accept.high"),
        (('high = "2h"\n', ""), "deadlines.shelter_accept.high"),
        (("[deadlines.follow_up]", "[deadlines.follow_ups]"), "deadlines.follow_ups"),
        (("reminder = 0.5", "reminder = 1.5"), "ladder.escalate"),
        (("expire = 2.0", "expire = 1.0"), "ladder.expire"),
        (("reminder = 0.5", 'reminder = "half"'), "ladder.reminder"),
        (("reminder = 0.5", "reminder = 0"), "ladder.reminder"),
        (("[ladder]", "[ladder]\nsnooze = 0.2"), "ladder.snooze"),
        (('closed = "365d"', 'closed = "forever"'), "retention.closed"),
        (("[ladder]", "colour = 1\n[ladder]"), "colour"),
        (('low = "72h"', 'low = "72h"\nextreme = "1h"'), "deadlines.shelter_accept.extreme"),
    ],
)
def test_malformed_files_name_the_key(edit: tuple[str, str], key: str) -> None:
    old, new = edit
    assert old in VALID
    with pytest.raises(SettingsError) as err:
        parse_policy(VALID.replace(old, new, 1))
    assert isinstance(err.value, PolicyError)
    assert err.value.key == key, str(err.value)
    assert str(err.value).startswith(f"{key}: ")


def test_missing_sections_and_waits() -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy("[deadlines]\n")
    assert err.value.key == "ladder"
    without_checkin = VALID.replace("[deadlines.shelter_checkin]", "[deadlines.legal_meeting_x]")
    with pytest.raises(PolicyError) as err:
        parse_policy(without_checkin)
    assert err.value.key == "deadlines.legal_meeting_x"


def test_not_toml_at_all() -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy("[ladder\nreminder = ")
    assert "not valid TOML" in str(err.value)
    assert "line" in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError):
        load_policy(path)
