"""The SLA policy: how long each wait may last, as data.

The journey worker loads the policy once at start (the shipped
`policy.toml`, or the file named by MASAR_POLICY_FILE, which replaces it as a
whole) and hands it to every journey through the local activity
`journey.load_policy` (see workflows.activities), so that workflow code never
reads a file. A wait added later (`transfer_accept`) keeps its shipped default
when a file leaves it out. A malformed file raises `SettingsError` naming the key, e.g.
``deadlines.shelter_accept.high: expected a duration like "90s", "15m", "2h"
or "7d"``.

`SlaPolicy` is a plain dataclass (standard library only): it travels in the
local activity's result and in the journey's carried state.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from masar.contract import TRANSFER_ACCEPT_DEFAULT_SECONDS, TRANSFER_ACCEPT_WAIT, Risk
from masar.platform.settings import SettingsError

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")
# The local activity through which a journey receives its worker's policy.
LOAD_POLICY_ACTIVITY = "journey.load_policy"

# Waits every policy defines, and waits a policy may leave out (the journey then
# waits for that milestone without a deadline).
REQUIRED_WAITS = (
    "shelter_accept",
    "shelter_checkin",
    "legal_accept",
    "employment_accept",
    "follow_up",
)
OPTIONAL_WAITS = ("legal_meeting", "employment_start")
# Waits added after policy files were first written: a file that leaves one out
# gets its shipped default (seconds per risk), so older files keep working.
DEFAULTED_WAITS: dict[str, dict[str, int]] = {
    TRANSFER_ACCEPT_WAIT: dict(TRANSFER_ACCEPT_DEFAULT_SECONDS),
}
RISK_KEYS = tuple(risk.value for risk in Risk)
DEFAULT_CLOSED_RETENTION = timedelta(days=365)

_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = 'expected a duration like "90s", "15m", "2h" or "7d"'


class PolicyError(SettingsError):
    """The policy file is malformed; `key` names where (dotted path)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass
class SlaPolicy:
    """Ladder fractions and, per wait and risk level, a deadline in seconds."""

    reminder: float
    escalate: float
    expire: float
    # wait name -> risk value -> seconds
    deadlines: dict[str, dict[str, int]] = field(default_factory=dict)
    closed_retention_seconds: int = int(DEFAULT_CLOSED_RETENTION.total_seconds())

    def deadline(self, wait: str, risk: Risk) -> timedelta | None:
        """The deadline of `wait` at `risk`, or None when the policy has none."""
        by_risk = self.deadlines.get(wait)
        if by_risk is None:
            return None
        return timedelta(seconds=by_risk[risk.value])

    def has(self, wait: str) -> bool:
        return wait in self.deadlines

    @property
    def closed_retention(self) -> timedelta:
        return timedelta(seconds=self.closed_retention_seconds)


def parse_duration(value: object, *, key: str) -> int:
    """`"90s"`, `"15m"`, `"2h"`, `"7d"` -> seconds (a positive integer)."""
    if not isinstance(value, str):
        raise PolicyError(key, _DURATION_HINT)
    match = _DURATION.match(value.strip())
    if match is None:
        raise PolicyError(key, _DURATION_HINT)
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise PolicyError(key, "must be longer than zero")
    return seconds


def _table(doc: dict[str, Any], name: str, *, key: str) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        raise PolicyError(key, "missing")
    if not isinstance(value, dict):
        raise PolicyError(key, "must be a table")
    return value


def _fraction(ladder: dict[str, Any], name: str) -> float:
    key = f"ladder.{name}"
    if name not in ladder:
        raise PolicyError(key, "missing")
    value = ladder[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(key, "must be a number")
    if value <= 0:
        raise PolicyError(key, "must be greater than zero")
    return float(value)


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], *, prefix: str) -> None:
    for name in table:
        if name not in allowed:
            raise PolicyError(f"{prefix}{name}", "unknown key")


def parse_policy(text: str) -> SlaPolicy:
    """Parse and check a policy document; every error names its key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message says where (line, column), never what was written.
        raise PolicyError("(file)", f"not valid TOML: {exc}") from None
    _unknown(doc, ("ladder", "deadlines", "retention"), prefix="")

    ladder = _table(doc, "ladder", key="ladder")
    _unknown(ladder, ("reminder", "escalate", "expire"), prefix="ladder.")
    reminder = _fraction(ladder, "reminder")
    escalate = _fraction(ladder, "escalate")
    expire = _fraction(ladder, "expire")
    if not reminder < escalate:
        raise PolicyError("ladder.escalate", "must be greater than ladder.reminder")
    if not escalate < expire:
        raise PolicyError("ladder.expire", "must be greater than ladder.escalate")

    tables = _table(doc, "deadlines", key="deadlines")
    known = REQUIRED_WAITS + OPTIONAL_WAITS + tuple(DEFAULTED_WAITS)
    _unknown(tables, known, prefix="deadlines.")
    deadlines: dict[str, dict[str, int]] = {}
    for wait in known:
        if wait not in tables and wait in OPTIONAL_WAITS:
            continue
        if wait not in tables and wait in DEFAULTED_WAITS:
            deadlines[wait] = dict(DEFAULTED_WAITS[wait])
            continue
        by_risk = _table(tables, wait, key=f"deadlines.{wait}")
        _unknown(by_risk, RISK_KEYS, prefix=f"deadlines.{wait}.")
        deadlines[wait] = {}
        for risk in RISK_KEYS:
            key = f"deadlines.{wait}.{risk}"
            if risk not in by_risk:
                raise PolicyError(key, "missing")
            deadlines[wait][risk] = parse_duration(by_risk[risk], key=key)

    retention_seconds = int(DEFAULT_CLOSED_RETENTION.total_seconds())
    if "retention" in doc:
        retention = _table(doc, "retention", key="retention")
        _unknown(retention, ("closed",), prefix="retention.")
        if "closed" in retention:
            retention_seconds = parse_duration(retention["closed"], key="retention.closed")

    return SlaPolicy(
        reminder=reminder,
        escalate=escalate,
        expire=expire,
        deadlines=deadlines,
        closed_retention_seconds=retention_seconds,
    )


def load_policy(path: Path | None = None) -> SlaPolicy:
    """The policy in `path`, or the shipped default when `path` is None."""
    source = path or DEFAULT_POLICY_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise PolicyError("(file)", "cannot be read as UTF-8 text") from None
    return parse_policy(text)
