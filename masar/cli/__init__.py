"""The `masar` command line.

Every command takes `--json` and then prints exactly one JSON document on
stdout. User errors (unknown case, bad flag value, stack not running) print one
line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from masar.cli import (
    admin,
    cases,
    connect,
    demo,
    grants,
    inbox,
    network,
    policy,
    providers,
    signin,
    staff,
)
from masar.cli.output import CliError, Output
from masar.platform.settings import CliSettings, SettingsError

Handler = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int | None]]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    parser = argparse.ArgumentParser(
        prog="masar",
        description="Masar: referral-and-care journeys for survivors of gender-based violence.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    admin.register(sub, common)
    cases.register(sub, common)
    providers.register(sub, common)
    staff.register(sub, common)
    signin.register(sub, common)
    network.register(sub, common)
    inbox.register(sub, common)
    grants.register(sub, common)
    policy.register(sub, common)
    demo.register(sub, common)
    return parser


def _traced(args: argparse.Namespace, cli: CliSettings, run: Callable[[], int]) -> int:
    """One trace per command: its root span starts here, in the CLI, and the
    gRPC instrumentation carries it through the stack (intake's journey API
    on to Temporal)."""
    from opentelemetry import trace

    from masar.platform.telemetry import setup_telemetry

    telemetry = setup_telemetry("cli", settings=cli.common.telemetry)
    words = [
        args.command,
        *(
            getattr(args, k)
            for k in (
                "case_command",
                "referral_command",
                "transfer_command",
                "grant_command",
                "org_command",
                "account_command",
                "password_command",
                "inbox_command",
            )
            if getattr(args, k, None)
        ),
    ]
    try:
        with trace.get_tracer("masar.cli").start_as_current_span("masar " + " ".join(words)):
            return run()
    finally:
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=bool(getattr(args, "json", False)))
    handler: Handler | None = getattr(args, "handler", None)
    sync_handler: Callable[[argparse.Namespace, Output], int] | None = getattr(
        args, "sync_handler", None
    )
    try:
        if sync_handler is not None:
            return sync_handler(args, out)
        assert handler is not None
        # A command's settings, read from the environment once.
        with connect.configured(CliSettings.from_env()) as cli:
            return _traced(args, cli, lambda: asyncio.run(handler(args, out)) or 0)
    except CliError as exc:
        print(f"masar: {exc}", file=sys.stderr)
        return exc.exit_code
    except SettingsError as exc:
        print(f"masar: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `masar` console script: main(), then leave without finalising the
    interpreter — the Temporal core's native threads may still touch Python
    while it finalises, which aborts the process ("PyGILState_Release")."""
    import logging
    import os

    try:
        status = main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
