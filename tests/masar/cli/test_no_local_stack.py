"""The CLI pointed at a data dir that holds no running stack's keys: it creates
no key (a fresh one signs tokens no service trusts) and says in one line that
no local stack is there, and how to point it at one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, stack_env

COMMANDS = [
    ["seed"],
    [
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
    ],
    ["referral", "decide", "shr-0123456789abcdef", "--accept"],
    ["providers", "--sector", "legal", "--region", "fes-meknes"],
    ["case", "show", "0123456789abcdef"],
    ["cases", "--escalated"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_key_is_created_and_one_line_says_where_to_look(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "elsewhere"
    data_dir.mkdir()
    env = stack_env(data_dir)  # free ports: nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "masar.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"masar: no local stack found in {data_dir.resolve()}")
    assert "MASAR_DATA_DIR" in line and "masar up" in line
    if command[0] not in ("case", "cases") or command[1] == "open":
        assert "MASAR_TOKEN" in line  # the token is what these commands lack
    assert list(data_dir.iterdir()) == []
    assert result.stdout == ""


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "masar.cli", *args],
        cwd=ROOT,
        env=stack_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_tools_create_no_key_either(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere"
    data_dir.mkdir()
    codec = _run(data_dir, "codec-server", "--listen", "127.0.0.1:0")
    assert codec.returncode == 1
    assert codec.stderr.strip().splitlines() == [
        f"masar codec-server: no local stack found in {data_dir.resolve()} "
        "(it has no token-issuer.json): point MASAR_DATA_DIR at the data directory "
        "of a running `masar up`, or set MASAR_TOKEN_PUBLIC_KEY"
    ]
    audit = _run(data_dir, "audit", "verify", "--json")
    assert audit.returncode == 0, audit.stderr  # no log anywhere: nothing to verify
    assert list(data_dir.iterdir()) == []
