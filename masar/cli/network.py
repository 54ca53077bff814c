"""The referral network's administration: `masar org ...` and `masar account ...`.

Every command calls masar.v1.NetworkService as the signed-in person (or
MASAR_TOKEN), and the service decides what she may do: a network
administrator creates organisations anywhere and manages coordinators,
administrators and operators; a coordinator manages the organisations and the
other accounts of her region and resets their credentials; an organisation
supervisor manages her organisation's accounts.

On the local stack without a sign-in (the development shortcut) a command acts
as someone who may do it: a network administrator for organisations and for
the accounts she manages, else the coordinator of the account's region.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from masar import contract as c
from masar.cli import connect
from masar.cli.output import CliError, Output
from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc

T = TypeVar("T")
PAGE_SIZE = 100

NETWORK_ADMIN = connect.Identity(Role.NETWORK_ADMIN)
# A filter left open (an enum's UNSPECIFIED value).
ANY: Any = 0
# Roles only a network administrator manages (services/network/domain.py).
ADMIN_MANAGED = frozenset({"coordinator", "network_admin", "operator"})


def _codes(enum: Any, prefix: str) -> dict[str, Any]:
    """A protobuf enum as {code: value}: ORGANISATION_KIND_ASSOCIATION -> association."""
    return {name.removeprefix(prefix).lower(): value for name, value in enum.items() if value != 0}


KINDS = _codes(pb.OrganisationKind, "ORGANISATION_KIND_")
SECTORS = _codes(pb.ServedSector, "SERVED_SECTOR_")
LANGUAGES = _codes(pb.SpokenLanguage, "SPOKEN_LANGUAGE_")
ROLES = _codes(pb.AccountRole, "ACCOUNT_ROLE_")
PREFERRED = _codes(pb.PreferredLanguage, "PREFERRED_LANGUAGE_")
DISABLE_REASONS = _codes(pb.DisableReason, "DISABLE_REASON_")
ORG_STATUSES = _codes(pb.OrganisationStatus, "ORGANISATION_STATUS_")
ACCOUNT_STATUSES = _codes(pb.AccountStatus, "ACCOUNT_STATUS_")


def code_of(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def comma_list(value: str, allowed: dict[str, Any], flag: str) -> list[Any]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise CliError(f"{flag}: give at least one of {', '.join(allowed)}", exit_code=2)
    for item in items:
        if item not in allowed:
            raise CliError(
                f"{flag}: unknown value {item!r} (choose from {', '.join(allowed)})", exit_code=2
            )
    return [allowed[item] for item in items]


# --- the commands' shape -----------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    org = sub.add_parser("org", help="organisations of the referral network", parents=[common])
    org_sub = org.add_subparsers(dest="org_command", metavar="ACTION", required=True)

    create = org_sub.add_parser("create", help="register an organisation", parents=[common])
    create.add_argument("--name", required=True, help="its public name")
    create.add_argument("--kind", required=True, choices=list(KINDS))
    create.add_argument("--region", required=True, choices=list(c.REGIONS))
    create.add_argument(
        "--languages", default="arabic,french", help="comma list of " + ",".join(LANGUAGES)
    )
    create.add_argument("--sectors", required=True, help="comma list of " + ",".join(SECTORS))
    create.add_argument("--idempotency-key", help="retrying with the same key creates nothing new")
    create.set_defaults(handler=create_org)

    listing = org_sub.add_parser("list", help="organisations (filters combine)", parents=[common])
    listing.add_argument("--region", choices=list(c.REGIONS))
    listing.add_argument("--kind", choices=list(KINDS))
    listing.add_argument("--status", choices=list(ORG_STATUSES))
    listing.set_defaults(handler=list_orgs)

    for name, helptext, handler in (
        ("show", "one organisation", show_org),
        ("suspend", "suspend: its staff can no longer sign in", suspend_org),
        ("reinstate", "reinstate a suspended organisation", reinstate_org),
    ):
        one = org_sub.add_parser(name, help=helptext, parents=[common])
        one.add_argument("organisation_id", metavar="ORG_ID")
        one.set_defaults(handler=handler)

    account = sub.add_parser("account", help="staff accounts", parents=[common])
    acc_sub = account.add_subparsers(dest="account_command", metavar="ACTION", required=True)

    new = acc_sub.add_parser(
        "create", help="create an account; prints her first password once", parents=[common]
    )
    new.add_argument("--org", required=True, metavar="ORG_ID", help="her organisation")
    new.add_argument("--role", required=True, choices=list(ROLES))
    new.add_argument("--username", required=True, help="letters, digits, '.', '_', '-'")
    new.add_argument("--display-name", required=True)
    new.add_argument("--email", required=True)
    new.add_argument("--mobile", default="", help="E.164, e.g. +212612345678 (optional)")
    new.add_argument("--language", choices=list(PREFERRED), default="fr")
    new.add_argument("--idempotency-key", help="retrying with the same key creates nothing new")
    new.set_defaults(handler=create_account)

    accounts = acc_sub.add_parser("list", help="the accounts you manage", parents=[common])
    accounts.add_argument("--org", metavar="ORG_ID")
    accounts.add_argument("--region", choices=list(c.REGIONS))
    accounts.add_argument("--role", choices=list(ROLES))
    accounts.add_argument("--status", choices=list(ACCOUNT_STATUSES))
    accounts.set_defaults(handler=list_accounts)

    for name, helptext, handler in (
        ("show", "one account", show_account),
        ("enable", "re-enable a disabled account", enable_account),
        ("reset-password", "a new first password (she changes it at sign-in)", reset_password),
        ("reset-totp", "a lost authenticator: a new enrolment URI", reset_totp),
    ):
        one = acc_sub.add_parser(name, help=helptext, parents=[common])
        one.add_argument("account_id", metavar="ACCOUNT_ID")
        one.set_defaults(handler=handler)

    disable = acc_sub.add_parser(
        "disable", help="disable (never deleted): her sessions end at once", parents=[common]
    )
    disable.add_argument("account_id", metavar="ACCOUNT_ID")
    disable.add_argument("--reason", required=True, choices=list(DISABLE_REASONS))
    disable.set_defaults(handler=disable_account)


# --- calls -------------------------------------------------------------------------------


async def call(
    identity: connect.Identity,
    method: Callable[[network_pb2_grpc.NetworkServiceStub], Callable[[Any], Awaitable[T]]],
    request: Any,
) -> T:
    """One NetworkService call as the person (or, on the local stack, `identity`)."""
    async with connect.channel("network", identity) as chan:
        stub = network_pb2_grpc.NetworkServiceStub(chan)
        return await connect.rpc("network", lambda: method(stub)(request))


def _key(given: str | None) -> str:
    return given or f"cli-{secrets.token_hex(8)}"


def _coordinator(region: str) -> connect.Identity:
    return connect.Identity(Role.COORDINATOR, region=region)


async def _organisation(organisation_id: str) -> pb.Organisation:
    reply = await call(
        NETWORK_ADMIN,
        lambda s: s.GetOrganisation,
        pb.GetOrganisationRequest(organisation_id=organisation_id),
    )
    organisation: pb.Organisation = reply.organisation
    return organisation


async def _account_manager(account_id: str) -> connect.Identity:
    """Development shortcut only: who on the local stack manages the account
    — its administrator, else the coordinator of its region (found by asking
    as each region's coordinator: the service tells no one else)."""
    if connect.own_token() is not None:
        return NETWORK_ADMIN  # unused: the person's own token is presented
    request = pb.GetAccountRequest(account_id=account_id)
    for identity in (NETWORK_ADMIN, *(_coordinator(r) for r in c.REGIONS)):
        async with connect.channel("network", identity) as chan:
            stub = network_pb2_grpc.NetworkServiceStub(chan)
            try:
                await stub.GetAccount(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                    continue
                return identity  # the call itself says what is wrong
            return identity
    return NETWORK_ADMIN


# --- documents ---------------------------------------------------------------------------


def org_doc(o: pb.Organisation) -> dict[str, Any]:
    return {
        "organisation_id": o.organisation_id,
        "name": o.name,
        "kind": code_of(pb.OrganisationKind, "ORGANISATION_KIND_", o.kind),
        "region": o.region,
        "languages": [code_of(pb.SpokenLanguage, "SPOKEN_LANGUAGE_", v) for v in o.languages],
        "sectors": [code_of(pb.ServedSector, "SERVED_SECTOR_", v) for v in o.sectors],
        "status": code_of(pb.OrganisationStatus, "ORGANISATION_STATUS_", o.status),
        "created_at": o.created_at.ToDatetime().isoformat() + "Z",
    }


def account_doc(a: pb.Account) -> dict[str, Any]:
    return {
        "account_id": a.account_id,
        "username": a.username,
        "display_name": a.display_name,
        "role": code_of(pb.AccountRole, "ACCOUNT_ROLE_", a.role),
        "organisation_id": a.organisation_id,
        "region": a.region,
        "email": a.email,
        "mobile": a.mobile,
        "language": code_of(pb.PreferredLanguage, "PREFERRED_LANGUAGE_", a.language),
        "status": code_of(pb.AccountStatus, "ACCOUNT_STATUS_", a.status),
        "totp_required": a.totp_required,
        "password_change_required": a.password_change_required,
    }


def _org_rows(out: Output, docs: list[dict[str, Any]]) -> None:
    out.table(
        ["organisation", "kind", "region", "status", "sectors", "name"],
        [
            [
                d["organisation_id"],
                d["kind"],
                d["region"],
                d["status"],
                ",".join(d["sectors"]),
                d["name"],
            ]
            for d in docs
        ],
    )


def _account_rows(out: Output, docs: list[dict[str, Any]]) -> None:
    out.table(
        ["account", "username", "role", "organisation", "region", "status", "totp"],
        [
            [
                d["account_id"],
                d["username"],
                d["role"],
                d["organisation_id"],
                d["region"],
                d["status"],
                "yes" if d["totp_required"] else "-",
            ]
            for d in docs
        ],
    )


def _show_one(
    out: Output, doc: dict[str, Any], rows: Callable[[Output, list[dict[str, Any]]], None]
) -> int:
    if out.json_mode:
        out.document(doc)
    else:
        rows(out, [doc])
    return 0


# --- organisations -----------------------------------------------------------------------


async def create_org(args: argparse.Namespace, out: Output) -> int:
    request = pb.CreateOrganisationRequest(
        name=args.name,
        kind=KINDS[args.kind],
        region=args.region,
        languages=comma_list(args.languages, LANGUAGES, "--languages"),
        sectors=comma_list(args.sectors, SECTORS, "--sectors"),
        idempotency_key=_key(args.idempotency_key),
    )
    reply = await call(NETWORK_ADMIN, lambda s: s.CreateOrganisation, request)
    doc = org_doc(reply.organisation)
    if out.json_mode:
        out.document(doc)
    else:
        out.line(
            f"organisation {doc['organisation_id']} registered: {doc['name']} "
            f"({doc['kind']}, {doc['region']})"
        )
    return 0


async def list_orgs(args: argparse.Namespace, out: Output) -> int:
    docs: list[dict[str, Any]] = []
    token = ""
    while True:
        request = pb.ListOrganisationsRequest(
            region=args.region or "",
            kind=KINDS[args.kind] if args.kind else ANY,
            status=ORG_STATUSES[args.status] if args.status else ANY,
            page_size=PAGE_SIZE,
            page_token=token,
        )
        reply = await call(NETWORK_ADMIN, lambda s: s.ListOrganisations, request)
        docs += [org_doc(o) for o in reply.organisations]
        token = reply.next_page_token
        if not token:
            break
    if out.json_mode:
        out.document(docs)
    elif docs:
        _org_rows(out, docs)
    else:
        out.line("no organisation matches")
    return 0


async def show_org(args: argparse.Namespace, out: Output) -> int:
    return _show_one(out, org_doc(await _organisation(args.organisation_id)), _org_rows)


async def _org_status(args: argparse.Namespace, out: Output, what: str) -> int:
    if what == "suspended":
        request: Any = pb.SuspendOrganisationRequest(organisation_id=args.organisation_id)
        reply = await call(NETWORK_ADMIN, lambda s: s.SuspendOrganisation, request)
    else:
        request = pb.ReinstateOrganisationRequest(organisation_id=args.organisation_id)
        reply = await call(NETWORK_ADMIN, lambda s: s.ReinstateOrganisation, request)
    doc = org_doc(reply.organisation)
    if out.json_mode:
        out.document(doc)
    else:
        out.line(f"organisation {doc['organisation_id']} {what} ({doc['name']})")
    return 0


async def suspend_org(args: argparse.Namespace, out: Output) -> int:
    return await _org_status(args, out, "suspended")


async def reinstate_org(args: argparse.Namespace, out: Output) -> int:
    return await _org_status(args, out, "reinstated")


# --- accounts ----------------------------------------------------------------------------


async def create_account(args: argparse.Namespace, out: Output) -> int:
    manager = NETWORK_ADMIN
    if args.role not in ADMIN_MANAGED and connect.own_token() is None:
        manager = _coordinator((await _organisation(args.org)).region)
    request = pb.CreateAccountRequest(
        username=args.username,
        display_name=args.display_name,
        role=ROLES[args.role],
        organisation_id=args.org,
        email=args.email,
        mobile=args.mobile,
        language=PREFERRED[args.language],
        idempotency_key=_key(args.idempotency_key),
    )
    reply = await call(manager, lambda s: s.CreateAccount, request)
    doc = {
        **account_doc(reply.account),
        "first_password": reply.one_time_password or None,
        "totp_uri": reply.totp_uri or None,
    }
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(
        f"account {doc['account_id']} created: {doc['username']} "
        f"({doc['role']}, {doc['organisation_id']})"
    )
    if doc["first_password"]:
        out.line(f"  first password: {doc['first_password']}  (shown once)")
        out.line(f"  she changes it at sign-in: masar password change --username {doc['username']}")
    else:
        out.line(
            "  already created by this request: its first password was shown then "
            "(a new one: masar account reset-password)"
        )
    if doc["totp_uri"]:
        out.line(f"  authenticator app enrolment: {doc['totp_uri']}")
    return 0


async def list_accounts(args: argparse.Namespace, out: Output) -> int:
    manager = NETWORK_ADMIN
    if connect.own_token() is None:
        region = args.region or (args.org and (await _organisation(args.org)).region)
        if region and args.role not in ADMIN_MANAGED:
            manager = _coordinator(region)
    docs: list[dict[str, Any]] = []
    token = ""
    while True:
        request = pb.ListAccountsRequest(
            organisation_id=args.org or "",
            region=args.region or "",
            role=ROLES[args.role] if args.role else ANY,
            status=ACCOUNT_STATUSES[args.status] if args.status else ANY,
            page_size=PAGE_SIZE,
            page_token=token,
        )
        reply = await call(manager, lambda s: s.ListAccounts, request)
        docs += [account_doc(a) for a in reply.accounts]
        token = reply.next_page_token
        if not token:
            break
    if out.json_mode:
        out.document(docs)
    elif docs:
        _account_rows(out, docs)
    else:
        out.line("no account you manage matches")
    return 0


async def show_account(args: argparse.Namespace, out: Output) -> int:
    manager = await _account_manager(args.account_id)
    reply = await call(
        manager, lambda s: s.GetAccount, pb.GetAccountRequest(account_id=args.account_id)
    )
    doc = account_doc(reply.account)
    if out.json_mode:
        out.document(doc)
        return 0
    for key in (
        "account_id",
        "username",
        "display_name",
        "role",
        "organisation_id",
        "region",
        "email",
        "mobile",
        "language",
        "status",
    ):
        out.line(f"{key.replace('_', ' '):>16}: {doc[key] or '-'}")
    out.line(f"{'second factor':>16}: {'TOTP' if doc['totp_required'] else '-'}")
    if doc["password_change_required"]:
        out.line(f"{'password':>16}: a first password, to be changed at sign-in")
    return 0


async def _account_action(
    args: argparse.Namespace, out: Output, what: str, method: Callable[[Any], Any], request: Any
) -> int:
    manager = await _account_manager(args.account_id)
    reply = await call(manager, method, request)
    doc = account_doc(reply.account)
    password = getattr(reply, "one_time_password", "")
    uri = getattr(reply, "totp_uri", "")
    if password:
        doc["first_password"] = password
    if uri:
        doc["totp_uri"] = uri
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(f"account {doc['account_id']} ({doc['username']}) {what}")
    if password:
        out.line(f"  first password: {password}  (shown once; she changes it at sign-in)")
    if uri:
        out.line(f"  authenticator app enrolment: {uri}")
    return 0


async def disable_account(args: argparse.Namespace, out: Output) -> int:
    request = pb.DisableAccountRequest(
        account_id=args.account_id, reason=DISABLE_REASONS[args.reason]
    )
    return await _account_action(
        args, out, "disabled; her sessions are over", lambda s: s.DisableAccount, request
    )


async def enable_account(args: argparse.Namespace, out: Output) -> int:
    request = pb.EnableAccountRequest(account_id=args.account_id)
    return await _account_action(args, out, "enabled", lambda s: s.EnableAccount, request)


async def reset_password(args: argparse.Namespace, out: Output) -> int:
    request = pb.ResetPasswordRequest(account_id=args.account_id)
    return await _account_action(
        args,
        out,
        "has a new first password; her sessions are over",
        lambda s: s.ResetPassword,
        request,
    )


async def reset_totp(args: argparse.Namespace, out: Output) -> int:
    request = pb.ResetTotpRequest(account_id=args.account_id)
    return await _account_action(
        args,
        out,
        "has a new authenticator enrolment; her sessions are over",
        lambda s: s.ResetTotp,
        request,
    )
