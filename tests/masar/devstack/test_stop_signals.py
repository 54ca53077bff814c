"""`masar up` stopped the way service managers stop it: SIGTERM to its process
group (with `make` in that group, which forwards the signal it received to its
child: one stop arrives twice), or SIGTERM to every process of the stack at
once (systemd's default for a unit). Each must be the same clean, ordered stop
as Ctrl-C: no forced kill, no restart said or done, every part gone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import UP, Up, stack_env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def part_pids(doc: dict[str, Any]) -> dict[str, int]:
    pids = {name: int(s["pid"]) for name, s in doc["services"].items()}
    pids["temporal"] = int(doc["temporal"]["pid"])
    pids["journey"] = int(doc["journey_worker"]["pid"])
    pids["console"] = int(doc["console"]["pid"])
    return pids


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def assert_clean_stop(up: Up, doc: dict[str, Any]) -> None:
    pids = part_pids(doc)
    supervisor = int(doc["supervisor_pid"])
    up.proc.wait(timeout=90)
    assert not wait_gone([supervisor, *pids.values()], timeout=30), up.stderr()
    said = up.stderr()
    assert "stopping: services and worker first, Temporal last..." in said
    assert said.rstrip().endswith("stopped."), said
    for forbidden in ("killing every part", "restarting", "exited (", "is back"):
        assert forbidden not in said, said


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_to_the_group_under_make_is_one_clean_stop(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    makefile = tmp_path / "Makefile"
    recipe = " ".join([*UP, "--json"])
    makefile.write_text(f"up:\n\t{recipe}\n")
    up = Up(
        stack_env(tmp_path / "data"),
        tmp_path / "up.err",
        command=["make", "-s", "-f", str(makefile), "up"],
        own_group=True,
    )
    up_runner.append(up)
    doc = up.endpoints(timeout=120)
    assert int(doc["supervisor_pid"]) != up.proc.pid  # make is the group's leader

    os.killpg(up.proc.pid, signal.SIGTERM)
    assert_clean_stop(up, doc)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_to_every_process_at_once_is_one_clean_stop(
    tmp_path: Path, up_runner: list[Up]
) -> None:
    up = Up(stack_env(tmp_path / "data"), tmp_path / "up.err", own_group=True)
    up_runner.append(up)
    doc = up.endpoints(timeout=120)

    # As systemd stops a unit: every process of it, each in its own group.
    for pid in [up.proc.pid, *part_pids(doc).values()]:
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    assert_clean_stop(up, doc)
    assert up.proc.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_to_its_own_group_exits_zero(tmp_path: Path, up_runner: list[Up]) -> None:
    up = Up(stack_env(tmp_path / "data"), tmp_path / "up.err", own_group=True)
    up_runner.append(up)
    doc = up.endpoints(timeout=120)

    os.killpg(up.proc.pid, signal.SIGTERM)
    assert_clean_stop(up, doc)
    assert up.proc.returncode == 0
