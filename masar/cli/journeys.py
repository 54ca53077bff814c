"""How the CLI reaches journeys: only through Masar's journey API
(masar.v1.JourneyService, served by intake on intake's address). The CLI
never talks to Temporal; intake reads the journey's `status` query and
Temporal visibility for it, within the caller's scope, and audits the read.

Whom a read acts as: the person's own token (signed in, or MASAR_TOKEN) —
one call. On the local stack without one (the development shortcut) a
command does not know which scope holds a case, so it asks as the local
intake officer (who holds the cases registered with the shortcut) and then
as each region's coordinator, until one may see it (`first_in_scope`); each
refused read is in intake's audit log, as any refused read is.

The answers are turned back into the journey contract's dataclasses
(`c.JourneyStatus`), so `--json` prints the same document as the `status`
query always did.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from masar import contract as c
from masar.cli import connect
from masar.cli.output import CliError
from masar.platform.identity import Role
from masar.v1 import common_pb2, intake_pb2, journey_pb2, journey_pb2_grpc

T = TypeVar("T")

LOCAL_OFFICER = connect.INTAKE_OFFICER
# Escalation levels, for people.
LEVEL_NAMES = {0: "-", 1: "reminder", 2: "coordinator", 3: "regional"}


def coordinator(region: str) -> connect.Identity:
    return connect.Identity(Role.COORDINATOR, region=region)


def local_readers(
    first: Iterable[connect.Identity] = (LOCAL_OFFICER,),
) -> Iterator[connect.Identity]:
    """The development shortcut's candidates for a read: `first`, then the
    coordinator of each region."""
    yield from first
    for region in c.REGIONS:
        yield coordinator(region)


async def first_in_scope(
    call: Callable[[grpc.aio.Channel], Awaitable[T]],
    candidates: Iterable[connect.Identity],
    *,
    not_found: str | None = None,
) -> tuple[T, connect.Identity]:
    """`call` on intake as the person's own token; on the local stack without
    one, as each of `candidates` in turn until one is not refused
    (PERMISSION_DENIED). NOT_FOUND becomes `not_found` when given."""
    own = connect.own_token() is not None
    refused: grpc.aio.AioRpcError | None = None
    for identity in candidates:
        async with connect.channel("intake", identity) as chan:
            try:
                return await call(chan), identity
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND and not_found is not None:
                    raise CliError(not_found) from None
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED or own:
                    raise connect.rpc_error("intake", exc) from None
                refused = refused or exc
    assert refused is not None
    raise connect.rpc_error("intake", refused)


# --- protobuf -> the journey contract ----------------------------------------------------


def time_of(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def _required_time(message: Any, name: str) -> datetime:
    return time_of(message, name) or datetime.fromtimestamp(0, UTC)


def _name(enum: Any, value: int, prefix: str) -> str | None:
    if not value:
        return None
    try:
        name: str = enum.Name(value)
    except ValueError:
        return None
    return name.removeprefix(prefix)


def sector_of(value: int) -> c.Sector | None:
    if value == common_pb2.SECTOR_MEDICAL:  # the health sector (a medical referral)
        return c.Sector.HEALTH
    name = _name(common_pb2.Sector, value, "SECTOR_")
    try:
        return c.Sector(name.lower()) if name else None
    except ValueError:
        return None


def stage_of(value: int) -> c.Stage | None:
    name = _name(journey_pb2.JourneyStage, value, "JOURNEY_STAGE_")
    return c.Stage(name) if name else None


def risk_of(value: int) -> c.Risk | None:
    name = _name(common_pb2.RiskLevel, value, "RISK_LEVEL_")
    return c.Risk(name.lower()) if name else None


def transfer_status_of(value: int) -> c.TransferStatus:
    name = _name(intake_pb2.TransferStatus, value, "TRANSFER_STATUS_")
    return c.TransferStatus(name or "PENDING")


def transfer_reason_of(value: int) -> c.TransferReason:
    name = _name(intake_pb2.TransferReason, value, "TRANSFER_REASON_")
    return c.TransferReason((name or "SURVIVOR_REQUEST").lower())


def status_of(s: journey_pb2.JourneyStatus) -> c.JourneyStatus:
    """The journey API's status as the journey contract's `status` answer."""
    return c.JourneyStatus(
        case_id=s.case_id,
        stage=stage_of(s.stage) or c.Stage.TRIAGE,
        risk=risk_of(s.risk) or c.Risk.LOW,
        region=s.region,
        referrals=[
            c.ReferralView(
                sector=sector_of(r.sector) or c.Sector.SHELTER,
                referral_id=r.referral_id,
                provider_id=r.provider_id,
                status=c.ReferralStatus(
                    _name(common_pb2.ReferralStatus, r.status, "REFERRAL_STATUS_") or "PENDING"
                ),
                deadline=time_of(r, "deadline"),
                escalation_level=r.escalation_level,
                requested_at=_required_time(r, "requested_at"),
                decline_reason=_name(common_pb2.DeclineReason, r.decline_reason, "DECLINE_REASON_"),
            )
            for r in s.referrals
        ],
        escalations=[
            c.EscalationView(
                wait=e.wait,
                level=e.level,
                at=_required_time(e, "at"),
                referral_id=e.referral_id or None,
                sector=sector_of(e.sector),
            )
            for e in s.escalations
        ],
        timeline=[
            c.TimelineEvent(
                at=_required_time(e, "at"),
                event=e.event,
                sector=sector_of(e.sector),
                referral_id=e.referral_id or None,
                level=e.level or None,
                detail=e.detail or None,
                actor=e.actor or None,
            )
            for e in s.timeline
        ],
        clinical_windows=[
            c.ClinicalWindowView(
                item=c.ClinicalItem(
                    (_name(intake_pb2.ClinicalItem, w.item, "CLINICAL_ITEM_") or "PEP").lower()
                ),
                deadline=_required_time(w, "deadline"),
                status=_name(journey_pb2.ClinicalWindowStatus, w.status, "CLINICAL_WINDOW_STATUS_")
                or "OPEN",
                escalation_level=w.escalation_level,
            )
            for w in s.clinical_windows
        ],
        escalation_level=s.escalation_level,
        next_deadline=time_of(s, "next_deadline"),
        consents=[x for x in (sector_of(v) for v in s.consents) if x is not None],
        closure_requested=s.closure_requested,
        next_follow_up=time_of(s, "next_follow_up"),
        transfers=[
            c.TransferView(
                transfer_id=t.transfer_id,
                from_organisation_id=t.from_organisation_id,
                to_organisation_id=t.to_organisation_id,
                status=transfer_status_of(t.status),
                deadline=time_of(t, "deadline"),
                escalation_level=t.escalation_level,
                reason=transfer_reason_of(t.reason),
                requested_at=_required_time(t, "requested_at"),
                decided_at=time_of(t, "decided_at"),
            )
            for t in s.transfers
        ],
    )


def summary_doc(j: journey_pb2.JourneySummary) -> dict[str, Any]:
    """One row of `masar cases` (its --json shape)."""
    stage, risk = stage_of(j.stage), risk_of(j.risk)
    return {
        "case_id": j.case_id,
        "stage": stage.value if stage else None,
        "risk": risk.value if risk else None,
        "region": j.region,
        "escalation_level": j.escalation_level,
        "pending_sectors": [x.value for x in map(sector_of, j.pending_sectors) if x is not None],
        "next_deadline": time_of(j, "next_deadline"),
    }


# --- calls -------------------------------------------------------------------------------


def _stub(chan: grpc.aio.Channel) -> journey_pb2_grpc.JourneyServiceStub:
    return journey_pb2_grpc.JourneyServiceStub(chan)


async def fetch_status(case_id: str) -> c.JourneyStatus:
    """A journey's status through the journey API (GetJourney)."""
    status, _ = await read_status(case_id)
    return status


async def read_status(case_id: str) -> tuple[c.JourneyStatus, connect.Identity]:
    """The status, and whom the read acted as (on the local stack)."""
    case_id = connect.check_case_id(case_id)
    request = journey_pb2.GetJourneyRequest(case_id=case_id)

    async def get(chan: grpc.aio.Channel) -> journey_pb2.GetJourneyResponse:
        reply: journey_pb2.GetJourneyResponse = await _stub(chan).GetJourney(request)
        return reply

    reply, identity = await first_in_scope(
        get, local_readers(), not_found=f"unknown case {case_id}"
    )
    return status_of(reply.journey), identity


async def list_journeys(
    journey_filter: journey_pb2.JourneyFilter, limit: int
) -> list[dict[str, Any]]:
    """Journeys in scope through the journey API (ListJourneys), page by page
    up to `limit`. On the local stack without a sign-in: as the coordinator
    of the region asked, or of each region in turn."""
    if connect.own_token() is not None:
        identities = [LOCAL_OFFICER]
    elif journey_filter.region:
        identities = [coordinator(journey_filter.region)]
    else:
        identities = [coordinator(region) for region in c.REGIONS]
    rows: list[dict[str, Any]] = []
    for identity in identities:
        async with connect.channel("intake", identity) as chan:
            stub = _stub(chan)
            token = ""
            while len(rows) < limit:
                request = journey_pb2.ListJourneysRequest(
                    filter=journey_filter,
                    page_size=max(1, min(500, limit - len(rows))),
                    page_token=token,
                )
                reply = await connect.rpc("intake", functools.partial(stub.ListJourneys, request))
                rows += [summary_doc(j) for j in reply.journeys]
                token = reply.next_page_token
                if not token:
                    break
    return rows[:limit]


async def steer(case_id: str, method: str, request: Any) -> journey_pb2.JourneyAnswer:
    """One coordinator's action through the journey API, which sends the
    journey its Update with a signed assertion of who acts. As the signed-in
    person (or MASAR_TOKEN); on the local stack without one, as the
    coordinator of the case's region."""
    identity = coordinator("")
    if connect.own_token() is None:
        status = await fetch_status(case_id)
        identity = coordinator(status.region)
    async with connect.channel("intake", identity) as chan:
        stub = _stub(chan)
        reply = await connect.rpc("intake", lambda: getattr(stub, method)(request))
    answer: journey_pb2.JourneyAnswer = reply.answer
    return answer


async def holder_change(case_id: str, method: str, request: Any) -> Any:
    """A change the case's holder records (follow-up, consent, medical care,
    closure request, reopening) through the journey API — intake's
    change-with-undo. As the person's own token, else the local officer."""
    connect.check_case_id(case_id)
    async with connect.channel("intake", LOCAL_OFFICER) as chan:
        stub = _stub(chan)
        return await connect.rpc("intake", lambda: getattr(stub, method)(request))
