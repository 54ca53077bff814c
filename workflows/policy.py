"""The SLA policy: how long each wait may last, as data.

The journey worker loads the policy once at start (the shipped
`policy.toml`, merged with the file named by MASAR_POLICY_FILE) and hands it
to every journey through the local activity `journey.load_policy` (see
workflows.activities), so that workflow code never reads a file.

A policy file says only what it changes: any of the ladder's keys, any of the
waits (each wait a whole table: its four risk levels) and the retention; the
rest keeps the shipped default, so a file written before a wait was added
(`transfer_accept`, health, psychosocial) keeps working. An optional wait is
switched off with `legal_meeting = "none"` under `[deadlines]`. A malformed
file, or an unknown key, raises `SettingsError` naming the key, e.g.
``deadlines.shelter_accept.high: expected a duration like "90s", "15m", "2h"
or "7d"``.

`python -m workflows.policy [--json]` prints the effective policy of the
environment it runs in (what `masar policy show` shows).

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

from masar.contract import TRANSFER_ACCEPT_DEFAULT_SECONDS, TRANSFER_ACCEPT_WAIT, IssuerKey, Risk
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
HOUR = 3600
DAY = 24 * HOUR
# The care sectors' waits (health, psychosocial): their defaults as in policy.toml.
CARE_DEFAULT_SECONDS: dict[str, dict[str, int]] = {
    "health_accept": {"critical": 2 * HOUR, "high": 2 * HOUR, "medium": 12 * HOUR, "low": DAY},
    "psychosocial_accept": {
        "critical": 3 * DAY,
        "high": 3 * DAY,
        "medium": 7 * DAY,
        "low": 14 * DAY,
    },
    "health_visit": {"critical": 3 * DAY, "high": 3 * DAY, "medium": 7 * DAY, "low": 7 * DAY},
}
DEFAULTED_WAITS: dict[str, dict[str, int]] = {
    TRANSFER_ACCEPT_WAIT: dict(TRANSFER_ACCEPT_DEFAULT_SECONDS),
    **CARE_DEFAULT_SECONDS,
}
RISK_KEYS = tuple(risk.value for risk in Risk)
# Most urgent first, as the policy file and DESIGN.md list them.
SHOWN_RISKS = tuple(reversed(RISK_KEYS))
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
    # The public keys that sign actor assertions (workflows.authentication):
    # not part of the policy file, added by the worker's policy activity at
    # each run's start so that they are recorded in the journey's history.
    issuer_keys: list[IssuerKey] = field(default_factory=list)

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


LADDER_KEYS = ("reminder", "escalate", "expire")
TOP_LEVEL_KEYS = ("ladder", "deadlines", "retention")
# Under [deadlines]: an optional wait with no deadline.
NO_DEADLINE = "none"


def known_waits() -> tuple[str, ...]:
    return REQUIRED_WAITS + OPTIONAL_WAITS + tuple(DEFAULTED_WAITS)


def _table(doc: dict[str, Any], name: str, *, key: str, required: bool = True) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise PolicyError(key, "missing")
        return {}
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


def _wait_deadlines(tables: dict[str, Any], wait: str) -> dict[str, int]:
    """One wait's table: all four risk levels, each a duration."""
    if tables.get(wait) == NO_DEADLINE:
        raise PolicyError(
            f"deadlines.{wait}",
            f'only an optional wait ({", ".join(OPTIONAL_WAITS)}) can be "{NO_DEADLINE}"',
        )
    by_risk = _table(tables, wait, key=f"deadlines.{wait}")
    _unknown(by_risk, RISK_KEYS, prefix=f"deadlines.{wait}.")
    seconds: dict[str, int] = {}
    for risk in SHOWN_RISKS:
        key = f"deadlines.{wait}.{risk}"
        if risk not in by_risk:
            raise PolicyError(key, "missing")
        seconds[risk] = parse_duration(by_risk[risk], key=key)
    return seconds


def parse_policy(text: str, *, base: SlaPolicy | None = None) -> SlaPolicy:
    """Parse and check a policy document; every error names its key.

    Without `base` the document is a whole policy: the ladder and every
    required wait (an optional wait left out has no deadline; a defaulted
    wait left out gets its shipped default). With `base` it says only what
    it changes — any subset of the ladder's keys, of the waits and of the
    retention — and the rest is `base`'s."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message says where (line, column), never what was written.
        raise PolicyError("(file)", f"not valid TOML: {exc}") from None
    _unknown(doc, TOP_LEVEL_KEYS, prefix="")
    whole = base is None

    ladder = _table(doc, "ladder", key="ladder", required=whole)
    _unknown(ladder, LADDER_KEYS, prefix="ladder.")
    fractions = {
        name: (
            _fraction(ladder, name)
            if name in ladder or base is None
            else float(getattr(base, name))
        )
        for name in LADDER_KEYS
    }
    if not fractions["reminder"] < fractions["escalate"]:
        raise PolicyError("ladder.escalate", "must be greater than ladder.reminder")
    if not fractions["escalate"] < fractions["expire"]:
        raise PolicyError("ladder.expire", "must be greater than ladder.escalate")

    tables = _table(doc, "deadlines", key="deadlines", required=whole)
    _unknown(tables, known_waits(), prefix="deadlines.")
    deadlines: dict[str, dict[str, int]] = (
        {} if base is None else {wait: dict(by_risk) for wait, by_risk in base.deadlines.items()}
    )
    for wait in known_waits():
        if wait in tables:
            if tables[wait] == NO_DEADLINE and wait in OPTIONAL_WAITS:
                deadlines.pop(wait, None)
            else:
                deadlines[wait] = _wait_deadlines(tables, wait)
        elif base is not None or wait in OPTIONAL_WAITS:
            continue
        elif wait in DEFAULTED_WAITS:
            deadlines[wait] = dict(DEFAULTED_WAITS[wait])
        else:
            raise PolicyError(f"deadlines.{wait}", "missing")

    retention_seconds = (
        int(DEFAULT_CLOSED_RETENTION.total_seconds())
        if base is None
        else base.closed_retention_seconds
    )
    retention = _table(doc, "retention", key="retention", required=False)
    _unknown(retention, ("closed",), prefix="retention.")
    if "closed" in retention:
        retention_seconds = parse_duration(retention["closed"], key="retention.closed")

    return SlaPolicy(
        reminder=fractions["reminder"],
        escalate=fractions["escalate"],
        expire=fractions["expire"],
        deadlines=deadlines,
        closed_retention_seconds=retention_seconds,
    )


def _read(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise PolicyError("(file)", "cannot be read as UTF-8 text") from None


def load_policy(path: Path | None = None) -> SlaPolicy:
    """The shipped default, with what the file at `path` changes (when given)."""
    shipped = parse_policy(_read(DEFAULT_POLICY_FILE))
    if path is None:
        return shipped
    return parse_policy(_read(path), base=shipped)


# --- showing the effective policy ----------------------------------------------------------


def format_duration(seconds: int) -> str:
    """Seconds in the file's notation: days from a week up, else the largest
    of hours, minutes and seconds that divides them ("72h", "7d", "90s")."""
    if seconds % 86400 == 0 and seconds >= 7 * 86400:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def changed_keys(policy: SlaPolicy, base: SlaPolicy) -> list[str]:
    """The dotted keys where `policy` differs from `base`."""
    changed = [
        f"ladder.{name}" for name in LADDER_KEYS if getattr(policy, name) != getattr(base, name)
    ]
    for wait in known_waits():
        if policy.deadlines.get(wait) != base.deadlines.get(wait):
            changed.append(f"deadlines.{wait}")
    if policy.closed_retention_seconds != base.closed_retention_seconds:
        changed.append("retention.closed")
    return changed


def policy_document(policy: SlaPolicy, *, source: Path | None) -> dict[str, Any]:
    """The effective policy as one JSON-able document, in the file's notation:
    `source` is the file merged over the shipped default (None: the default
    alone); `changed` lists the keys whose value is not the shipped one."""
    return {
        "source": str(source) if source is not None else None,
        "default_file": str(DEFAULT_POLICY_FILE),
        "ladder": {name: getattr(policy, name) for name in LADDER_KEYS},
        "deadlines": {
            wait: {risk: format_duration(by_risk[risk]) for risk in SHOWN_RISKS}
            for wait in known_waits()
            if (by_risk := policy.deadlines.get(wait)) is not None
        },
        "retention": {"closed": format_duration(policy.closed_retention_seconds)},
        "changed": changed_keys(policy, load_policy()),
    }


def policy_text(doc: dict[str, Any]) -> str:
    """`policy_document` for people: the ladder, then one row per wait; '*'
    marks a value that is not the shipped default."""
    changed = set(doc["changed"])
    source = doc["source"] or f"{doc['default_file']} (shipped default)"
    lines = [f"SLA policy: {source}", ""]
    ladder = doc["ladder"]
    lines.append(
        "ladder (fractions of a deadline): "
        + ", ".join(
            f"{name} {ladder[name]:g}" + ("*" if f"ladder.{name}" in changed else "")
            for name in LADDER_KEYS
        )
    )
    lines.append("")
    width = max(len(w) for w in known_waits()) + 1
    lines.append(
        "  " + "wait".ljust(width) + "".join(risk.ljust(10) for risk in SHOWN_RISKS).rstrip()
    )
    for wait in known_waits():
        mark = "*" if f"deadlines.{wait}" in changed else " "
        by_risk = doc["deadlines"].get(wait)
        cells = (
            "".join(by_risk[risk].ljust(10) for risk in SHOWN_RISKS).rstrip()
            if by_risk
            else "(no deadline)"
        )
        lines.append(f"{mark} {wait.ljust(width)}{cells}")
    retention_mark = "*" if "retention.closed" in changed else ""
    lines += [
        "",
        f"closed journeys kept for {doc['retention']['closed']}{retention_mark}",
        "* = set by the policy file (the rest is the shipped default)"
        if changed
        else "(every value is the shipped default)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m workflows.policy [--json]`: the effective policy of this
    environment (MASAR_POLICY_FILE merged over the shipped default), as the
    journey worker would load it; a bad file is one line naming the key."""
    import argparse
    import json
    import sys

    from masar.platform.settings import WorkerSettings

    parser = argparse.ArgumentParser(
        prog="masar policy show", description="The effective SLA policy."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        source = WorkerSettings.from_env().policy_file
        doc = policy_document(load_policy(source), source=source)
    except SettingsError as exc:
        where = "MASAR_POLICY_FILE" if isinstance(exc, PolicyError) else "configuration error"
        print(f"masar policy show: {where}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.json else policy_text(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
