"""Running the stack and its tools: up, seed, token, audit, codec-server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from masar.cli.audit import audit_verify_main
from masar.cli.codec import codec_server_main
from masar.cli.output import Output
from masar.cli.seed import seed
from masar.cli.seed_network import accounts_text
from masar.cli.token import token_issue_main
from masar.cli.up import up_main


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser(
        "up",
        help="run the whole local stack (Temporal, the services, the journey worker)",
        add_help=False,
        prefix_chars="+",
    )
    up.add_argument("rest", nargs=argparse.REMAINDER)
    up.set_defaults(sync_handler=run_up)

    seed = sub.add_parser(
        "seed",
        help="load a sample network (organisations, one account per role) and "
        "shelters, legal aid providers and programmes",
        parents=[common],
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
    issue.set_defaults(sync_handler=run_token_issue)

    audit = sub.add_parser("audit", help="the hash-chained audit log", parents=[common])
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="detect edited, removed or reordered entries",
        add_help=False,
        prefix_chars="+",
    )
    verify.add_argument("rest", nargs=argparse.REMAINDER)
    verify.set_defaults(sync_handler=run_audit_verify)

    codec = sub.add_parser(
        "codec-server",
        help="decode payloads for an authorised Temporal UI",
        add_help=False,
        prefix_chars="+",
    )
    codec.add_argument("rest", nargs=argparse.REMAINDER)
    codec.set_defaults(sync_handler=run_codec_server)


def _passthrough(args: argparse.Namespace, out: Output) -> list[str]:
    rest = list(getattr(args, "rest", []) or [])
    if out.json_mode and "--json" not in rest:
        rest.append("--json")
    return rest


def run_up(args: argparse.Namespace, out: Output) -> int:
    return up_main(_passthrough(args, out))


def run_token_issue(args: argparse.Namespace, out: Output) -> int:
    return token_issue_main(_passthrough(args, out))


def run_audit_verify(args: argparse.Namespace, out: Output) -> int:
    return audit_verify_main(_passthrough(args, out))


def run_codec_server(args: argparse.Namespace, out: Output) -> int:
    return codec_server_main(_passthrough(args, out))


async def run_seed(args: argparse.Namespace, out: Output) -> int:
    summary = await seed()
    if out.json_mode:
        out.document(summary)
        return 0
    for kind in (
        "organisations",
        "shelters",
        "legal_providers",
        "programmes",
        "care_units",
        "psychosocial_providers",
    ):
        print(f"{kind}: {summary[kind]}", file=sys.stdout)
    for line in accounts_text(summary["accounts"]):
        print(line, file=sys.stdout)
    return 0
