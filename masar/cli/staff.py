"""Sector staff's commands: decide on a referral, record its milestones.

The referral id says which sector it belongs to (shr-, leg-, emp-, hlt-,
psy-), so the CLI calls that sector's gRPC API as the sector's staff would.
On the local stack, unless the person signed in, it acts as the staff of
the organisation the referral is addressed to (the one its provider belongs
to): it first looks the referral up as the sector's service identity
(GetReferral, no personal data) to learn that organisation, then acts with a
staff token naming it.
Signed in (`masar login`) or with MASAR_TOKEN it presents the person's own
token, which must be of that organisation's staff.

`referral complete` records the outcome the person gives (`--outcome`), never
a default: the codes are the lowercase names of the sector's own enum without
its prefix (shelter: the exit reasons; legal: the matter outcomes, one matter
closed at a time; employment: the training outcomes, or `job_placed` with the
employer and the contract; health: the care outcomes; psychosocial: the
support outcomes), as the console offers them. Without an outcome,
or with one that is not the sector's, nothing is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from masar import contract as c
from masar.cli import connect
from masar.cli.output import CliError, Output
from masar.platform.identity import Role
from masar.referral import STAFF_ROLES
from masar.referral.messages import SECTOR_IN
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    psychosocial_pb2,
    psychosocial_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)

DECLINE_REASONS = [
    name.removeprefix("DECLINE_REASON_")
    for name in common_pb2.DeclineReason.keys()  # noqa: SIM118
    if name != "DECLINE_REASON_UNSPECIFIED"
]


def _codes(enum: Any, prefix: str) -> dict[str, int]:
    """A protobuf enum's values by code: the lowercase name without the prefix."""
    return {name.removeprefix(prefix).lower(): int(value) for name, value in enum.items() if value}


EXIT_REASONS = _codes(shelter_pb2.ExitReason, "EXIT_REASON_")
MATTERS = _codes(legal_pb2.LegalMatter, "LEGAL_MATTER_")
MATTER_OUTCOMES = _codes(legal_pb2.MatterOutcome, "MATTER_OUTCOME_")
TRAINING_OUTCOMES = _codes(employment_pb2.TrainingOutcome, "TRAINING_OUTCOME_")
EMPLOYERS = _codes(employment_pb2.EmployerType, "EMPLOYER_TYPE_")
CONTRACTS = _codes(employment_pb2.ContractType, "CONTRACT_TYPE_")
CARE_OUTCOMES = _codes(health_pb2.CareOutcome, "CARE_OUTCOME_")
SUPPORT_OUTCOMES = _codes(psychosocial_pb2.SupportOutcome, "SUPPORT_OUTCOME_")
# Employment: CompleteTraining (certified keeps the referral open for the job
# search; dropped_out ends it) or RecordJobPlacement (it ends).
JOB_PLACED = "job_placed"
OUTCOMES: dict[c.Sector, list[str]] = {
    c.Sector.SHELTER: list(EXIT_REASONS),
    c.Sector.LEGAL: list(MATTER_OUTCOMES),
    c.Sector.EMPLOYMENT: [*TRAINING_OUTCOMES, JOB_PLACED],
    c.Sector.HEALTH: list(CARE_OUTCOMES),
    c.Sector.PSYCHOSOCIAL: list(SUPPORT_OUTCOMES),
}
STUBS: dict[c.Sector, Any] = {
    c.Sector.SHELTER: shelter_pb2_grpc.ShelterServiceStub,
    c.Sector.LEGAL: legal_pb2_grpc.LegalAidServiceStub,
    c.Sector.EMPLOYMENT: employment_pb2_grpc.EmploymentServiceStub,
    c.Sector.HEALTH: health_pb2_grpc.HealthServiceStub,
    c.Sector.PSYCHOSOCIAL: psychosocial_pb2_grpc.PsychosocialServiceStub,
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
        help="the service started: shelter check-in, lawyer's first meeting, enrolment "
        "start, she was seen at the care unit, her first psychosocial session",
        parents=[common],
    )
    start.add_argument("referral_id", metavar="REFERRAL_ID")
    start.set_defaults(handler=start_service)

    complete = ref_sub.add_parser(
        "complete",
        help="record how the service ended: shelter check-out, a legal matter closed, "
        "the training's outcome or a job placement",
        parents=[common],
    )
    complete.add_argument("referral_id", metavar="REFERRAL_ID")
    complete.add_argument(
        "--outcome",
        metavar="OUTCOME",
        help="required; shelter: " + ", ".join(OUTCOMES[c.Sector.SHELTER])
        + "; legal: " + ", ".join(OUTCOMES[c.Sector.LEGAL])
        + "; employment: " + ", ".join(OUTCOMES[c.Sector.EMPLOYMENT])
        + "; health: " + ", ".join(OUTCOMES[c.Sector.HEALTH])
        + "; psychosocial: " + ", ".join(OUTCOMES[c.Sector.PSYCHOSOCIAL]),
    )  # fmt: skip
    complete.add_argument(
        "--matter",
        choices=list(MATTERS),
        help="legal: the matter closed (required when several are open)",
    )
    complete.add_argument(
        "--employer-type", choices=list(EMPLOYERS), help=f"required with --outcome {JOB_PLACED}"
    )
    complete.add_argument(
        "--contract-type", choices=list(CONTRACTS), help=f"required with --outcome {JOB_PLACED}"
    )
    complete.set_defaults(handler=complete_service)

    show = ref_sub.add_parser("show", help="a referral as its sector sees it", parents=[common])
    show.add_argument("referral_id", metavar="REFERRAL_ID")
    show.set_defaults(handler=show_referral)


SERVICE: dict[c.Sector, c.ServiceName] = {
    c.Sector.SHELTER: "shelter",
    c.Sector.LEGAL: "legal",
    c.Sector.EMPLOYMENT: "employment",
    c.Sector.HEALTH: "health",
    c.Sector.PSYCHOSOCIAL: "psychosocial",
}


def sector_of(referral_id: str) -> c.Sector:
    sector = c.sector_of_referral(referral_id)
    if sector is None:
        raise CliError(
            "REFERRAL_ID must start with shr-, leg-, emp-, hlt- or psy- "
            "(as shown by `masar case show`)",
            exit_code=2,
        )
    return sector


def _referral_of(reply: Any) -> common_pb2.Referral:
    """Milestone replies carry the referral directly or inside the sector's record."""
    for name in ("referral", "placement", "enrolment", "record", "file"):
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


def _key() -> str:
    return f"cli-{secrets.token_hex(8)}"


def referral_doc(referral: common_pb2.Referral) -> dict[str, Any]:
    return {
        "referral_id": referral.referral_id,
        "case_id": referral.case_id,
        "sector": SECTOR_IN[referral.sector].value if referral.sector in SECTOR_IN else "",
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
        elif sector is c.Sector.HEALTH:
            care_req = health_pb2.StartCareRequest(
                referral_id=args.referral_id, idempotency_key=_key()
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.StartCare(care_req))
        elif sector is c.Sector.PSYCHOSOCIAL:
            session_req = psychosocial_pb2.RecordSessionRequest(
                referral_id=args.referral_id,
                attendance=psychosocial_pb2.ATTENDANCE_ATTENDED,
                idempotency_key=_key(),
            )
            session_req.held_at.GetCurrentTime()
            reply = await connect.rpc(SERVICE[sector], lambda: stub.RecordSession(session_req))
        else:
            emp_req = employment_pb2.StartEnrolmentRequest(
                referral_id=args.referral_id, idempotency_key=_key()
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.StartEnrolment(emp_req))
    return _report(out, _referral_of(reply), getattr(reply, "delivery", None), "started")


def _one_of(values: Iterable[str]) -> str:
    return "one of: " + ", ".join(values)


def completion_outcome(sector: c.Sector, args: argparse.Namespace) -> str:
    """The outcome the person gave, checked against her sector's list with
    the extra flags it needs, before anything is sent (exit code 2)."""
    valid = OUTCOMES[sector]
    if not args.outcome:
        raise CliError(
            f"--outcome is required: how the {sector} service ended ({_one_of(valid)})",
            exit_code=2,
        )
    if args.outcome not in valid:
        raise CliError(
            f"--outcome: {args.outcome!r} is not an outcome for {sector} ({_one_of(valid)})",
            exit_code=2,
        )
    if args.matter and sector is not c.Sector.LEGAL:
        raise CliError("--matter is for legal referrals only", exit_code=2)
    placed = args.outcome == JOB_PLACED
    for flag, value, choices in (
        ("--employer-type", args.employer_type, EMPLOYERS),
        ("--contract-type", args.contract_type, CONTRACTS),
    ):
        if placed and not value:
            raise CliError(
                f"{flag} is required with --outcome {JOB_PLACED} ({_one_of(choices)})",
                exit_code=2,
            )
        if value and not placed:
            raise CliError(f"{flag} goes with --outcome {JOB_PLACED} only", exit_code=2)
    outcome: str = args.outcome
    return outcome


def _code(codes: dict[str, int], value: int) -> str:
    return next((code for code, v in codes.items() if v == value), "")


async def _close_matter(
    stub: Any, args: argparse.Namespace, outcome: str
) -> tuple[Any, dict[str, Any]]:
    """Legal: close the matter named (or the only one open) with the outcome."""
    file = await connect.rpc(
        "legal",
        lambda: stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=args.referral_id)),
    )
    open_matters = [
        _code(MATTERS, m.matter) for m in file.matters if m.status == legal_pb2.MATTER_STATUS_OPEN
    ]
    if not open_matters:
        raise CliError("every matter of this referral is already closed")
    matter = args.matter
    if matter is None:
        if len(open_matters) > 1:
            raise CliError(
                f"--matter is required: this referral has several open matters "
                f"({_one_of(open_matters)})",
                exit_code=2,
            )
        matter = open_matters[0]
    elif matter not in open_matters:
        raise CliError(
            f"--matter: {matter} is not open on this referral ({_one_of(open_matters)})",
            exit_code=2,
        )
    request = legal_pb2.CloseMatterRequest(
        referral_id=args.referral_id,
        matter=legal_pb2.LegalMatter.ValueType(MATTERS[matter]),
        outcome=legal_pb2.MatterOutcome.ValueType(MATTER_OUTCOMES[outcome]),
        idempotency_key=_key(),
    )
    request.closed_at.GetCurrentTime()
    reply = await connect.rpc("legal", lambda: stub.CloseMatter(request))
    recorded = {
        "matter": _code(MATTERS, reply.matter.matter),
        "outcome": _code(MATTER_OUTCOMES, reply.matter.outcome),
        "open_matters": [m for m in open_matters if m != matter],
    }
    return reply, recorded


async def _employment_outcome(
    stub: Any, args: argparse.Namespace, outcome: str
) -> tuple[Any, dict[str, Any]]:
    """Employment: the training's outcome, or her placement in work."""
    reply: Any
    if outcome == JOB_PLACED:
        placement = employment_pb2.RecordJobPlacementRequest(
            referral_id=args.referral_id,
            employer_type=employment_pb2.EmployerType.ValueType(EMPLOYERS[args.employer_type]),
            contract_type=employment_pb2.ContractType.ValueType(CONTRACTS[args.contract_type]),
            idempotency_key=_key(),
        )
        reply = await connect.rpc("employment", lambda: stub.RecordJobPlacement(placement))
    else:
        training = employment_pb2.CompleteTrainingRequest(
            referral_id=args.referral_id,
            outcome=employment_pb2.TrainingOutcome.ValueType(TRAINING_OUTCOMES[outcome]),
            idempotency_key=_key(),
        )
        reply = await connect.rpc("employment", lambda: stub.CompleteTraining(training))
    enrolment = reply.enrolment
    recorded: dict[str, Any] = {
        "training_outcome": _code(TRAINING_OUTCOMES, enrolment.training_outcome) or None
    }
    if enrolment.HasField("placed_at"):
        recorded["outcome"] = JOB_PLACED
        recorded["employer_type"] = _code(EMPLOYERS, enrolment.employer_type)
        recorded["contract_type"] = _code(CONTRACTS, enrolment.contract_type)
    else:
        recorded["outcome"] = recorded["training_outcome"]
    return reply, recorded


async def complete_service(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    outcome = completion_outcome(sector, args)
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        if sector is c.Sector.SHELTER:
            shelter_req = shelter_pb2.CheckOutRequest(
                referral_id=args.referral_id,
                exit_reason=shelter_pb2.ExitReason.ValueType(EXIT_REASONS[outcome]),
                idempotency_key=_key(),
            )
            reply: Any = await connect.rpc(SERVICE[sector], lambda: stub.CheckOut(shelter_req))
            recorded = {"outcome": _code(EXIT_REASONS, reply.placement.exit_reason)}
        elif sector is c.Sector.LEGAL:
            reply, recorded = await _close_matter(stub, args, outcome)
        elif sector is c.Sector.HEALTH:
            care_req = health_pb2.CompleteCareRequest(
                referral_id=args.referral_id,
                outcome=health_pb2.CareOutcome.ValueType(CARE_OUTCOMES[outcome]),
                idempotency_key=_key(),
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.CompleteCare(care_req))
            recorded = {"outcome": _code(CARE_OUTCOMES, reply.record.outcome)}
        elif sector is c.Sector.PSYCHOSOCIAL:
            support_req = psychosocial_pb2.CompleteSupportRequest(
                referral_id=args.referral_id,
                outcome=psychosocial_pb2.SupportOutcome.ValueType(SUPPORT_OUTCOMES[outcome]),
                idempotency_key=_key(),
            )
            reply = await connect.rpc(SERVICE[sector], lambda: stub.CompleteSupport(support_req))
            recorded = {"outcome": _code(SUPPORT_OUTCOMES, reply.file.outcome)}
        else:
            reply, recorded = await _employment_outcome(stub, args, outcome)
    return _report_completion(out, _referral_of(reply), getattr(reply, "delivery", None), recorded)


def _report_completion(
    out: Output, referral: common_pb2.Referral, delivery: Any, recorded: dict[str, Any]
) -> int:
    """What the service recorded; when the referral stays open, what is left."""
    done = referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    doc = referral_doc(referral)
    if delivery:  # UNSPECIFIED: nothing was sent to the journey
        doc["delivery"] = common_pb2.DeliveryState.Name(delivery).removeprefix("DELIVERY_STATE_")
    doc.update(recorded)
    if out.json_mode:
        out.document(doc)
        return 0
    out.line(
        f"{'completed' if done else 'recorded'}: referral {doc['referral_id']} is {doc['status']}"
    )
    if "matter" in recorded:
        out.line(f"  matter {recorded['matter']} closed: {recorded['outcome']}")
        if recorded["open_matters"]:
            out.line(f"  still open: {', '.join(recorded['open_matters'])}")
    else:
        out.line(f"  outcome: {recorded['outcome']}")
        if recorded["outcome"] == JOB_PLACED:
            out.line(
                f"  employer {recorded['employer_type']}, contract {recorded['contract_type']}"
            )
    if not done and recorded["outcome"] == "certified":
        out.line(f"  the job search goes on: when she is placed, --outcome {JOB_PLACED}")
    if doc.get("delivery") == "QUEUED":
        out.line("  (recorded; the journey will be told as soon as Temporal is reachable)")
    return 0


async def show_referral(args: argparse.Namespace, out: Output) -> int:
    sector = sector_of(args.referral_id)
    async with staff_channel(sector, args.referral_id) as chan:
        stub = STUBS[sector](chan)
        reply = await connect.rpc(
            SERVICE[sector],
            lambda: stub.GetReferral(common_pb2.GetReferralRequest(referral_id=args.referral_id)),
        )
    return _report(out, reply.referral, None, "referral")
