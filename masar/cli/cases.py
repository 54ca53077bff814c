"""Coordinators' commands: see journeys and steer them.

Everything goes through the journey API (masar.v1.JourneyService, served by
intake; masar.cli.journeys): `case show` and `cases` read the journey's
status and the journeys in the caller's scope; reassign / extend / closure
ask intake to send the journey its validated Update with a signed assertion
of the caller. The CLI never talks to Temporal.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from masar import contract as c
from masar.cli import connect, intake, journeys, transfers
from masar.cli.journeys import LEVEL_NAMES, fetch_status
from masar.cli.output import CliError, Output, parse_duration, when
from masar.v1 import journey_pb2

__all__ = ["fetch_status", "register", "render_status"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    case = sub.add_parser("case", help="one survivor's case", parents=[common])
    case_sub = case.add_subparsers(dest="case_command", metavar="ACTION", required=True)

    show = case_sub.add_parser(
        "show", help="a case's journey: stage, referrals, timeline", parents=[common]
    )
    show.add_argument("case_id", metavar="CASE_ID")
    show.set_defaults(handler=show_case)

    reassign = case_sub.add_parser(
        "reassign", help="coordinator: move a referral to a named provider", parents=[common]
    )
    reassign.add_argument("case_id", metavar="CASE_ID")
    reassign.add_argument("referral_id", metavar="REFERRAL_ID")
    reassign.add_argument(
        "--provider", required=True, help="provider id (shelter, lawyer, programme)"
    )
    reassign.add_argument("--reason", required=True)
    reassign.set_defaults(handler=reassign_referral)

    extend = case_sub.add_parser(
        "extend", help="coordinator: extend a deadline, with a reason", parents=[common]
    )
    extend.add_argument("case_id", metavar="CASE_ID")
    extend.add_argument(
        "target", metavar="TARGET", help="a referral id, or follow_up, clinical:pep, ..."
    )
    extend.add_argument("--by", required=True, help="duration: 90s, 15m, 2h, 7d")
    extend.add_argument("--reason", required=True)
    extend.set_defaults(handler=extend_deadline)

    closure = case_sub.add_parser(
        "closure", help="coordinator: approve or refuse a requested closure", parents=[common]
    )
    closure.add_argument("case_id", metavar="CASE_ID")
    decision = closure.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true")
    decision.add_argument("--refuse", action="store_true")
    closure.add_argument("--reason", required=True)
    closure.set_defaults(handler=decide_closure)

    intake.register(case_sub, common)
    transfers.register_case(case_sub, common)

    cases = sub.add_parser("cases", help="list journeys (filters combine)", parents=[common])
    cases.add_argument("--stage", choices=[s.value for s in c.Stage])
    cases.add_argument("--region", choices=list(c.REGIONS))
    cases.add_argument(
        "--escalated", action="store_true", help="only journeys with an open escalation"
    )
    cases.add_argument("--limit", type=int, default=200)
    cases.set_defaults(handler=list_cases)

    transfers.register(sub, common)


async def show_case(args: argparse.Namespace, out: Output) -> int:
    status = await fetch_status(args.case_id)
    if out.json_mode:
        out.document(status)
        return 0
    render_status(status, out)
    return 0


def render_status(status: c.JourneyStatus, out: Output) -> None:
    out.line(f"case {status.case_id}")
    out.line(
        f"  stage {status.stage}   risk {status.risk}   region {status.region}"
        f"   escalation {LEVEL_NAMES.get(status.escalation_level, status.escalation_level)}"
    )
    if status.next_deadline:
        out.line(f"  next deadline {when(status.next_deadline)}")
    if status.consents:
        out.line(f"  consents: {', '.join(status.consents)}")
    if status.next_follow_up:
        out.line(f"  next follow-up {when(status.next_follow_up)}")
    if status.closure_requested:
        out.line("  closure requested: waiting for a coordinator's decision")
    out.line()
    if status.referrals:
        out.line("referrals")
        out.table(
            ["sector", "referral", "provider", "status", "deadline", "escalation"],
            [
                [
                    r.sector,
                    r.referral_id,
                    r.provider_id,
                    r.status,
                    when(r.deadline),
                    LEVEL_NAMES.get(r.escalation_level, r.escalation_level),
                ]
                for r in status.referrals
            ],
        )
        out.line()
    if status.clinical_windows:
        out.line("clinical windows (from the incident)")
        out.table(
            ["item", "deadline", "status", "escalation"],
            [
                [w.item, when(w.deadline), w.status, LEVEL_NAMES.get(w.escalation_level, "-")]
                for w in status.clinical_windows
            ],
        )
        out.line()
    if status.transfers:
        out.line("transfers between organisations")
        out.table(
            ["transfer", "from", "to", "reason", "status", "deadline", "escalation", "decided"],
            [
                [
                    t.transfer_id,
                    t.from_organisation_id,
                    t.to_organisation_id,
                    transfers.REASON_WORDS.get(t.reason, t.reason),
                    t.status,
                    when(t.deadline),
                    LEVEL_NAMES.get(t.escalation_level, t.escalation_level),
                    when(t.decided_at),
                ]
                for t in status.transfers
            ],
        )
        out.line()
    if status.escalations:
        out.line("open escalations")
        out.table(
            ["wait", "level", "since", "referral"],
            [
                [e.wait, LEVEL_NAMES.get(e.level, e.level), when(e.at), e.referral_id]
                for e in status.escalations
            ],
        )
        out.line()
    out.line("timeline")
    out.table(
        ["at", "event", "sector", "referral", "detail"],
        [
            [
                when(e.at),
                e.event + (f" (level {e.level})" if e.level else ""),
                e.sector,
                e.referral_id,
                e.detail,
            ]
            for e in status.timeline
        ],
    )


async def list_cases(args: argparse.Namespace, out: Output) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1", exit_code=2)
    wanted = journey_pb2.JourneyFilter(region=args.region or "", escalated_only=args.escalated)
    if args.stage:
        wanted.stage = journey_pb2.JourneyStage.Value(f"JOURNEY_STAGE_{args.stage}")
    rows = await journeys.list_journeys(wanted, args.limit)
    if out.json_mode:
        out.document(rows)
        return 0
    if not rows:
        out.line("no journeys match")
        return 0
    out.table(
        ["case", "stage", "risk", "region", "escalation", "waiting on", "next deadline"],
        [
            [
                r["case_id"],
                r["stage"],
                r["risk"],
                r["region"],
                LEVEL_NAMES.get(r["escalation_level"], r["escalation_level"]),
                ",".join(r["pending_sectors"]) or "-",
                when(r["next_deadline"]),
            ]
            for r in rows
        ],
    )
    return 0


def _key() -> str:
    return f"cli-{secrets.token_hex(8)}"


def _require_reason(reason: str) -> str:
    if not reason.strip():
        raise CliError("--reason must not be empty", exit_code=2)
    return reason.strip()


async def reassign_referral(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id)
    request = journey_pb2.ReassignReferralRequest(
        case_id=case_id,
        referral_id=args.referral_id,
        provider_id=args.provider,
        reason=_require_reason(args.reason),
        idempotency_key=_key(),
    )
    answer = await journeys.steer(case_id, "ReassignReferral", request)
    return _report(out, case_id, "referral reassigned", answer)


async def extend_deadline(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id)
    request = journey_pb2.ExtendDeadlineRequest(
        case_id=case_id,
        target=args.target,
        extend_by_seconds=parse_duration(args.by, flag="--by"),
        reason=_require_reason(args.reason),
        idempotency_key=_key(),
    )
    answer = await journeys.steer(case_id, "ExtendDeadline", request)
    return _report(out, case_id, "deadline extended", answer)


async def decide_closure(args: argparse.Namespace, out: Output) -> int:
    case_id = connect.check_case_id(args.case_id)
    request = journey_pb2.DecideClosureRequest(
        case_id=case_id,
        verdict=(
            journey_pb2.CLOSURE_VERDICT_APPROVE
            if args.approve
            else journey_pb2.CLOSURE_VERDICT_REFUSE
        ),
        reason=_require_reason(args.reason),
        idempotency_key=_key(),
    )
    answer = await journeys.steer(case_id, "DecideClosure", request)
    return _report(out, case_id, "closure approved" if args.approve else "closure refused", answer)


def _report(out: Output, case_id: str, what: str, answer: journey_pb2.JourneyAnswer) -> int:
    stage = journey_pb2.JourneyStage.Name(answer.stage).removeprefix("JOURNEY_STAGE_")
    if out.json_mode:
        out.document({"case_id": case_id, "event_id": answer.event_id, "stage": stage})
    else:
        out.line(f"{what}; case {case_id} is now in stage {stage}")
    return 0
