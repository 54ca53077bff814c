"""`masar policy show`: the effective SLA policy — MASAR_POLICY_FILE merged
over the shipped default — as the journey worker would load it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT, stack_env

PARTIAL = """
[ladder]
reminder = 0.25

[deadlines.shelter_accept]
critical = "1h"
high = "1h"
medium = "12h"
low = "48h"
"""


def policy_show(
    tmp_path: Path, policy: str | None, *flags: str
) -> subprocess.CompletedProcess[str]:
    env = stack_env(tmp_path / "data")
    if policy is not None:
        path = tmp_path / "policy.toml"
        path.write_text(policy)
        env["MASAR_POLICY_FILE"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "masar.cli", "policy", "show", *flags],
        cwd=tmp_path,  # anywhere: the CLI finds the policy module itself
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_partial_file_is_shown_merged_with_the_defaults(tmp_path: Path) -> None:
    result = policy_show(tmp_path, PARTIAL, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == str(tmp_path / "policy.toml")
    assert doc["ladder"] == {"reminder": 0.25, "escalate": 1.0, "expire": 2.0}
    assert doc["deadlines"]["shelter_accept"]["high"] == "1h"
    assert doc["deadlines"]["shelter_checkin"]["high"] == "12h"  # the shipped default
    assert doc["deadlines"]["transfer_accept"]["low"] == "7d"
    assert doc["changed"] == ["ladder.reminder", "deadlines.shelter_accept"]
    human = policy_show(tmp_path, PARTIAL)
    assert "reminder 0.25*" in human.stdout and "* shelter_accept" in human.stdout


def test_without_a_file_the_shipped_default(tmp_path: Path) -> None:
    result = policy_show(tmp_path, None, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] is None and doc["changed"] == []
    assert doc["default_file"] == str(ROOT / "workflows" / "policy.toml")


def test_an_unknown_key_is_one_line_naming_it(tmp_path: Path) -> None:
    result = policy_show(tmp_path, PARTIAL + '[deadlines.shelter_acept]\nhigh = "1h"\n')
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "masar: MASAR_POLICY_FILE: deadlines.shelter_acept: unknown key"
    ]
