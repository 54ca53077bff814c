"""Every `masar ...` command of the README runs as written on a freshly seeded
stack (`masar up` on free ports): read from the README's code blocks, in
order, with the ids of the README's example run replaced by the ones this
run produced — the case opened by `case open`, the referrals `case show`
lists, the provider `providers` lists — and each must exit 0."""

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
    bound: dict[str, str] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    region: str = ""
    ran: list[str] = field(default_factory=list)
    # The real ids of the command being resolved.
    ids: list[str] = field(default_factory=list)

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
        else:
            return token
        self.bound[token] = real
        self.ids.append(real)
        return real

    def run(self, argv: list[str]) -> None:
        self.ids = []
        args = [self.resolve(a) for a in argv[1:]]
        shown = " ".join(argv)
        result = self.masar(*args)
        assert result.returncode == 0, (
            f"README: `{shown}` ran as `masar {' '.join(args)}` and failed "
            f"({result.returncode}):\n{result.stderr}"
        )
        self.ran.append(shown)
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
    }

    env = stack_env(tmp_path / "data")
    up = Up(env, tmp_path / "up.err")
    up_runner.append(up)
    up.endpoints(timeout=120)

    run = Run(env=env, kinds=example_kinds(text))
    for argv in runnable:
        run.run(argv)
    assert len(run.ran) == len(runnable)
    # The reassignment went to the provider `masar providers` listed.
    reassigned = run.json("case", "show", run.case())
    legal = [r for r in reassigned["referrals"] if r["sector"] == "legal"]
    chosen = [run.bound[t] for t in run.bound if PROVIDER_ID.fullmatch(t)]
    assert chosen and any(r["provider_id"] == chosen[0] for r in legal), legal
    assert reassigned["stage"] == "CLOSED"
