"""The coordinator's board: her region's journeys by stage, risk,
escalation level and next deadline (Temporal visibility, through intake's
journey API), filtered, refreshed live; and the escalations list, each
acknowledged from here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from console import labels
from console.pages.notifications import fetch as fetch_notifications
from console.web import COORDINATOR, console_of, page, render, session_of
from masar.v1 import common_pb2, journey_pb2

PAGE_SIZE = 200
ROLES = (COORDINATOR,)
STAGE_FILTERS = {
    name.removeprefix("JOURNEY_STAGE_").lower(): value
    for name, value in journey_pb2.JourneyStage.items()
    if value
}
RISK_FILTERS = {
    name.removeprefix("RISK_LEVEL_").lower(): value
    for name, value in common_pb2.RiskLevel.items()
    if value
}


@dataclass(frozen=True)
class Row:
    case_id: str
    stage: str
    risk: str
    risk_class: str
    level: int
    level_label: str
    sectors: list[str]
    next_deadline: datetime | None
    overdue: bool


@dataclass(frozen=True)
class Filters:
    stage: str = ""
    risk: str = ""
    escalated: bool = False

    @classmethod
    def of(cls, request: Request) -> Filters:
        q = request.query_params
        stage = q.get("stage", "")
        risk = q.get("risk", "")
        return cls(
            stage=stage if stage in STAGE_FILTERS else "",
            risk=risk if risk in RISK_FILTERS else "",
            escalated=q.get("escalated") == "1",
        )

    def message(self) -> journey_pb2.JourneyFilter:
        return journey_pb2.JourneyFilter(
            stage=STAGE_FILTERS.get(self.stage, 0),  # type: ignore[arg-type]
            risk=RISK_FILTERS.get(self.risk, 0),  # type: ignore[arg-type]
            escalated_only=self.escalated,
        )

    def query(self) -> str:
        pairs = {"stage": self.stage, "risk": self.risk, "escalated": "1" if self.escalated else ""}
        return urlencode({k: v for k, v in pairs.items() if v})


async def rows(request: Request, filters: Filters) -> list[Row]:
    console = console_of(request)
    reply = await console.backend.call(
        session_of(request),
        "intake",
        console.backend.stubs.journeys.ListJourneys,
        journey_pb2.ListJourneysRequest(filter=filters.message(), page_size=PAGE_SIZE),
    )
    now = datetime.now(UTC)
    found: list[Row] = []
    for j in reply.journeys:
        due = j.next_deadline.ToDatetime(tzinfo=UTC) if j.HasField("next_deadline") else None
        found.append(
            Row(
                case_id=j.case_id,
                stage=labels.label(labels.STAGES, j.stage),
                risk=labels.label(labels.RISKS, j.risk),
                risk_class=labels.RISK_CLASSES.get(j.risk, ""),
                level=j.escalation_level,
                level_label=labels.label(labels.ESCALATION_LEVELS, j.escalation_level),
                sectors=[labels.label(labels.SECTORS, s) for s in j.pending_sectors],
                next_deadline=due,
                overdue=due is not None and due < now,
            )
        )
    # Most urgent first: highest escalation, then the nearest deadline.
    far = datetime.max.replace(tzinfo=UTC)
    found.sort(key=lambda r: (-r.level, r.next_deadline or far))
    return found


def _context(filters: Filters) -> dict[str, Any]:
    return {
        "filters": filters,
        "stage_options": [(k, labels.STAGES[v]) for k, v in STAGE_FILTERS.items()],
        "risk_options": [(k, labels.RISKS[v]) for k, v in RISK_FILTERS.items()],
        "live_url": "/board/rows" + (f"?{filters.query()}" if filters.query() else ""),
    }


async def board(request: Request) -> Response:
    filters = Filters.of(request)
    return render(request, "board.html", rows=await rows(request, filters), **_context(filters))


async def board_rows(request: Request) -> Response:
    filters = Filters.of(request)
    return render(request, "_board_rows.html", rows=await rows(request, filters))


async def escalations(request: Request) -> Response:
    escalated = await rows(request, Filters(escalated=True))
    items = [
        n
        for n in await fetch_notifications(
            console_of(request), session_of(request), unacknowledged_only=False
        )
        if n.escalation
    ]
    return render(request, "escalations.html", rows=escalated, items=items)


routes = [
    page("/board", board, roles=ROLES),
    page("/board/rows", board_rows, roles=ROLES),
    page("/escalations", escalations, roles=ROLES),
]
