"""The `masar` CLI against `masar up` running as real processes: a journey
driven with --json across a full stop and restart of the stack, `masar demo`,
user errors as one line on stderr; `masar login` then `masar case open` acting
as the signed-in officer; a policy file that says only what it changes; a
case transfer asked, redirected, declined and accepted; incident times as
people give them (kept to the hour) and the outcome staff give when they
complete a referral."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.processes import Up, stack_env

MASAR = str(Path(sys.executable).parent / "masar")


def masar(
    env: dict[str, str], *args: str, check: bool = True, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MASAR, *args], env=env, capture_output=True, text=True, timeout=120, input=stdin
    )
    if check and result.returncode != 0:
        pytest.fail(f"masar {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def masar_json(env: dict[str, str], *args: str, stdin: str = "") -> Any:
    return json.loads(masar(env, *args, "--json", stdin=stdin).stdout)


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
    # Seeding twice is harmless: the same network and reference data; the
    # second run creates nothing and hands out no password again.
    first, second = masar_json(env, "seed"), masar_json(env, "seed")
    assert {k: v for k, v in first.items() if k != "accounts"} == {
        k: v for k, v in second.items() if k != "accounts"
    }
    assert [a["account_id"] for a in first["accounts"]] == [
        a["account_id"] for a in second["accounts"]
    ]
    assert {a["status"] for a in second["accounts"]} == {"unchanged"}

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


NEW_PASSWORD = "her own long passphrase"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_login_then_case_open_acts_as_the_signed_in_officer(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)

    seeded = masar_json(env, "seed")
    officer = next(a for a in seeded["accounts"] if a["username"] == "intake.fes")
    assert officer["status"] == "created" and officer["first_password"]
    again = masar_json(env, "seed")
    assert [a["account_id"] for a in again["accounts"]] == [
        a["account_id"] for a in seeded["accounts"]
    ]
    assert {a["status"] for a in again["accounts"]} == {"unchanged"}
    assert not any(a["first_password"] for a in again["accounts"])

    # Her first password is changed before she signs in (which signs her in).
    refused = masar(
        env, "login", "--username", "intake.fes", "--password-stdin",
        stdin=officer["first_password"], check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "masar password change" in refused.stderr
    masar(
        env, "password", "change", "--username", "intake.fes", "--password-stdin",
        stdin=f"{officer['first_password']}\n{NEW_PASSWORD}\n",
    )  # fmt: skip
    masar(env, "logout")
    signed = masar_json(
        env, "login", "--username", "intake.fes", "--password-stdin", stdin=NEW_PASSWORD
    )
    assert signed["account_id"] == officer["account_id"]

    opened = masar_json(
        env, "case", "open", "--region", "fes-meknes", "--risk", "high",
        "--needs", "shelter", "--consent", "shelter",
    )  # fmt: skip
    case_id = opened["case_id"]
    # Her organisation registered the case and holds it ...
    assert opened["source_organisation_id"] == officer["organisation_id"]
    assert opened["holding_organisation_id"] == officer["organisation_id"]
    wait_referral(env, case_id, "shelter", "PENDING")
    masar(env, "case", "follow-up", case_id)
    # ... and intake's audit log names her account, of that organisation.
    with sqlite3.connect(tmp_path / "data" / "intake.db") as db:
        actors = set(db.execute("SELECT actor, org FROM audit_log WHERE case_id = ?", (case_id,)))
    assert (officer["account_id"], officer["organisation_id"]) in actors

    # Signed out, the local shortcut's officer (no organisation) may not touch it.
    masar(env, "logout")
    other = masar(env, "case", "follow-up", case_id, check=False)
    assert other.returncode == 1 and "permission_denied" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


PARTIAL_POLICY = """
[ladder]
reminder = 0.25
escalate = 1.0
expire = 3.0

[deadlines.shelter_accept]
critical = "90m"
high = "90m"
medium = "12h"
low = "48h"
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_policy_file_with_only_what_it_changes_runs_the_stack(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(PARTIAL_POLICY)
    env = stack_env(tmp_path / "data")
    env["MASAR_POLICY_FILE"] = str(policy)
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)  # the journey worker loaded the file and polls

    shown = masar_json(env, "policy", "show")
    assert shown["source"] == str(policy)
    assert shown["ladder"] == {"reminder": 0.25, "escalate": 1.0, "expire": 3.0}
    deadlines = shown["deadlines"]
    assert deadlines["shelter_accept"] == {
        "critical": "90m", "high": "90m", "medium": "12h", "low": "48h",
    }  # fmt: skip
    # Everything else is the shipped default.
    assert deadlines["legal_accept"] == {
        "critical": "24h", "high": "24h", "medium": "72h", "low": "7d",
    }  # fmt: skip
    assert deadlines["transfer_accept"]["medium"] == "72h"
    assert deadlines["follow_up"]["low"] == "30d"
    assert shown["changed"] == ["ladder.reminder", "ladder.expire", "deadlines.shelter_accept"]
    human = masar(env, "policy", "show").stdout
    # The changed wait is starred; columns are as wide as the longest wait's name.
    assert re.search(r"^\s*\* shelter_accept\s+90m\s", human, re.M), human
    assert "reminder 0.25*" in human

    # The journeys follow it: a high-risk shelter referral waits 90 minutes.
    masar(env, "seed")
    opened = masar_json(
        env, "case", "open", "--region", "fes-meknes", "--risk", "high",
        "--needs", "shelter", "--consent", "shelter",
    )  # fmt: skip
    pending = wait_referral(env, opened["case_id"], "shelter", "PENDING")
    deadline = datetime.fromisoformat(pending["deadline"].replace("Z", "+00:00"))
    left = deadline - datetime.now(UTC)
    assert timedelta(minutes=80) < left <= timedelta(minutes=90), left

    # An unknown key is still refused, naming it, in one line.
    policy.write_text(PARTIAL_POLICY + '\n[deadlines.shelter_acept]\nhigh = "1h"\n')
    bad = masar(env, "policy", "show", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "masar: MASAR_POLICY_FILE: deadlines.shelter_acept: unknown key"
    ]


def _account(seeded: Any, username: str) -> dict[str, Any]:
    return dict(next(a for a in seeded["accounts"] if a["username"] == username))


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_case_transfer_through_the_cli(tmp_path: Path, up_runner: list[Up]) -> None:
    """The association's officer asks, a coordinator redirects, the other
    association declines; asked again, the centre accepts: it holds the case
    and the association no longer sees it. Signed in, and through the local
    stack's shortcut (the holder's, the receiver's and the coordinator's
    identities found from the case and the transfer)."""
    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)

    seeded = masar_json(env, "seed")
    officer, receiver = _account(seeded, "intake.fes"), _account(seeded, "intake.centre-fes")
    association, centre = officer["organisation_id"], receiver["organisation_id"]
    others = masar_json(env, "org", "list", "--region", "fes-meknes", "--kind", "association")
    other = next(o["organisation_id"] for o in others if o["organisation_id"] != association)
    masar(
        env, "password", "change", "--username", "intake.fes", "--password-stdin",
        stdin=f"{officer['first_password']}\n{NEW_PASSWORD}\n",
    )  # fmt: skip
    case_id = masar_json(
        env, "case", "open", "--region", "fes-meknes", "--risk", "medium",
        "--needs", "legal", "--consent", "legal",
    )["case_id"]  # fmt: skip
    wait_referral(env, case_id, "legal", "PENDING")

    # Without her consent nothing is asked.
    refused = masar(env, "case", "transfer", case_id, "--to", centre, "--reason", "language",
                    check=False)  # fmt: skip
    assert refused.returncode == 2 and "consent" in _one_line(refused)
    assert masar_json(env, "transfers", "--case", case_id) == []

    first = masar_json(
        env, "case", "transfer", case_id, "--to", centre, "--reason", "her_request", "--consent"
    )
    assert (first["status"], first["reason"]) == ("PENDING", "survivor_request")
    assert (first["from_organisation_id"], first["to_organisation_id"]) == (association, centre)
    assert first["consent_recorded_at"] and first["delivery"] == "DELIVERED"
    # The organisation that asks does not answer.
    own = masar(env, "transfer", "accept", first["transfer_id"], check=False)
    assert own.returncode == 1 and "permission_denied" in _one_line(own)
    masar(env, "logout")

    # The local shortcut: the region's coordinator redirects it; the other
    # association's officer declines it; the case stays with its holder.
    no_consent = masar(env, "transfer", "redirect", first["transfer_id"], "--to", other,
                       check=False)  # fmt: skip
    assert no_consent.returncode == 2 and "consent" in _one_line(no_consent)
    redirected = masar_json(
        env, "transfer", "redirect", first["transfer_id"], "--to", other, "--consent"
    )
    assert (redirected["to_organisation_id"], redirected["redirect_count"]) == (other, 1)
    declined = masar_json(
        env, "transfer", "decline", first["transfer_id"], "--reason", "no_capacity"
    )
    assert declined["status"] == "DECLINED" and declined["decline_reason"] == "no_capacity"
    assert declined["holding_organisation_id"] == association

    # Asked again (the shortcut acts as the holder's officer), the centre accepts.
    second = masar_json(
        env, "case", "transfer", case_id, "--to", centre, "--reason", "closer_to_home", "--consent"
    )
    accepted = masar_json(env, "transfer", "accept", second["transfer_id"])
    assert (accepted["status"], accepted["holding_organisation_id"]) == ("ACCEPTED", centre)

    # The association's officer lost the case; the centre's officer has it.
    masar(env, "login", "--username", "intake.fes", "--password-stdin", stdin=NEW_PASSWORD)
    for command in (["case", "show", case_id], ["case", "follow-up", case_id]):
        lost = masar(env, *command, check=False)
        assert lost.returncode == 1 and "permission_denied" in _one_line(lost)
    assert all(row["case_id"] != case_id for row in masar_json(env, "cases"))
    masar(env, "logout")
    masar(
        env, "password", "change", "--username", "intake.centre-fes", "--password-stdin",
        stdin=f"{receiver['first_password']}\n{NEW_PASSWORD}\n",
    )  # fmt: skip
    status = masar_json(env, "case", "show", case_id)
    assert [(t["transfer_id"], t["status"]) for t in status["transfers"]] == [
        (first["transfer_id"], "DECLINED"),
        (second["transfer_id"], "ACCEPTED"),
    ]
    assert "transfer_requested" in {e["event"] for e in status["timeline"]}
    assert [row["case_id"] for row in masar_json(env, "cases")] == [case_id]
    masar(env, "case", "follow-up", case_id)
    shown = masar(env, "case", "show", case_id).stdout
    assert "transfers between organisations" in shown and second["transfer_id"] in shown
    listed = masar_json(env, "transfers")
    assert [t["transfer_id"] for t in listed] == [second["transfer_id"]]
    masar(env, "logout")

    # Errors: one line each.
    unknown = masar(env, "transfer", "show", "trf-0000000000000000", check=False)
    assert unknown.returncode == 1 and "unknown transfer" in _one_line(unknown)
    malformed = masar(env, "transfer", "accept", "nonsense", check=False)
    assert malformed.returncode == 2 and "TRANSFER_ID" in _one_line(malformed)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_incident_times_as_people_give_them_and_the_outcome_staff_give(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    """`case open --incident-at` with minutes keeps the hour and says so; a
    time without an offset is Morocco's; `referral complete` needs the
    outcome, and the one given is what the shelter records and the journey
    hears."""
    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)
    masar_json(env, "seed")

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    given = (hour + timedelta(minutes=21, seconds=55)).strftime("%Y-%m-%dT%H:%M:%SZ")
    opened = masar(
        env, "case", "open", "--region", "fes-meknes", "--risk", "high",
        "--needs", "shelter", "--consent", "shelter", "--violence", "rape",
        "--incident-at", given, "--json",
    )  # fmt: skip
    assert f"incident time kept to the hour: {hour:%H}:00" in opened.stderr
    doc = json.loads(opened.stdout)
    case_id = doc["case_id"]
    assert doc["incident_at"] == hour.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The clinical windows count from the hour kept.
    pending = wait_referral(env, case_id, "shelter", "PENDING")
    windows = {w["item"]: w["deadline"] for w in masar_json(env, "case", "show", case_id)[
        "clinical_windows"
    ]}  # fmt: skip
    assert windows["pep"] == (hour + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Without an offset: Morocco's local time (UTC+1, UTC+0 around Ramadan).
    local = datetime.now(ZoneInfo("Africa/Casablanca")) - timedelta(hours=2)
    naive = masar(
        env, "case", "open", "--region", "fes-meknes", "--risk", "medium",
        "--needs", "shelter", "--incident-at", local.strftime("%Y-%m-%dT%H:%M:%S"), "--json",
    )  # fmt: skip
    kept = local.replace(minute=0, second=0, microsecond=0)
    assert json.loads(naive.stdout)["incident_at"] == kept.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    if local.replace(microsecond=0) != kept:
        assert f"incident time kept to the hour: {kept:%H}:00" in naive.stderr

    referral = pending["referral_id"]
    masar(env, "referral", "decide", referral, "--accept")
    wait_referral(env, case_id, "shelter", "ACCEPTED")
    masar(env, "referral", "start", referral)
    wait_referral(env, case_id, "shelter", "IN_SERVICE")
    missing = masar(env, "referral", "complete", referral, check=False)
    assert missing.returncode == 2 and missing.stdout == ""
    assert "--outcome is required" in _one_line(missing)
    assert "left_without_notice" in _one_line(missing)
    done = masar_json(env, "referral", "complete", referral, "--outcome", "left_without_notice")
    assert (done["status"], done["outcome"]) == ("COMPLETED", "left_without_notice")
    wait_referral(env, case_id, "shelter", "COMPLETED")
    timeline = masar_json(env, "case", "show", case_id)["timeline"]
    assert [e["detail"] for e in timeline if e["event"] == "service_completed"] == [
        "left_without_notice"
    ]
