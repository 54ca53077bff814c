"""`masar policy show [--json]`: the effective SLA policy.

The journey worker merges MASAR_POLICY_FILE over the shipped default
(workflows/policy.py); this command shows the result for the environment it
runs in — what a journey worker started there would use. The CLI imports no
workflow code (import-linter), so it asks the policy module itself, as a
child process (`python -m workflows.policy`), the way `masar up` starts the
journey worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from masar.cli.output import CliError, Output
from masar.devstack.plan import project_root
from masar.platform.settings import process_environ

TIMEOUT = 60.0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    policy = sub.add_parser("policy", help="the SLA policy", parents=[common])
    policy_sub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    show = policy_sub.add_parser(
        "show",
        help="the effective policy: MASAR_POLICY_FILE merged over the shipped default",
        parents=[common],
    )
    show.set_defaults(sync_handler=show_policy)


def show_policy(args: argparse.Namespace, out: Output) -> int:
    env = dict(process_environ())
    root = str(project_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "workflows.policy", *(["--json"] if out.json_mode else [])]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"policy show: cannot read the policy ({type(exc).__name__})") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        message = lines[-1] if lines else f"exit status {done.returncode}"
        raise CliError(message.removeprefix("masar ").removeprefix("policy show: "), exit_code=2)
    print(done.stdout, end="")
    return 0
