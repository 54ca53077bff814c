"""The SLA policy file: shipped defaults, durations, and errors that name the key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from masar.contract import Risk
from masar.platform.settings import SettingsError
from workflows.policy import (
    DEFAULT_POLICY_FILE,
    PolicyError,
    changed_keys,
    format_duration,
    load_policy,
    parse_duration,
    parse_policy,
    policy_document,
    policy_text,
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
        # The care sectors (issue 15): ours, as DESIGN.md lists them.
        "health_accept": ("2h", "2h", "12h", "24h"),
        "psychosocial_accept": ("72h", "72h", "7d", "14d"),
        "health_visit": ("3d", "3d", "7d", "7d"),
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


def test_a_whole_document_without_optional_waits_has_no_deadline_for_them() -> None:
    start = VALID.index("[deadlines.legal_meeting]")
    end = VALID.index("[retention]")
    policy = parse_policy(VALID[:start] + VALID[end:])
    assert policy.deadline("legal_meeting", Risk.HIGH) is None
    assert policy.deadline("employment_start", Risk.LOW) is None
    assert policy.deadline("legal_accept", Risk.LOW) == timedelta(days=7)


def test_a_file_written_before_the_care_waits_gets_their_defaults() -> None:
    start = VALID.index("[deadlines.health_accept]")
    end = VALID.index("# Interval between follow-up contacts")
    older = VALID[:start] + VALID[end:]
    assert "health_accept" not in older and "psychosocial_accept" not in older
    policy = parse_policy(older)
    assert policy == load_policy()
    assert policy.deadline("health_accept", Risk.MEDIUM) == timedelta(hours=12)
    assert policy.deadline("psychosocial_accept", Risk.LOW) == timedelta(days=14)
    assert policy.deadline("health_visit", Risk.HIGH) == timedelta(days=3)


PARTIAL = """
[ladder]
reminder = 0.25
expire = 3.0

[deadlines.shelter_accept]
critical = "1h"
high = "90m"
medium = "12h"
low = "48h"
"""


def test_a_policy_file_says_only_what_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(PARTIAL)
    shipped = load_policy()
    policy = load_policy(path)
    assert (policy.reminder, policy.escalate, policy.expire) == (0.25, 1.0, 3.0)
    assert policy.deadline("shelter_accept", Risk.HIGH) == timedelta(minutes=90)
    assert policy.deadline("shelter_accept", Risk.LOW) == timedelta(hours=48)
    # Every other wait, optional ones and the retention keep the shipped default.
    for wait in set(shipped.deadlines) - {"shelter_accept"}:
        assert policy.deadlines[wait] == shipped.deadlines[wait], wait
    assert policy.has("legal_meeting") and policy.has("transfer_accept")
    assert policy.closed_retention == shipped.closed_retention
    assert changed_keys(policy, shipped) == [
        "ladder.reminder",
        "ladder.expire",
        "deadlines.shelter_accept",
    ]


def test_an_empty_policy_file_is_the_shipped_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("# nothing changed\n")
    assert load_policy(path) == load_policy()


def test_a_complete_file_replaces_every_value(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(VALID.replace('low = "72h"', 'low = "96h"', 1))
    policy = load_policy(path)
    assert policy.deadline("shelter_accept", Risk.LOW) == timedelta(hours=96)
    assert changed_keys(policy, load_policy()) == ["deadlines.shelter_accept"]


def test_an_optional_wait_is_switched_off_with_none(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[deadlines]\nlegal_meeting = "none"\n')
    policy = load_policy(path)
    assert policy.deadline("legal_meeting", Risk.HIGH) is None
    assert policy.has("employment_start")
    path.write_text('[deadlines]\nshelter_accept = "none"\n')
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.key == "deadlines.shelter_accept"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[ladder]\nsnooze = 0.2\n", "ladder.snooze"),
        ('[deadlines.follow_ups]\nhigh = "1d"\n', "deadlines.follow_ups"),
        ("[ladder]\nreminder = 1.5\n", "ladder.escalate"),
        ("[ladder]\nexpire = 0.75\n", "ladder.expire"),
        ('[deadlines.shelter_accept]\nhigh = "1h"\n', "deadlines.shelter_accept.critical"),
        (
            '[deadlines.legal_accept]\ncritical = "1h"\nhigh = "1h"\nmedium = "1h"\n'
            'low = "1h"\nextreme = "1h"\n',
            "deadlines.legal_accept.extreme",
        ),
        ("colour = 1\n", "colour"),
        ('[retention]\nopen = "1d"\n', "retention.open"),
        ('[deadlines]\nshelter_accept = "2h"\n', "deadlines.shelter_accept"),
    ],
)
def test_a_partial_file_still_names_a_bad_or_unknown_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.key == key, str(err.value)
    assert str(err.value).startswith(f"{key}: ")


def test_the_effective_policy_as_a_document(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(PARTIAL)
    doc = policy_document(load_policy(path), source=path)
    assert doc["source"] == str(path)
    assert doc["ladder"] == {"reminder": 0.25, "escalate": 1.0, "expire": 3.0}
    assert doc["deadlines"]["shelter_accept"] == {
        "critical": "1h",
        "high": "90m",
        "medium": "12h",
        "low": "48h",
    }
    assert doc["deadlines"]["legal_accept"] == {
        "critical": "24h",
        "high": "24h",
        "medium": "72h",
        "low": "7d",
    }
    assert doc["changed"] == ["ladder.reminder", "ladder.expire", "deadlines.shelter_accept"]
    # The document reads back as the same policy.
    lines = ["[ladder]", *(f"{k} = {v}" for k, v in doc["ladder"].items())]
    for wait, by_risk in doc["deadlines"].items():
        lines.append(f"[deadlines.{wait}]")
        lines += [f'{risk} = "{value}"' for risk, value in by_risk.items()]
    lines += ["[retention]", f'closed = "{doc["retention"]["closed"]}"']
    assert parse_policy("\n".join(lines)) == load_policy(path)
    text = policy_text(doc)
    assert re.search(r"^\* shelter_accept +1h ", text, re.MULTILINE) and "reminder 0.25*" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "90s"),
        (900, "15m"),
        (7200, "2h"),
        (259200, "72h"),
        (604800, "7d"),
        (86400 * 365, "365d"),
    ],
)
def test_durations_are_shown_as_the_file_writes_them(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, key="k") == seconds


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
