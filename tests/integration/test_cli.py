"""The `masar` CLI against `masar up` running as real processes: a journey
driven with --json across a full stop and restart of the stack, `masar demo`,
and user errors as one line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Up, stack_env

MASAR = str(Path(sys.executable).parent / "masar")


def masar(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MASAR, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"masar {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def masar_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(masar(env, *args, "--json").stdout)


def wait_referral(env: dict[str, str], case_id: str, sector: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    doc: Any = None
    while time.monotonic() < deadline:
        doc = masar_json(env, "case", "show", case_id)
        for ref in doc["referrals"]:
            if ref["sector"] == sector and ref["status"] == status:
                return dict(ref)
        time.sleep(0.5)
    pytest.fail(f"no {status} {sector} referral for {case_id}; last status: {doc}")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_journey_through_the_cli_survives_a_stack_restart(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up1.err")
    up_runner.append(up)
    up.endpoints(timeout=120)

    # The demo walks one journey end to end on the fresh data dir.
    demo = masar(env, "demo")
    assert "timeline" in demo.stdout
    for sector in ("shelter", "legal", "employment"):
        assert sector in demo.stdout
    assert masar_json(env, "seed") == masar_json(env, "seed"), "seeding twice is harmless"

    opened = masar_json(
        env,
        "case",
        "open",
        "--region",
        "casablanca-settat",
        "--risk",
        "high",
        "--needs",
        "shelter",
        "--consent",
        "shelter",
        "--alias",
        "Canary-Alias-5521",
        "--contact",
        "+212600005521",
    )
    case_id = opened["case_id"]
    assert opened["workflow_id"] == f"journey-{case_id}"
    assert "Canary" not in case_id
    pending = wait_referral(env, case_id, "shelter", "PENDING")

    listed = masar_json(env, "cases", "--region", "casablanca-settat")
    assert any(row["case_id"] == case_id for row in listed)

    # Stop the whole stack while the referral waits, then start it again.
    assert up.stop() == 0
    up2 = Up(env, tmp_path / "up2.err")
    up_runner.append(up2)
    up2.endpoints(timeout=120)

    decided = masar_json(env, "referral", "decide", pending["referral_id"], "--accept")
    assert decided["status"] == "ACCEPTED"
    accepted = wait_referral(env, case_id, "shelter", "ACCEPTED")
    assert accepted["referral_id"] == pending["referral_id"]

    shown = masar(env, "case", "show", case_id)
    assert "timeline" in shown.stdout and pending["referral_id"] in shown.stdout
    assert "Canary" not in shown.stdout and "5521" not in shown.stdout

    # User errors: one line on stderr, a non-zero exit, never a traceback.
    unknown = masar(env, "case", "show", "0000000000000000", check=False)
    assert unknown.returncode != 0 and "unknown case" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    bad = masar(env, "referral", "decide", "nonsense", "--accept", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    bad_flag = masar(
        env,
        "case",
        "extend",
        case_id,
        pending["referral_id"],
        "--by",
        "soon",
        "--reason",
        "x",
        check=False,
    )
    assert bad_flag.returncode == 2 and "--by" in bad_flag.stderr


def test_cli_says_when_the_stack_is_not_running(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    result = masar(env, "case", "show", "0123456789abcdef", check=False)
    assert result.returncode == 1
    assert "masar up" in result.stderr and "Traceback" not in result.stderr
