"""Every `masar ...` command of the README runs as written on a freshly seeded
stack (`masar up` on free ports): read from the README's code blocks, in
order, with the ids of the README's example run replaced by the ones this
run produced — the case opened by `case open`, the referrals `case show`
lists, the provider `providers` lists, the organisation and account `org
create` and `account create` made, the seed's organisation of the kind the
README's sample `org list` row shows (from this run's `org list`), the
transfer `case transfer` asked — and each must exit 0.

`masar login` and `masar password change` get what a person would type, on
standard input (`--password-stdin`): the first password `masar seed` printed,
then her own, and the current code of her authenticator app (from the
enrolment URI the seed printed) for the roles that need one."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.processes import ROOT, Up, stack_env

MASAR = str(Path(sys.executable).parent / "masar")
README = ROOT / "README.md"

CASE_ID = re.compile(r"[0-9a-f]{16}")
REFERRAL_ID = re.compile(r"(shr|leg|emp)-[0-9a-f]{16}")
PROVIDER_ID = re.compile(r"(shl|lgp|prg)-[0-9a-f]{12}")
SECTOR_OF_PREFIX = {
    "shr": "shelter",
    "leg": "legal",
    "emp": "employment",
    "shl": "shelter",
    "lgp": "legal",
    "prg": "employment",
}
ORG_ID = re.compile(r"org-[0-9a-f]{12}")
ACCOUNT_ID = re.compile(r"acc-[0-9a-f]{12}")
TRANSFER_ID = re.compile(r"trf-[0-9a-f]{16}")
# A row of `masar org list`: id, kind, region (masar/cli/network.py).
ORG_ROW = re.compile(r"^\s*(org-[0-9a-f]{12})\s+([a-z_]+)\s+([a-z]+(?:-[a-z]+)+)\s")
# `masar seed`'s account rows and enrolment URIs (masar/cli/seed_network.py).
SEED_ROW = re.compile(r"^\s+(\S+)\s+\S+\s+acc-[0-9a-f]{12}\s+org-[0-9a-f]{12}\s+\S+\s+(\S+)$")
SEED_TOTP = re.compile(r"^\s+(\S+): (otpauth://\S+)$")
NEW_PASSWORD = "a README reader's own passphrase"
TOTP_STEP = 30
FENCE = re.compile(r"^\s*```")


def code_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced code block (indented ones too)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def readme_commands(text: str) -> list[list[str]]:
    """Each `masar` command line of the code blocks as argv, continuation
    lines joined, comments and leading VAR=value assignments dropped."""
    commands: list[list[str]] = []
    for block in code_blocks(text):
        pending = ""
        for line in block:
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            argv = shlex.split(pending + line, comments=True)
            pending = ""
            while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
                argv.pop(0)
            if argv and argv[0] == "masar":
                commands.append(argv)
    return commands


def example_orgs(text: str) -> dict[str, tuple[str, str]]:
    """The kind and region of each example organisation id that the README's
    sample output shows as an `org list` row."""
    return {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"#.*?\b(org-[0-9a-f]{12})\s+([a-z_]+)\s+([a-z]+(?:-[a-z]+)+)\s", text)
    }


def example_kinds(text: str) -> dict[str, str]:
    """What kind each example provider id is, from the README's sample output."""
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"#.*?\b((?:shl|lgp|prg)-[0-9a-f]{12})\s+([a-z_]+)", text)
    }


@dataclass
class Run:
    """The README's example ids, bound to this run's as they are first used."""

    env: dict[str, str]
    kinds: dict[str, str]
    org_kinds: dict[str, tuple[str, str]] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    region: str = ""
    ran: list[str] = field(default_factory=list)
    # The real ids of the command being resolved.
    ids: list[str] = field(default_factory=list)
    orgs: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    # (kind, region) -> the first organisation of the last `org list` with them
    listed_orgs: dict[tuple[str, str], str] = field(default_factory=dict)
    # username -> her current password; -> her TOTP secret; -> the last step used
    passwords: dict[str, str] = field(default_factory=dict)
    totp: dict[str, str] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)

    def code(self, username: str) -> str:
        """Her app's current code, never one already used (a code works once)."""
        step = int(time.time() // TOTP_STEP)
        last = self.last_step.get(username, -1)
        if step <= last:
            time.sleep((last + 1) * TOTP_STEP - time.time() + 0.2)
            step = last + 1
        self.last_step[username] = step
        return str(pyotp.TOTP(self.totp[username]).at(step * TOTP_STEP))

    def typed(self, args: list[str]) -> tuple[list[str], str]:
        """`login` and `password change` with what she types, on stdin."""
        if args[0] != "login" and args[:2] != ["password", "change"]:
            return args, ""
        username = args[args.index("--username") + 1]
        assert username in self.passwords, f"no password printed for {username}"
        lines = [self.passwords[username]]
        if args[0] == "password":
            lines.append(NEW_PASSWORD)
        if username in self.totp:
            lines.append(self.code(username))
        return [*args, "--password-stdin"], "\n".join(lines) + "\n"

    def learn(self, args: list[str], stdout: str) -> None:
        """What a person reads in the output: ids, first passwords, URIs."""
        if args[0] in ("seed", "demo"):  # both print the accounts they created
            for line in stdout.splitlines():
                if (row := SEED_ROW.match(line)) and not row.group(2).startswith("unchanged"):
                    self.passwords.setdefault(row.group(1), row.group(2))
                if enrolment := SEED_TOTP.match(line):
                    self.totp[enrolment.group(1)] = pyotp.parse_uri(enrolment.group(2)).secret
        if args[:2] == ["password", "change"]:
            self.passwords[args[args.index("--username") + 1]] = NEW_PASSWORD
        if args[:2] == ["org", "create"]:
            created = re.search(r"organisation (org-[0-9a-f]{12}) registered", stdout)
            assert created, stdout
            self.orgs.append(created.group(1))
        if args[:2] == ["org", "list"]:
            self.listed_orgs = {}
            for line in stdout.splitlines():
                if row := ORG_ROW.match(line):
                    self.listed_orgs.setdefault((row.group(2), row.group(3)), row.group(1))
        if args[:2] == ["case", "transfer"]:
            asked = re.search(r"transfer (trf-[0-9a-f]{16}) asked", stdout)
            assert asked, stdout
            self.transfers.append(asked.group(1))
        if args[:2] == ["account", "create"]:
            made = re.search(r"account (acc-[0-9a-f]{12}) created", stdout)
            assert made, stdout
            self.accounts.append(made.group(1))

    def masar(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MASAR, *args], env=self.env, capture_output=True, text=True, timeout=180
        )

    def json(self, *args: str) -> Any:
        result = self.masar(*args, "--json")
        assert result.returncode == 0, f"masar {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout)

    def case(self) -> str:
        assert self.opened, "the README uses a case id before `masar case open`"
        return self.opened[-1]

    def referral(self, example: str) -> str:
        """The newest PENDING referral of the example's sector not bound yet."""
        sector = SECTOR_OF_PREFIX[example[:3]]
        taken = set(self.bound.values())
        deadline = time.monotonic() + 60
        status: Any = None
        while time.monotonic() < deadline:
            status = self.json("case", "show", self.case())
            found = [
                r["referral_id"]
                for r in status["referrals"]
                if r["sector"] == sector
                and r["status"] == "PENDING"
                and r["referral_id"] not in taken
            ]
            if found:
                return str(found[-1])
            time.sleep(0.3)
        pytest.fail(f"no new PENDING {sector} referral for {example}; last status: {status}")

    def provider(self, example: str) -> str:
        """A provider of the region last listed, as a coordinator picks one
        for the referral named just before: not the one it is with, taking
        its matters (`case open` asks legal aid for a protection order), of
        the example's kind when that one is free to choose."""
        sector = SECTOR_OF_PREFIX[example[:3]]
        status = self.json("case", "show", self.case())
        current = {r["provider_id"] for r in status["referrals"] if r["referral_id"] in self.ids}
        listed = self.json("providers", "--sector", sector, "--region", self.region)
        candidates = [
            p
            for p in listed
            if p["provider_id"] not in current
            and (sector != "legal" or "protection_order" in p["details"])
        ]
        assert candidates, f"no other {sector} provider in {self.region}: {listed}"
        kind = self.kinds.get(example)
        preferred = [p for p in candidates if p["kind"] == kind] or candidates
        return str(preferred[0]["provider_id"])

    def resolve(self, token: str) -> str:
        if token in self.bound:
            self.ids.append(self.bound[token])
            return self.bound[token]
        if CASE_ID.fullmatch(token):
            real = self.case()
        elif REFERRAL_ID.fullmatch(token):
            real = self.referral(token)
        elif PROVIDER_ID.fullmatch(token):
            real = self.provider(token)
        elif ORG_ID.fullmatch(token) and token in self.org_kinds:
            # The seed's organisation of that kind, as `masar org list` showed it.
            kind = self.org_kinds[token]
            assert kind in self.listed_orgs, f"no {kind} in the last `org list`: {token}"
            real = self.listed_orgs[kind]
        elif ORG_ID.fullmatch(token):
            assert self.orgs, f"the README uses {token} before `masar org create`"
            real = self.orgs[-1]
        elif TRANSFER_ID.fullmatch(token):
            assert self.transfers, f"the README uses {token} before `masar case transfer`"
            real = self.transfers[-1]
        elif ACCOUNT_ID.fullmatch(token):
            assert self.accounts, f"the README uses {token} before `masar account create`"
            real = self.accounts[-1]
        else:
            return token
        self.bound[token] = real
        self.ids.append(real)
        return real

    def run(self, argv: list[str]) -> None:
        self.ids = []
        args = [self.resolve(a) for a in argv[1:]]
        shown = " ".join(argv)
        args, stdin = self.typed(args)
        result = subprocess.run(
            [MASAR, *args], env=self.env, capture_output=True, text=True, timeout=180, input=stdin
        )
        assert result.returncode == 0, (
            f"README: `{shown}` ran as `masar {' '.join(args)}` and failed "
            f"({result.returncode}):\n{result.stderr}"
        )
        self.ran.append(shown)
        self.learn(args, result.stdout)
        if args[:2] == ["case", "open"]:
            opened = re.search(r"case ([0-9a-f]{16}) registered", result.stdout)
            assert opened, result.stdout
            self.opened.append(opened.group(1))
        if args[0] == "providers":
            self.region = args[args.index("--region") + 1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_commands_run_as_written(tmp_path: Path, up_runner: list[Up]) -> None:
    text = README.read_text()
    commands = readme_commands(text)
    # `masar up` is what this test runs; `codec-server` would serve until stopped.
    runnable = [argv for argv in commands if argv[1] not in ("up", "codec-server")]
    assert {" ".join(a[:3]) for a in runnable} >= {
        "masar seed",
        "masar case open",
        "masar providers --sector",
        "masar case reassign",
        "masar referral decide",
        "masar case closure",
        "masar password change",
        "masar login --username",
        "masar org create",
        "masar account create",
        "masar policy show",
        "masar case transfer",
        "masar transfer accept",
        "masar transfers --case",
    }

    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)

    run = Run(env=env, kinds=example_kinds(text), org_kinds=example_orgs(text))
    for argv in runnable:
        run.run(argv)
    assert len(run.ran) == len(runnable)
    # The reassignment went to the provider `masar providers` listed.
    # (the walk-through's journey: the first case the README opens)
    reassigned = run.json("case", "show", run.opened[0])
    legal = [r for r in reassigned["referrals"] if r["sector"] == "legal"]
    chosen = [run.bound[t] for t in run.bound if PROVIDER_ID.fullmatch(t)]
    assert chosen and any(r["provider_id"] == chosen[0] for r in legal), legal
    assert reassigned["stage"] == "CLOSED"
    # The README signed people in and out: the last `logout` ended the session.
    assert run.passwords["intake.fes"] == NEW_PASSWORD
    assert run.json("whoami")["acts_as"] == "local_stack"
    # The transfer: the centre the README names holds the case now, and the
    # journey shows the accepted transfer (a coordinator of its region reads it).
    (transfer_id,) = run.transfers
    transferred = run.json("transfer", "show", transfer_id)
    assert transferred["status"] == "ACCEPTED"
    centre = run.listed_orgs[("multifunctional_centre", "fes-meknes")]
    assert transferred["to_organisation_id"] == centre
    status = run.json("case", "show", transferred["case_id"])
    assert [(t["transfer_id"], t["status"]) for t in status["transfers"]] == [
        (transfer_id, "ACCEPTED")
    ]
