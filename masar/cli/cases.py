"""Coordinators' commands: see journeys and steer them.

`case show` and `cases` read the journeys (the `status` query and Temporal
visibility); reassign / extend / closure go through the journey API
(masar.v1.JourneyService, served by intake), which sends the journey its
validated Update with a signed assertion of the caller.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from temporalio.common import SearchAttributeKey

from masar import contract as c
from masar.cli import connect, intake
from masar.cli.output import CliError, Output, parse_duration, when
from masar.platform.identity import Role
from masar.v1 import journey_pb2, journey_pb2_grpc

STAGE_KEY = SearchAttributeKey.for_keyword(c.SA_STAGE)
RISK_KEY = SearchAttributeKey.for_keyword(c.SA_RISK)
REGION_KEY = SearchAttributeKey.for_keyword(c.SA_REGION)
LEVEL_KEY = SearchAttributeKey.for_int(c.SA_ESCALATION_LEVEL)
NEXT_KEY = SearchAttributeKey.for_datetime(c.SA_NEXT_DEADLINE)
PENDING_KEY = SearchAttributeKey.for_keyword_list(c.SA_PENDING_SECTORS)

LEVEL_NAMES = {0: "-", 1: "reminder", 2: "coordinator", 3: "regional"}


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

    cases = sub.add_parser("cases", help="list journeys (filters combine)", parents=[common])
    cases.add_argument("--stage", choices=[s.value for s in c.Stage])
    cases.add_argument("--region", choices=list(c.REGIONS))
    cases.add_argument(
        "--escalated", action="store_true", help="only journeys with an open escalation"
    )
    cases.add_argument("--limit", type=int, default=200)
    cases.set_defaults(handler=list_cases)


async def fetch_status(case_id: str) -> c.JourneyStatus:
    handle = await connect.journey(connect.check_case_id(case_id))
    return await connect.temporal_call(
        case_id, handle.query(c.QUERY_STATUS, result_type=c.JourneyStatus)
    )


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


def _quote(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


async def list_cases(args: argparse.Namespace, out: Output) -> int:
    clauses = [f"WorkflowType = {_quote(c.JOURNEY_WORKFLOW)}", "ExecutionStatus = 'Running'"]
    if args.stage:
        clauses.append(f"{c.SA_STAGE} = {_quote(args.stage)}")
    if args.region:
        clauses.append(f"{c.SA_REGION} = {_quote(args.region)}")
    if args.escalated:
        clauses.append(f"{c.SA_ESCALATION_LEVEL} > 0")
    client = await connect.temporal()
    rows: list[dict[str, Any]] = []
    try:
        async for wf in client.list_workflows(" AND ".join(clauses), limit=args.limit):
            attrs = wf.typed_search_attributes
            rows.append(
                {
                    "case_id": wf.id.removeprefix("journey-"),
                    "stage": attrs.get(STAGE_KEY),
                    "risk": attrs.get(RISK_KEY),
                    "region": attrs.get(REGION_KEY),
                    "escalation_level": attrs.get(LEVEL_KEY) or 0,
                    "pending_sectors": attrs.get(PENDING_KEY) or [],
                    "next_deadline": attrs.get(NEXT_KEY),
                }
            )
    except Exception as exc:
        raise CliError(f"cannot list journeys: {type(exc).__name__}") from None
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


async def steer(case_id: str, method: str, request: Any) -> journey_pb2.JourneyAnswer:
    """One coordinator's action through the journey API (JourneyService,
    served by intake), which sends the journey its Update with a signed
    assertion of who acts. As the signed-in person (or MASAR_TOKEN); on the
    local stack without one, as the coordinator of the case's region."""
    identity = connect.Identity(Role.COORDINATOR)
    if connect.own_token() is None:
        status = await fetch_status(case_id)
        identity = connect.Identity(Role.COORDINATOR, region=status.region)
    async with connect.channel("intake", identity) as chan:
        stub = journey_pb2_grpc.JourneyServiceStub(chan)
        reply = await connect.rpc("intake", lambda: getattr(stub, method)(request))
    answer: journey_pb2.JourneyAnswer = reply.answer
    return answer


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
    answer = await steer(case_id, "ReassignReferral", request)
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
    answer = await steer(case_id, "ExtendDeadline", request)
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
    answer = await steer(case_id, "DecideClosure", request)
    return _report(out, case_id, "closure approved" if args.approve else "closure refused", answer)


def _report(out: Output, case_id: str, what: str, answer: journey_pb2.JourneyAnswer) -> int:
    stage = journey_pb2.JourneyStage.Name(answer.stage).removeprefix("JOURNEY_STAGE_")
    if out.json_mode:
        out.document({"case_id": case_id, "event_id": answer.event_id, "stage": stage})
    else:
        out.line(f"{what}; case {case_id} is now in stage {stage}")
    return 0
