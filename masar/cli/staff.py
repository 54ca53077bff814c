"""Sector staff's commands: decide on a referral, record its milestones.

The referral id says which sector it belongs to (shr-, leg-, emp-), so the CLI
calls that sector's gRPC API as the sector's staff would. On the local stack,
unless the person signed in, it acts as the staff of the organisation the
referral is addressed to (the one its provider belongs to): it first looks
the referral up as the sector's service identity (GetReferral, no personal
data) to learn that organisation, then acts with a staff token naming it.
Signed in (`masar login`) or with MASAR_TOKEN it presents the person's own
token, which must be of that organisation's staff.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc

from masar import contract as c
from masar.cli import connect
from masar.cli.output import CliError, Output
from masar.platform.identity import Role
from masar.referral import STAFF_ROLES
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)

DECLINE_REASONS = [
    name.removeprefix("DECLINE_REASON_")
    for name in common_pb2.DeclineReason.keys()  # noqa: SIM118
    if name != "DECLINE_REASON_UNSPECIFIED"
]
STUBS: dict[c.Sector, Any] = {
    c.Sector.SHELTER: shelter_pb2_grpc.ShelterServiceStub,
    c.Sector.LEGAL: legal_pb2_grpc.LegalAidServiceStub,
    c.Sector.EMPLOYMENT: employment_pb2_grpc.EmploymentServiceStub,
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    referral = sub.add_parser("referral", help="sector staff: act on a referral", parents=[common])
    ref_sub = referral.add_subparsers(dest="referral_command", metavar="ACTION", required=True)

    decide = ref_sub.add_parser("decide", help="accept or decline a referral", parents=[common])
    decide.add_argument("referral_id", metavar="REFERRAL_ID")
    choice = decide.add_mutually_exclusive_group(required=True)
    choice.add_argument("--accept", action="store_true")
    choice.add_argument("--decline", action="store_true")
    decide.add_argument("--reason", choices=DECLINE_REASONS, help="required with --decline")
    decide.set_defaults(handler=decide_referral)

    start = ref_sub.add_parser(
        "start",
        help="the service started: shelter check-in, lawyer's first meeting, enrolment start",
        parents=[common],
    )
    start.add_argument("referral_id", metavar="REFERRAL_ID")
    start.set_defaults(handler=start_service)

    complete = ref_sub.add_parser(
        "complete",
        help="the service ended: shelter check-out, matter closed, training completed",
        parents=[common],
    )
    complete.add_argument("referral_id", metavar="REFERRAL_ID")
    complete.set_defaults(handler=complete_service)

    show = ref_sub.add_parser("show", help="a referral as its sector sees it", parents=[common])
    show.add_argument("referral_id", metavar="REFERRAL_ID")
    show.set_defaults(handler=show_referral)


SERVICE: dict[c.Sector, c.ServiceName] = {
    c.Sector.SHELTER: "shelter",
    c.Sector.LEGAL: "legal",
    c.Sector.EMPLOYMENT: "employment",
}


def sector_of(referral_id: str) -> c.Sector:
    sector = c.sector_of_referral(referral_id)
    if sector is None:
        raise CliError(
            "REFERRAL_ID must start with shr-, leg- or emp- (as shown by `masar case show`)",
            exit_code=2,
        )
    return sector


def _referral_of(reply: Any) -> common_pb2.Referral:
    """Milestone replies carry the referral directly or inside the sector's record."""
    for name in ("referral", "placement", "enrolment"):
        if name in reply.DESCRIPTOR.fields_by_name:
            inner = getattr(reply, name)
            found: common_pb2.Referral = inner if name == "referral" else inner.referral
            return found
    raise CliError("unexpected reply from the service")


@contextlib.asynccontextmanager
async def staff_channel(sector: c.Sector, referral_id: str) -> AsyncIterator[grpc.aio.Channel]:
    """A channel acting as the staff of the organisation the referral is addressed to."""
    service = SERVICE[sector]
    identity = connect.Identity(Role(f"service:{service}"))
    own = connect.own_token()
    if own is None:
        async with connect.channel(service, identity) as lookup:
            stub = STUBS[sector](lookup)
            found = await connect.rpc(
                service,
                lambda: stub.GetReferral(common_pb2.GetReferralRequest(referral_id=referral_id)),
            )
        identity = connect.Identity(STAFF_ROLES[sector], org=found.referral.organisation_id)
    async with connect.channel(service, identity, source=own) as chan:
        yield chan


def _bind(method: Any, request: Any) -> Any:
    return lambda: method(request)


def _key() -> str:
    return f"cli-{secrets.token_hex(8)}"


def referral_doc(referral: common_pb2.Referral) -> dict[str, Any]:
    return {
        "referral_id": referral.referral_id,
        "case_id": referral.case_id,
        "sector": common_pb2.Sector.Name(referral.sector).removeprefix("SECTOR_").lower(),
        "provider_id": referral.provider_id,
        "status": common_pb2.ReferralStatus.Name(referral.status).removeprefix("REFERRAL_STATUS_"),
    }


def _report(out: Output, referral: common_pb2.Referral, delivery: Any, what: str) -> int:
    doc = referral_doc(referral)
    if delivery is not None:
        doc["delivery"] = common_pb2.DeliveryState.Name(delivery).removeprefix("DELIVERY_STATE_")
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(f"{what}: referral {doc['referral_id']} is {doc['status']}")
    if doc.get("delivery") == "QUEUED":
        out.line("  (recorded; the journey will be told as soon as Temporal is reachable)")
    return 0


async def decide_referral(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    if args.decline and not args.reason:
        raise CliError(
            "--decline needs --reason (one of: " + ", ".join(DECLINE_REASONS) + ")", exit_code=2
        )
    request = common_pb2.DecideReferralRequest(
        referral_id=args.referral_id,
        decision=common_pb2.DECISION_ACCEPT if args.accept else common_pb2.DECISION_DECLINE,
        decline_reason=common_pb2.DeclineReason.Value(f"DECLINE_REASON_{args.reason}")
        if args.decline
        else common_pb2.DECLINE_REASON_UNSPECIFIED,
        idempotency_key=_key(),
    )
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        reply = await connect.rpc(SERVICE[sector], lambda: stub.DecideReferral(request))
    return _report(out, reply.referral, reply.delivery, "accepted" if args.accept else "declined")


async def start_service(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        if sector is c.Sector.SHELTER:
            shelter_req = shelter_pb2.CheckInRequest(
                referral_id=args.referral_id, idempotency_key=_key()
            )
            reply: Any = await connect.rpc(SERVICE[sector], lambda: stub.CheckIn(shelter_req))
        elif sector is c.Sector.LEGAL:
            legal_req = legal_pb2.RecordFirstMeetingRequest(
                referral_id=args.referral_id, idempotency_key=_key()
            )
            legal_req.met_at.GetCurrentTime()
            reply = await connect.rpc(SERVICE[sector], lambda: stub.RecordFirstMeeting(legal_req))
        else:
            emp_req = employment_pb2.StartEnrolmentRequest(
                referral_id=args.referral_id, idempotency_key=_key()
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.StartEnrolment(emp_req))
    return _report(out, _referral_of(reply), getattr(reply, "delivery", None), "started")


async def complete_service(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        if sector is c.Sector.SHELTER:
            shelter_req = shelter_pb2.CheckOutRequest(
                referral_id=args.referral_id,
                exit_reason=shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING,
                idempotency_key=_key(),
            )
            reply: Any = await connect.rpc(SERVICE[sector], lambda: stub.CheckOut(shelter_req))
        elif sector is c.Sector.LEGAL:
            file = await connect.rpc(
                SERVICE[sector],
                lambda: stub.GetLegalFile(
                    legal_pb2.GetLegalFileRequest(referral_id=args.referral_id)
                ),
            )
            open_matters = [
                m.matter for m in file.matters if m.status == legal_pb2.MATTER_STATUS_OPEN
            ]
            if not open_matters:
                raise CliError("every matter of this referral is already closed")
            # Closing the last open matter completes the referral.
            for matter in open_matters:
                legal_req = legal_pb2.CloseMatterRequest(
                    referral_id=args.referral_id,
                    matter=matter,
                    outcome=legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED,
                    idempotency_key=_key(),
                )
                legal_req.closed_at.GetCurrentTime()
                reply = await connect.rpc(SERVICE[sector], _bind(stub.CloseMatter, legal_req))
        else:
            emp_req = employment_pb2.CompleteTrainingRequest(
                referral_id=args.referral_id,
                outcome=employment_pb2.TRAINING_OUTCOME_CERTIFIED,
                idempotency_key=_key(),
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.CompleteTraining(emp_req))
    return _report(out, _referral_of(reply), getattr(reply, "delivery", None), "completed")


async def show_referral(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        reply = await connect.rpc(
            SERVICE[sector],
            lambda: stub.GetReferral(common_pb2.GetReferralRequest(referral_id=args.referral_id)),
        )
    return _report(out, reply.referral, None, "referral")
