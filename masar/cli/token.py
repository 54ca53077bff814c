"""`masar token issue`: a bearer token for a role and scope, issued by the
network service (the identity provider; the CLI holds no signing key).

Who asks: a network administrator (her MASAR_TOKEN or her signed-in
session: `IdentityService.IssueToken`), else — on the local stack — the
stack's bootstrap client (`IssueClientToken`, with the client key `masar up`
created). A token lives at most 12 hours."""

from __future__ import annotations

import argparse
import base64
import json
import sys

import grpc

from masar.cli.connect import local_client
from masar.cli.output import CliError
from masar.cli.session import signed_in_token
from masar.platform.channels import StaticToken, TokenSource, TokenUnavailable, sync_channel
from masar.platform.identity import METADATA_KEY, Role, check_claims, parse_duration
from masar.platform.settings import CliSettings, SettingsError
from masar.v1 import identity_pb2, identity_pb2_grpc

TIMEOUT = 15.0


def _admin(cli: CliSettings) -> TokenSource | None:
    if cli.token is not None:
        return StaticToken(cli.token)
    return signed_in_token(cli)


def _ask(cli: CliSettings, spec: identity_pb2.TokenSpec) -> identity_pb2.IssueTokenResponse:
    address = cli.common.service_addrs["network"]
    admin = _admin(cli)
    client = None if admin is not None else local_client(cli)
    try:
        with sync_channel(address, tls=cli.common.tls) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            reply: identity_pb2.IssueTokenResponse
            if admin is not None:
                reply = stub.IssueToken(
                    identity_pb2.IssueTokenRequest(spec=spec),
                    metadata=((METADATA_KEY, f"Bearer {admin.token()}"),),
                    timeout=TIMEOUT,
                )
            else:
                assert client is not None
                request = identity_pb2.IssueClientTokenRequest(
                    client_assertion=client.assertion(), spec=spec
                )
                reply = stub.IssueClientToken(request, timeout=TIMEOUT)
            return reply
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise CliError(
                f"the network service ({address}) is not reachable: is the stack running? "
                "(`masar up`)"
            ) from None
        name = code.name.lower() if code is not None else "error"
        detail = exc.details() if hasattr(exc, "details") else ""
        raise CliError(f"the network service refused: {name}: {detail}") from None


def token_issue_main(argv: list[str]) -> int:
    """`masar token issue --role R [--org O] [--region R] [--ttl 8h] [--subject S] [--json]`
    (argv: the arguments after `issue`). Prints the token."""
    parser = argparse.ArgumentParser(
        prog="masar token issue",
        description="Issue a bearer token (by the network service) for a role and scope.",
    )
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--org", default="", help="the organisation id (staff, officers)")
    parser.add_argument("--region", default="", help="region slug, e.g. fes-meknes")
    parser.add_argument("--ttl", default="8h", help="lifetime: 90s, 15m, 8h (at most 12h)")
    parser.add_argument("--subject", default="", help="opaque user or service id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        ttl = parse_duration(args.ttl)
        role = check_claims(role=args.role, org=args.org, region=args.region, ttl=ttl, scoped=True)
        spec = identity_pb2.TokenSpec(
            role=role.value,
            organisation_id=args.org,
            region=args.region,
            subject=args.subject,
            ttl_seconds=int(ttl.total_seconds()),
        )
        reply = _ask(CliSettings.from_env(), spec)
    except SettingsError as exc:
        print(f"masar token issue: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"masar token issue: {exc}", file=sys.stderr)
        return 2
    except (CliError, TokenUnavailable) as exc:
        print(f"masar token issue: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CliError) else 1
    if args.json:
        print(
            json.dumps(
                {
                    "token": reply.token,
                    "token_id": reply.token_id,
                    "subject": _claim(reply.token, "sub"),
                    "role": role.value,
                    "org": args.org,
                    "region": args.region,
                    "audiences": list(reply.audiences),
                    "issued_at": reply.issued_at.ToDatetime().isoformat() + "+00:00",
                    "expires_at": reply.expires_at.ToDatetime().isoformat() + "+00:00",
                }
            )
        )
    else:
        print(reply.token)
    return 0


def _claim(token: str, name: str) -> str:
    """One claim of a token the network service just gave (not verified
    here: it is printed, never trusted)."""
    try:
        body = token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return str(doc.get(name, ""))
    except (IndexError, ValueError):
        return ""
