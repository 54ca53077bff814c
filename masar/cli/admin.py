"""Running the stack and its tools: up, seed, token, audit, codec-server."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser(
        "up",
        help="run the whole local stack (Temporal, four services, journey worker)",
        add_help=False,
        prefix_chars="+",
    )
    up.add_argument("rest", nargs=argparse.REMAINDER)
    up.set_defaults(sync_handler=run_up)

    seed = sub.add_parser(
        "seed", help="load sample shelters, legal aid providers and programmes", parents=[common]
    )
    seed.set_defaults(handler=run_seed)

    token = sub.add_parser("token", help="bearer tokens for the local stack", parents=[common])
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    # The delegating commands parse their own options: "+" as this parser's
    # prefix lets every "--option" through to them untouched.
    issue = token_sub.add_parser(
        "issue", help="issue a signed token", add_help=False, prefix_chars="+"
    )
    issue.add_argument("rest", nargs=argparse.REMAINDER)
    issue.set_defaults(
        sync_handler=lambda a, o: _delegate("masar.platform.identity", "token_issue_main", a, o)
    )

    audit = sub.add_parser("audit", help="the hash-chained audit log", parents=[common])
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="detect edited, removed or reordered entries",
        add_help=False,
        prefix_chars="+",
    )
    verify.add_argument("rest", nargs=argparse.REMAINDER)
    verify.set_defaults(
        sync_handler=lambda a, o: _delegate("masar.platform.audit", "audit_verify_main", a, o)
    )

    codec = sub.add_parser(
        "codec-server",
        help="decode payloads for an authorised Temporal UI",
        add_help=False,
        prefix_chars="+",
    )
    codec.add_argument("rest", nargs=argparse.REMAINDER)
    codec.set_defaults(
        sync_handler=lambda a, o: _delegate(
            "masar.platform.codec_server", "codec_server_main", a, o
        )
    )


def _passthrough(args: argparse.Namespace, out: Any) -> list[str]:
    rest = list(getattr(args, "rest", []) or [])
    if out.json_mode and "--json" not in rest:
        rest.append("--json")
    return rest


def _delegate(module: str, function: str, args: argparse.Namespace, out: Any) -> int:
    import importlib

    entry = getattr(importlib.import_module(module), function)
    return int(entry(_passthrough(args, out)) or 0)


def run_up(args: argparse.Namespace, out: Any) -> int:
    from masar.devstack.stack import up_main

    return int(up_main(_passthrough(args, out)) or 0)


async def run_seed(args: argparse.Namespace, out: Any) -> int:
    from masar.cli.seed import seed

    summary = await seed()
    if out.json_mode:
        out.document(summary)
    else:
        for kind, count in summary.items():
            print(f"{kind}: {count}", file=sys.stdout)
    return 0
