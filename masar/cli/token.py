"""`masar token issue`: signed bearer tokens for the local stack (or any
deployment whose issuer key is in MASAR_TOKEN_SIGNING_KEY)."""

from __future__ import annotations

import argparse
import json
import sys

from masar.platform.identity import Role, TokenIssuer, parse_duration
from masar.platform.settings import SettingsError


def token_issue_main(argv: list[str]) -> int:
    """`masar token issue --role R [--org O] [--region R] [--ttl 8h] [--subject S] [--json]`
    (argv: the arguments after `issue`). Prints the token."""
    parser = argparse.ArgumentParser(
        prog="masar token issue", description="Issue a signed bearer token for the local stack."
    )
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--org", default="", help="shelter / provider / programme / association id")
    parser.add_argument("--region", default="", help="region slug, e.g. fes-meknes")
    parser.add_argument("--ttl", default="8h", help="lifetime: 90s, 15m, 8h, 7d (default 8h)")
    parser.add_argument("--subject", default=None, help="opaque user or service id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        ttl = parse_duration(args.ttl)
        issuer = TokenIssuer.from_env()
        token = issuer.issue(
            role=args.role, subject=args.subject, org=args.org, region=args.region, ttl=ttl
        )
    except SettingsError as exc:
        print(f"masar token issue: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"masar token issue: {exc}", file=sys.stderr)
        return 2
    caller = issuer.verifier().verify(token)
    if args.json:
        print(
            json.dumps(
                {
                    "token": token,
                    "subject": caller.subject,
                    "role": caller.role.value,
                    "org": caller.org,
                    "region": caller.region,
                    "issued_at": caller.issued_at.isoformat(),
                    "expires_at": caller.expires_at.isoformat(),
                }
            )
        )
    else:
        print(token)
    return 0
