"""Case transfers between organisations: intake's transfer RPCs.

- `masar case transfer CASE_ID --to ORG --reason R --consent`: an officer or
  supervisor of the organisation holding the case asks another to take it
  over; the survivor's consent to the transfer is required (and recorded).
- `masar transfer accept|decline TRANSFER_ID [--reason R]`: the organisation
  the request is addressed to answers, before the `transfer_accept`
  deadline; accepted, it holds the case and the previous holder loses access.
- `masar transfer redirect TRANSFER_ID --to ORG --consent`: a coordinator of
  the case's region addresses a waiting request to another organisation.
- `masar transfer show TRANSFER_ID`, `masar transfers [--case CASE_ID]`:
  what both organisations and the region's coordinators see.

Signed in (or with MASAR_TOKEN) each command acts as the person. On the local
stack without a sign-in (the development shortcut) it acts as the role the
command stands for: it first looks the case or the transfer up as the
region's coordinator, then acts as an officer of the holding organisation
(`case transfer`) or of the receiving one (`accept`, `decline`), or as the
coordinator of the transfer's region (`redirect`, lists).
"""

from __future__ import annotations

import argparse
import re
import secrets
from typing import Any

import grpc

from masar import contract as c
from masar.cli import connect
from masar.cli.journeys import (
    coordinator,
    first_in_scope,
    time_of,
    transfer_reason_of,
    transfer_status_of,
)
from masar.cli.output import CliError, Output, when
from masar.contract.transfer import TRANSFER_ID_PREFIX
from masar.platform.identity import Role
from masar.v1 import common_pb2, intake_pb2, intake_pb2_grpc

# The reasons a person gives on the command line (her_request: she asked for it).
REASONS = {
    "closer_to_home": intake_pb2.TRANSFER_REASON_CLOSER_TO_HOME,
    "specialised_service": intake_pb2.TRANSFER_REASON_SPECIALISED_SERVICE,
    "capacity": intake_pb2.TRANSFER_REASON_CAPACITY,
    "language": intake_pb2.TRANSFER_REASON_LANGUAGE,
    "her_request": intake_pb2.TRANSFER_REASON_SURVIVOR_REQUEST,
}
REASON_WORDS = {
    c.TransferReason.CLOSER_TO_HOME: "closer to home",
    c.TransferReason.SPECIALISED_SERVICE: "specialised service",
    c.TransferReason.CAPACITY: "capacity",
    c.TransferReason.LANGUAGE: "language",
    c.TransferReason.SURVIVOR_REQUEST: "her request",
}
DECLINE_REASONS = {
    name.removeprefix("TRANSFER_DECLINE_REASON_").lower(): value
    for name, value in intake_pb2.TransferDeclineReason.items()
    if value
}
STATUSES = {
    name.removeprefix("TRANSFER_STATUS_").lower(): value
    for name, value in intake_pb2.TransferStatus.items()
    if value
}
CONSENT_REQUIRED = (
    "the survivor's consent to the transfer is required: ask her first, "
    "then record it with --consent"
)
TRANSFER_ID = re.compile(rf"{TRANSFER_ID_PREFIX}-[0-9a-f]{{16}}")
PAGE_SIZE = 200


def register_case(case_sub: Any, common: argparse.ArgumentParser) -> None:
    transfer = case_sub.add_parser(
        "transfer",
        help="ask another organisation to take the case over (her consent required)",
        parents=[common],
    )
    transfer.add_argument("case_id", metavar="CASE_ID")
    transfer.add_argument("--to", required=True, metavar="ORG_ID", dest="to_org")
    transfer.add_argument(
        "--reason", required=True, choices=list(REASONS), help="her_request: she asked for it"
    )
    transfer.add_argument(
        "--consent", action="store_true", help="she consents to this transfer (required)"
    )
    transfer.set_defaults(handler=request_transfer)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    transfer = sub.add_parser(
        "transfer", help="answer, redirect or show a case transfer", parents=[common]
    )
    t_sub = transfer.add_subparsers(dest="transfer_command", metavar="ACTION", required=True)

    accept = t_sub.add_parser(
        "accept", help="the receiving organisation takes the case over", parents=[common]
    )
    accept.add_argument("transfer_id", metavar="TRANSFER_ID")
    accept.set_defaults(handler=accept_transfer)

    decline = t_sub.add_parser(
        "decline", help="the receiving organisation declines, with a reason", parents=[common]
    )
    decline.add_argument("transfer_id", metavar="TRANSFER_ID")
    decline.add_argument("--reason", required=True, choices=list(DECLINE_REASONS))
    decline.set_defaults(handler=decline_transfer)

    redirect = t_sub.add_parser(
        "redirect",
        help="coordinator: address a waiting request to another organisation",
        parents=[common],
    )
    redirect.add_argument("transfer_id", metavar="TRANSFER_ID")
    redirect.add_argument("--to", required=True, metavar="ORG_ID", dest="to_org")
    redirect.add_argument(
        "--consent",
        action="store_true",
        help="she consents to the transfer to that organisation (required)",
    )
    redirect.set_defaults(handler=redirect_transfer)

    show = t_sub.add_parser("show", help="one transfer", parents=[common])
    show.add_argument("transfer_id", metavar="TRANSFER_ID")
    show.set_defaults(handler=show_transfer)

    listing = sub.add_parser(
        "transfers", help="transfers you may see, newest first", parents=[common]
    )
    listing.add_argument("--case", metavar="CASE_ID", dest="case_id")
    listing.add_argument("--status", choices=list(STATUSES))
    listing.set_defaults(handler=list_transfers)


# --- documents -----------------------------------------------------------------------------


def transfer_doc(t: intake_pb2.Transfer) -> dict[str, Any]:
    decline = ""
    if t.decline_reason:
        decline = (
            intake_pb2.TransferDeclineReason.Name(t.decline_reason)
            .removeprefix("TRANSFER_DECLINE_REASON_")
            .lower()
        )
    return {
        "transfer_id": t.transfer_id,
        "case_id": t.case_id,
        "region": t.region,
        "from_organisation_id": t.from_organisation_id,
        "to_organisation_id": t.to_organisation_id,
        "reason": transfer_reason_of(t.reason),
        "status": transfer_status_of(t.status),
        "requested_at": time_of(t, "requested_at"),
        "consent_recorded_at": time_of(t, "consent_recorded_at"),
        "decided_at": time_of(t, "decided_at"),
        "decline_reason": decline or None,
        "redirect_count": t.redirect_count,
        "updated_at": time_of(t, "updated_at"),
    }


def _delivery(value: Any) -> str:
    return common_pb2.DeliveryState.Name(value).removeprefix("DELIVERY_STATE_")


def _changed(reply: Any) -> dict[str, Any]:
    return {
        **transfer_doc(reply.transfer),
        "change_id": reply.change_id,
        "delivery": _delivery(reply.delivery),
    }


def _queued_note(out: Output, doc: dict[str, Any]) -> None:
    if doc["delivery"] == "QUEUED":
        out.line("  the journey will hear of it as soon as Temporal is reachable")


# --- whom a command acts as ----------------------------------------------------------------


def _check_transfer_id(transfer_id: str) -> str:
    if not TRANSFER_ID.fullmatch(transfer_id):
        raise CliError(
            f"TRANSFER_ID must look like {TRANSFER_ID_PREFIX}- and 16 hex digits "
            "(as `masar transfers` shows it)",
            exit_code=2,
        )
    return transfer_id


def _coordinators() -> list[connect.Identity]:
    return [coordinator(region) for region in c.REGIONS]


def _stub(chan: grpc.aio.Channel) -> intake_pb2_grpc.IntakeServiceStub:
    return intake_pb2_grpc.IntakeServiceStub(chan)


async def fetch_transfer(transfer_id: str) -> intake_pb2.Transfer:
    """The transfer as the person sees it, or (the local shortcut) as the
    coordinator of its region."""
    request = intake_pb2.GetTransferRequest(transfer_id=_check_transfer_id(transfer_id))

    async def get(chan: grpc.aio.Channel) -> intake_pb2.GetTransferResponse:
        reply: intake_pb2.GetTransferResponse = await _stub(chan).GetTransfer(request)
        return reply

    reply, _ = await first_in_scope(
        get, _coordinators(), not_found=f"unknown transfer {transfer_id}"
    )
    return reply.transfer


async def _holder_of(case_id: str) -> connect.Identity:
    """The local shortcut's officer of the organisation holding the case."""
    request = intake_pb2.GetCaseFollowUpRequest(case_id=case_id)

    async def get(chan: grpc.aio.Channel) -> intake_pb2.GetCaseFollowUpResponse:
        reply: intake_pb2.GetCaseFollowUpResponse = await _stub(chan).GetCaseFollowUp(request)
        return reply

    reply, _ = await first_in_scope(get, _coordinators(), not_found=f"unknown case {case_id}")
    holder = reply.follow_up.summary.holding_organisation_id
    if not holder:
        raise CliError(
            f"case {case_id} is held by no organisation (registered with the local stack's "
            "development identity): only a case an organisation holds is transferred"
        )
    return connect.Identity(Role.INTAKE_OFFICER, org=holder)


async def _call(identity: connect.Identity, method: str, request: Any) -> Any:
    async with connect.channel("intake", identity) as chan:
        stub = _stub(chan)
        return await connect.rpc("intake", lambda: getattr(stub, method)(request))


def _key() -> str:
    return f"cli-{secrets.token_hex(8)}"


# --- commands ------------------------------------------------------------------------------


async def request_transfer(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id)
    if not args.consent:
        raise CliError(CONSENT_REQUIRED, exit_code=2)
    identity = connect.INTAKE_OFFICER
    if connect.own_token() is None:
        identity = await _holder_of(case_id)
    request = intake_pb2.RequestTransferRequest(
        case_id=case_id,
        to_organisation_id=args.to_org,
        reason=REASONS[args.reason],
        survivor_consents=True,
        idempotency_key=_key(),
    )
    doc = _changed(await _call(identity, "RequestTransfer", request))
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(
        f"transfer {doc['transfer_id']} asked: case {case_id} from "
        f"{doc['from_organisation_id']} to {doc['to_organisation_id']} "
        f"({REASON_WORDS.get(doc['reason'], doc['reason'])}; her consent recorded)"
    )
    out.line(
        f"  {doc['to_organisation_id']} accepts or declines before its "
        f"{c.TRANSFER_ACCEPT_WAIT} deadline: masar transfer accept {doc['transfer_id']}"
    )
    _queued_note(out, doc)
    return 0


async def _decide(
    args: argparse.Namespace, out: Output, *, accept: bool, reason: str | None
) -> int:
    transfer_id = _check_transfer_id(args.transfer_id)
    identity = connect.INTAKE_OFFICER
    if connect.own_token() is None:
        found = await fetch_transfer(transfer_id)
        identity = connect.Identity(Role.INTAKE_OFFICER, org=found.to_organisation_id)
    request = intake_pb2.DecideTransferRequest(
        transfer_id=transfer_id,
        accept=accept,
        decline_reason=(
            DECLINE_REASONS[reason] if reason else intake_pb2.TRANSFER_DECLINE_REASON_UNSPECIFIED
        ),
        idempotency_key=_key(),
    )
    reply = await _call(identity, "DecideTransfer", request)
    doc = {**_changed(reply), "holding_organisation_id": reply.case.holding_organisation_id}
    if out.json_mode:
        out.document(doc)
        return 0
    if accept:
        out.line(
            f"transfer {transfer_id} accepted: {doc['holding_organisation_id']} holds "
            f"case {doc['case_id']} now ({doc['from_organisation_id']} no longer sees it)"
        )
    else:
        out.line(
            f"transfer {transfer_id} declined ({reason}): case {doc['case_id']} stays with "
            f"{doc['holding_organisation_id'] or doc['from_organisation_id']}"
        )
    _queued_note(out, doc)
    return 0


async def accept_transfer(args: argparse.Namespace, out: Output) -> int:
    return await _decide(args, out, accept=True, reason=None)


async def decline_transfer(args: argparse.Namespace, out: Output) -> int:
    return await _decide(args, out, accept=False, reason=args.reason)


async def redirect_transfer(args: argparse.Namespace, out: Output) -> int:
    transfer_id = _check_transfer_id(args.transfer_id)
    if not args.consent:
        raise CliError(CONSENT_REQUIRED, exit_code=2)
    identity = coordinator("")
    if connect.own_token() is None:
        identity = coordinator((await fetch_transfer(transfer_id)).region)
    request = intake_pb2.RedirectTransferRequest(
        transfer_id=transfer_id,
        to_organisation_id=args.to_org,
        survivor_consents=True,
        idempotency_key=_key(),
    )
    doc = _changed(await _call(identity, "RedirectTransfer", request))
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(
        f"transfer {transfer_id} redirected to {doc['to_organisation_id']} "
        f"(case {doc['case_id']}); its {c.TRANSFER_ACCEPT_WAIT} wait starts over"
    )
    _queued_note(out, doc)
    return 0


async def show_transfer(args: argparse.Namespace, out: Output) -> int:
    doc = transfer_doc(await fetch_transfer(args.transfer_id))
    if out.json_mode:
        out.document(doc)
    else:
        _rows(out, [doc])
    return 0


async def list_transfers(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id) if args.case_id else ""
    status = STATUSES[args.status] if args.status else intake_pb2.TRANSFER_STATUS_UNSPECIFIED
    identities = [connect.INTAKE_OFFICER] if connect.own_token() is not None else _coordinators()
    docs: list[dict[str, Any]] = []
    for identity in identities:
        token = ""
        while True:
            request = intake_pb2.ListTransfersRequest(
                case_id=case_id, status=status, page_size=PAGE_SIZE, page_token=token
            )
            reply = await _call(identity, "ListTransfers", request)
            docs += [transfer_doc(t) for t in reply.transfers]
            token = reply.next_page_token
            if not token:
                break
    docs.sort(key=lambda d: d["requested_at"] or d["updated_at"], reverse=True)
    if out.json_mode:
        out.document(docs)
    elif docs:
        _rows(out, docs)
    else:
        out.line("no transfer matches")
    return 0


def _rows(out: Output, docs: list[dict[str, Any]]) -> None:
    out.table(
        ["transfer", "case", "from", "to", "reason", "status", "requested", "decided"],
        [
            [
                d["transfer_id"],
                d["case_id"],
                d["from_organisation_id"],
                d["to_organisation_id"],
                REASON_WORDS.get(d["reason"], d["reason"]),
                d["status"] + (f" ({d['decline_reason']})" if d["decline_reason"] else ""),
                when(d["requested_at"]),
                when(d["decided_at"]),
            ]
            for d in docs
        ],
    )
