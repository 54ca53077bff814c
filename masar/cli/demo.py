"""`masar demo`: seed the reference data, then walk one journey end to end
through the real APIs — intake registers, shelter accepts and checks her in,
legal aid accepts and meets her, employment enrols her — and print the
journey's timeline.

The demo acts through the local stack's roles. It seeds the sample network
too (`masar seed`): organisations and one account per role, whose first
passwords it prints (shown once, when an account is created). It ends with
a second case whose shelter referral waits for an answer, and the console's
address: sign in there as the shelter's staff (`shelter.fes`) and accept it."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from masar import contract as c
from masar.cli import cases, intake, staff
from masar.cli.output import CliError, Output
from masar.cli.seed import seed
from masar.cli.seed_network import accounts_text
from masar.platform.settings import ConsoleSettings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    demo = sub.add_parser("demo", help="seed and walk one journey end to end", parents=[common])
    demo.add_argument("--region", default="fes-meknes", choices=list(c.REGIONS))
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each step")
    demo.set_defaults(handler=run_demo)


class _Quiet(Output):
    """Sub-steps report through the demo, not on their own."""

    def __init__(self) -> None:
        super().__init__(json_mode=True)

    def document(self, doc: Any) -> None:
        self.last = doc


async def _wait_for(
    case_id: str, what: str, ready: Callable[[c.JourneyStatus], Any], wait_seconds: float
) -> Any:
    deadline = time.monotonic() + wait_seconds
    while True:
        status = await cases.fetch_status(case_id)
        found = ready(status)
        if found:
            return found
        if time.monotonic() > deadline:
            raise CliError(f"demo: timed out waiting for {what} (case {case_id})")
        await asyncio.sleep(0.3)


def _referral(sector: c.Sector, state: c.ReferralStatus) -> Callable[[c.JourneyStatus], Any]:
    def find(status: c.JourneyStatus) -> c.ReferralView | None:
        for ref in status.referrals:
            if ref.sector == sector and ref.status == state:
                return ref
        return None

    return find


async def run_demo(args: argparse.Namespace, out: Output) -> int:
    say = out.note
    say("seeding the sample network and reference data ...")
    seeded = await seed()
    quiet = _Quiet()
    open_args = argparse.Namespace(
        region=args.region,
        risk="high",
        needs="shelter,legal,employment",
        consent="shelter,legal,employment,reporting",
        incident_at=None,
        violence="physical_assault",
        alias="",
        contact="",
        children=1,
    )
    await intake.open_case(open_args, quiet)
    case_id = quiet.last["case_id"]
    say(
        f"case {case_id} registered (high risk, {args.region}); journey {quiet.last['workflow_id']}"
    )

    steps: list[tuple[c.Sector, str]] = [
        (c.Sector.SHELTER, "shelter accepts, then checks her in"),
        (c.Sector.LEGAL, "legal aid accepts, then holds the first meeting"),
        (c.Sector.EMPLOYMENT, "a training programme accepts, then she starts"),
    ]
    for sector, description in steps:
        ref = await _wait_for(
            case_id,
            f"the {sector} referral",
            _referral(sector, c.ReferralStatus.PENDING),
            args.timeout,
        )
        say(f"{sector}: referral {ref.referral_id} to {ref.provider_id}: {description}")
        ns = argparse.Namespace(
            referral_id=ref.referral_id, accept=True, decline=False, reason=None
        )
        await staff.decide_referral(ns, quiet)
        await _wait_for(
            case_id,
            f"{sector} acceptance",
            _referral(sector, c.ReferralStatus.ACCEPTED),
            args.timeout,
        )
        await staff.start_service(argparse.Namespace(referral_id=ref.referral_id), quiet)
        await _wait_for(
            case_id, f"{sector} start", _referral(sector, c.ReferralStatus.IN_SERVICE), args.timeout
        )
    status = await cases.fetch_status(case_id)
    waiting = await _case_for_the_console(args, quiet)
    console_url = ConsoleSettings.from_env().public_url
    if out.json_mode:
        out.document(
            {
                "journey": status,
                "waiting_case_id": waiting,
                "console_url": console_url,
                "accounts": seeded["accounts"],
            }
        )
        return 0
    out.line()
    cases.render_status(status, out)
    out.line()
    out.line(f"Console: {console_url}")
    out.line(
        f"Case {waiting} waits for the shelter's answer: sign in as shelter.fes "
        "(choose your own password the first time) and accept it."
    )
    for line in accounts_text(seeded["accounts"]):
        out.line(line)
    return 0


async def _case_for_the_console(args: argparse.Namespace, quiet: _Quiet) -> str:
    """A second case whose shelter referral is left for staff to answer."""
    await intake.open_case(
        argparse.Namespace(
            region=args.region,
            risk="medium",
            needs="shelter",
            consent="shelter",
            incident_at=None,
            violence="physical_assault",
            alias="",
            contact="",
            children=0,
        ),
        quiet,
    )
    case_id: str = quiet.last["case_id"]
    await _wait_for(
        case_id,
        "the shelter referral",
        _referral(c.Sector.SHELTER, c.ReferralStatus.PENDING),
        args.timeout,
    )
    return case_id
