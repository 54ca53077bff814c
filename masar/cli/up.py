"""`masar up [--json]`: the whole local stack (masar.devstack.stack)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

from masar.devstack.stack import run_stack


def up_main(argv: Sequence[str] | None = None) -> int:
    """The exit status: 0 after a clean stop."""
    parser = argparse.ArgumentParser(
        prog="masar up",
        description=(
            "Run the whole local stack: Temporal, the services, the journey worker "
            "and the web console."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document of endpoints once ready"
    )
    args = parser.parse_args(argv)
    # Everything the stack and its children create under the data dir (logs,
    # the lock file, SQLite files, Temporal's database) is the owner's alone.
    os.umask(0o077)
    return asyncio.run(run_stack(json_output=args.json))
