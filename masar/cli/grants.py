"""Emergency grants, by four eyes: intake's grant RPCs.

- `masar grant request CASE_ID --reason CODE [--note TEXT] [--hours N]`: a
  coordinator asks to open one case outside her region, for a reason
  (`imminent_danger`, `survivor_relocated`, `covering_absence`,
  `court_request`, `survivor_request`) and an optional note (kept
  encrypted, never printed); the request opens nothing by itself.
- `masar grant approve|refuse GRANT_ID`: a second person — a coordinator of
  the case's region or a supervisor of the organisation holding it, never
  the requester — decides it; approved, the case is open to the requester
  for N hours (3 by default, 12 at most) from the approval.
- `masar grant revoke GRANT_ID`: its holder, its approver or such a
  supervisor ends it (a pending request too).
- `masar grants [--case CASE_ID] [--status S]`: the grants the person may
  see — a coordinator's own requests and those on her region's cases, a
  supervisor's on the cases her organisation holds — newest first.

Every command acts as the signed-in person (`masar login`, or MASAR_TOKEN):
four eyes are two people, so the local stack's development shortcut, which
is nobody in particular, is not used here.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from masar.cli import connect
from masar.cli.journeys import time_of
from masar.cli.output import CliError, Output, when
from masar.v1 import intake_pb2, intake_pb2_grpc

REASONS = {
    name.removeprefix("EMERGENCY_REASON_").lower(): value
    for name, value in intake_pb2.EmergencyReason.items()
    if value
}
STATUSES = {
    name.removeprefix("EMERGENCY_GRANT_STATUS_").lower(): value
    for name, value in intake_pb2.EmergencyGrantStatus.items()
    if value
}
GRANT_ID = re.compile(r"egr-[0-9a-f]{16}")
MAX_HOURS = 12
PAGE_SIZE = 200
NEEDS_A_PERSON = (
    "emergency grants are asked for and decided by people, four eyes: sign in with "
    "`masar login` (or set MASAR_TOKEN to your own token)"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    grant = sub.add_parser(
        "grant",
        help="ask for, decide or revoke an emergency grant (four eyes)",
        parents=[common],
    )
    g_sub = grant.add_subparsers(dest="grant_command", metavar="ACTION", required=True)

    request = g_sub.add_parser(
        "request",
        help="coordinator: ask to open a case outside your region (opens nothing until approved)",
        parents=[common],
    )
    request.add_argument("case_id", metavar="CASE_ID")
    request.add_argument("--reason", required=True, choices=list(REASONS))
    request.add_argument(
        "--note", help="optional context for the approver (stored encrypted, never printed)"
    )
    request.add_argument(
        "--hours",
        type=int,
        default=0,
        metavar="N",
        help=f"the window, counted from the approval (default 3, at most {MAX_HOURS})",
    )
    request.set_defaults(handler=request_grant)

    for action, text, handler in (
        (
            "approve",
            "a coordinator of the case's region or a supervisor of its holder opens it",
            approve_grant,
        ),
        ("refuse", "the same second person refuses the request", refuse_grant),
        ("revoke", "its holder, its approver or a supervisor ends it", revoke_grant),
    ):
        step = g_sub.add_parser(action, help=text, parents=[common])
        step.add_argument("grant_id", metavar="GRANT_ID")
        step.set_defaults(handler=handler)

    listing = sub.add_parser(
        "grants", help="emergency grants you may see, newest first", parents=[common]
    )
    listing.add_argument("--case", metavar="CASE_ID", dest="case_id")
    listing.add_argument("--status", choices=list(STATUSES))
    listing.set_defaults(handler=list_grants)


# --- documents -----------------------------------------------------------------------------


def _code(enum: Any, value: int, prefix: str) -> str | None:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower() if value else None
    except ValueError:
        return None


def grant_doc(g: intake_pb2.EmergencyGrant) -> dict[str, Any]:
    return {
        "grant_id": g.grant_id,
        "case_id": g.case_id,
        "case_region": g.case_region,
        "reason": _code(intake_pb2.EmergencyReason, g.reason, "EMERGENCY_REASON_"),
        "status": _code(intake_pb2.EmergencyGrantStatus, g.status, "EMERGENCY_GRANT_STATUS_"),
        "requested_by": g.requested_by,
        "requester_region": g.requester_region or None,
        "requested_at": time_of(g, "requested_at"),
        "ttl_seconds": g.ttl_seconds,
        "decided_by": g.decided_by or None,
        "decided_at": time_of(g, "decided_at"),
        "granted_at": time_of(g, "granted_at"),
        "expires_at": time_of(g, "expires_at"),
        "revoked_by": g.revoked_by or None,
        "revoked_at": time_of(g, "revoked_at"),
    }


def _words(code: str | None) -> str:
    return (code or "-").replace("_", " ")


def _hours(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


# --- calls ---------------------------------------------------------------------------------


def _check_grant_id(grant_id: str) -> str:
    if not GRANT_ID.fullmatch(grant_id):
        raise CliError(
            "GRANT_ID must look like egr- and 16 hex digits (as `masar grants` shows it)",
            exit_code=2,
        )
    return grant_id


async def _call(method: str, request: Any) -> Any:
    """One intake RPC as the signed-in person (never the development shortcut)."""
    person = connect.own_token()
    if person is None:
        raise CliError(NEEDS_A_PERSON)
    async with connect.channel("intake", connect.INTAKE_OFFICER, source=person) as chan:
        stub = intake_pb2_grpc.IntakeServiceStub(chan)
        return await connect.rpc("intake", lambda: getattr(stub, method)(request))


def _print(out: Output, doc: dict[str, Any], text: str, *more: str) -> int:
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(text)
    for line in more:
        out.line(f"  {line}")
    return 0


# --- commands ------------------------------------------------------------------------------


async def request_grant(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id)
    if args.hours and not 1 <= args.hours <= MAX_HOURS:
        raise CliError(f"--hours must be a whole number from 1 to {MAX_HOURS}", exit_code=2)
    request = intake_pb2.OpenEmergencyGrantRequest(
        case_id=case_id,
        reason=REASONS[args.reason],
        note=args.note or "",
        ttl_seconds=args.hours * 3600,
    )
    reply: intake_pb2.OpenEmergencyGrantResponse = await _call("OpenEmergencyGrant", request)
    doc = grant_doc(reply.grant)
    return _print(
        out,
        doc,
        f"emergency grant {doc['grant_id']} asked: case {case_id} ({doc['case_region']}), "
        f"{_words(doc['reason'])}, for {_hours(doc['ttl_seconds'])} from its approval",
        "it opens nothing until a second person approves it — a coordinator of "
        f"{doc['case_region']} or a supervisor of the organisation holding the case: "
        f"masar grant approve {doc['grant_id']}",
    )


async def approve_grant(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.ApproveEmergencyGrantRequest(grant_id=_check_grant_id(args.grant_id))
    reply: intake_pb2.ApproveEmergencyGrantResponse = await _call("ApproveEmergencyGrant", request)
    doc = grant_doc(reply.grant)
    return _print(
        out,
        doc,
        f"emergency grant {doc['grant_id']} approved: case {doc['case_id']} is open to "
        f"{doc['requested_by']} until {when(doc['expires_at'])}",
    )


async def refuse_grant(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.RefuseEmergencyGrantRequest(grant_id=_check_grant_id(args.grant_id))
    reply: intake_pb2.RefuseEmergencyGrantResponse = await _call("RefuseEmergencyGrant", request)
    doc = grant_doc(reply.grant)
    return _print(
        out,
        doc,
        f"emergency grant {doc['grant_id']} refused: case {doc['case_id']} stays closed to "
        f"{doc['requested_by']}",
    )


async def revoke_grant(args: argparse.Namespace, out: Output) -> int:
    request = intake_pb2.RevokeEmergencyGrantRequest(grant_id=_check_grant_id(args.grant_id))
    reply: intake_pb2.RevokeEmergencyGrantResponse = await _call("RevokeEmergencyGrant", request)
    doc = grant_doc(reply.grant)
    return _print(
        out,
        doc,
        f"emergency grant {doc['grant_id']} revoked: case {doc['case_id']} is closed to "
        f"{doc['requested_by']} again",
    )


async def list_grants(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id) if args.case_id else ""
    status = STATUSES[args.status] if args.status else intake_pb2.EMERGENCY_GRANT_STATUS_UNSPECIFIED
    docs: list[dict[str, Any]] = []
    token = ""
    while True:
        request = intake_pb2.ListEmergencyGrantsRequest(
            case_id=case_id, status=status, page_size=PAGE_SIZE, page_token=token
        )
        reply: intake_pb2.ListEmergencyGrantsResponse = await _call("ListEmergencyGrants", request)
        docs += [grant_doc(g) for g in reply.grants]
        token = reply.next_page_token
        if not token:
            break
    if out.json_mode:
        out.document(docs)
    elif docs:
        out.table(
            ["grant", "case", "region", "requested by", "reason", "status", "requested", "until"],
            [
                [
                    d["grant_id"],
                    d["case_id"],
                    d["case_region"],
                    d["requested_by"],
                    _words(d["reason"]),
                    d["status"],
                    when(d["requested_at"]),
                    when(d["expires_at"]),
                ]
                for d in docs
            ],
        )
    else:
        out.line("no emergency grant matches")
    return 0
