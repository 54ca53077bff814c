"""Notifications on the live local stack (issue 13, "Done when"): `masar up`
on free ports with a seconds-scale policy (shelter_accept at high risk: 6 s;
the reminder at 3 s, the coordinators at 6 s) and a real SMTP server started
here (aiosmtpd, MASAR_SMTP_URL), `masar seed`, then a high-risk case that
asks for shelter and that nobody answers:

- the shelter organisation's staff get a new-referral e-mail, then a
  reminder; the region's coordinators then get an escalation — in that order;
- no message (headers and bodies, every part, every language) and nothing in
  the network's database holds the survivor's alias or contact;
- the coordinator signs in, finds the escalation in `masar inbox` and
  acknowledges it (`masar inbox ack`): the journey's timeline (`masar case
  show --json`, through the journey API) shows it acknowledged, by her.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.conftest import free_port
from tests.processes import ROOT, Up, stack_env
from tests.services.network.notify_support import SmtpReceiver, message_text, smtp_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MASAR = [sys.executable, "-m", "masar.cli"]
ALIAS = "Canary-Hafsa-e41c7"
CONTACT = "+212600771234"
SHELTER_STAFF = "shelter.fes@example.org"
COORDINATOR = "coord.fes-meknes"
NEW_PASSWORD = "a coordinator's own long passphrase"
# Seconds-scale, for high risk only: the other waits keep the shipped policy.
POLICY = """
[deadlines.shelter_accept]
critical = "6s"
high = "6s"
medium = "2h"
low = "4h"
"""
BUDGET = 90.0  # seconds, from `masar up` to the acknowledgement in the timeline


@pytest.fixture
def up_runner() -> Iterator[list[Up]]:
    ups: list[Up] = []
    yield ups
    for up in ups:
        up.close()


def masar(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MASAR, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def masar_json(env: dict[str, str], *args: str, stdin: str = "") -> Any:
    result = masar(env, *args, "--json", stdin=stdin)
    assert result.returncode == 0, f"masar {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)


def wait_for(check: Callable[[], Any], what: str, *, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    pytest.fail(f"{what}: not within {within:.0f}s")


def kind_of(message: EmailMessage) -> str:
    """The e-mail's notification kind, from its subject (English or French
    or Arabic): new referral, reminder or escalation."""
    subject = str(message["Subject"])
    for kind, words in {
        "new_referral": ("New referral", "Nouvelle orientation", "إحالة جديدة"),
        "reminder": ("Reminder", "Rappel", "تذكير"),
        "escalation": ("Escalation", "Escalade", "تصعيد"),
    }.items():
        if any(word in subject for word in words):
            return kind
    return "other"


def every_text(smtp: SmtpReceiver) -> str:
    """Every message as received (raw headers and bodies) and decoded."""
    texts = [raw.decode("utf-8", errors="replace") for raw in smtp.raw]
    for message in smtp.parsed():
        texts.append("\n".join(f"{k}: {v}" for k, v in message.items()))
        texts.extend(message_text(message))
    return "\n".join(texts)


def network_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.iterdir() if p.name.startswith("network.db")]


def test_an_unanswered_shelter_referral_tells_staff_then_coordinators(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    started = time.monotonic()
    data_dir = tmp_path / "data"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with smtp_server(free_port()) as smtp:
        env = stack_env(data_dir)
        env.update(
            {
                "MASAR_POLICY_FILE": str(policy),
                "MASAR_SMTP_URL": smtp.url,
                "MASAR_SMTP_FROM": "Masar <alerts@masar.test>",
                "MASAR_CONSOLE_URL": "https://console.masar.test",
            }
        )
        up = Up(env, tmp_path / "up.err")
        up_runner.append(up)
        up.endpoints(timeout=60)
        seeded = masar_json(env, "seed")
        coordinator = next(a for a in seeded["accounts"] if a["username"] == COORDINATOR)

        opened = masar_json(
            env,
            "case",
            "open",
            "--region",
            "fes-meknes",
            "--risk",
            "high",
            "--needs",
            "shelter",
            "--consent",
            "shelter",
            "--alias",
            ALIAS,
            "--contact",
            CONTACT,
        )
        case_id = opened["case_id"]

        # In order: the staff's new referral, their reminder, the coordinators' escalation.
        def kinds() -> list[tuple[str, str]]:
            return [
                (kind_of(m), str(m["To"])) for m in smtp.parsed() if case_id in message_text(m)[0]
            ]

        wait_for(
            lambda: any(kind == "escalation" for kind, _ in kinds()),
            "the escalation e-mail",
            within=40,
        )
        told = kinds()
        staff = [kind for kind, to in told if to == SHELTER_STAFF]
        assert staff[:2] == ["new_referral", "reminder"], told
        first_escalation = next(i for i, (kind, _) in enumerate(told) if kind == "escalation")
        assert told[first_escalation][1] == f"{COORDINATOR}@example.org", told
        assert told.index(("reminder", SHELTER_STAFF)) < first_escalation
        assert told.index(("new_referral", SHELTER_STAFF)) < told.index(("reminder", SHELTER_STAFF))

        # No personal data in any message, nor in the network's database.
        text = every_text(smtp)
        assert case_id in text
        assert ALIAS not in text and CONTACT not in text
        for path in network_files(data_dir):
            stored = path.read_bytes()
            assert ALIAS.encode() not in stored and CONTACT.encode() not in stored, path.name

        # The coordinator signs in (her first password changed), finds the
        # escalation in her inbox and acknowledges it.
        secret = pyotp.parse_uri(coordinator["totp_uri"]).secret
        changed = masar(
            env,
            "password",
            "change",
            "--username",
            COORDINATOR,
            "--password-stdin",
            stdin=f"{coordinator['first_password']}\n{NEW_PASSWORD}\n{pyotp.TOTP(secret).now()}\n",
        )
        assert changed.returncode == 0, changed.stderr
        inbox = masar_json(env, "inbox")["notifications"]
        escalation = next(n for n in inbox if n["kind"] == "escalation" and n["case_id"] == case_id)
        acked = masar_json(env, "inbox", "ack", escalation["notification_id"])
        assert acked["notification"]["acknowledged"] is True

        def acknowledged() -> Any:
            status = masar_json(env, "case", "show", case_id)
            return [e for e in status["timeline"] if e["event"] == "acknowledged"]

        [seen] = wait_for(acknowledged, "the acknowledgement in the timeline", within=30)
        assert seen["actor"] == coordinator["account_id"]
        assert seen["detail"] == "escalation" and seen["at"]
        assert time.monotonic() - started < BUDGET, time.monotonic() - started
