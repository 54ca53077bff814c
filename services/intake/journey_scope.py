"""Which journeys a caller may list, and the visibility query that lists them.

The journey API lists journeys from Temporal visibility (the search
attributes MasarStage, MasarRisk, MasarRegion, MasarEscalationLevel,
MasarNextDeadline), within the caller's scope — the same scopes as intake's
case lists (services.intake.scope):

- a coordinator: her own region (a region filter may name only hers);
- an intake officer or supervisor: the cases her organisation holds, which
  only intake's database knows: the list walks them in case-id order, a chunk
  per page, and asks visibility for those workflow ids only;
- anyone else: refused.

The query is built here and only here, from validated values: enum members,
region slugs, integers, datetimes formatted by us and workflow ids of intake's
own case ids. Every literal is checked against a strict pattern before it is
quoted, so nothing a client sends is ever interpolated as it came.

Page tokens carry the Temporal page token (coordinators) or the last case id
walked (holders), bound to the scope and filter they were made for: a token
used with another filter or by another caller is refused (INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowExecution
from temporalio.common import SearchAttributeKey

from masar.contract import (
    JOURNEY_WORKFLOW,
    LEVEL_REGIONAL,
    SA_ESCALATION_LEVEL,
    SA_NEXT_DEADLINE,
    SA_PENDING_SECTORS,
    SA_REGION,
    SA_RISK,
    SA_STAGE,
    Risk,
    Sector,
    Stage,
    journey_workflow_id,
)
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.idempotency import fingerprint
from masar.platform.identity import Caller, Role
from masar.platform.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from masar.platform.validation import require_region
from services.intake import domain as d
from services.intake.models import CaseRow
from services.intake.scope import HOLDER_ROLES

# What may stand between quotes in a query: slugs, enum values, workflow ids,
# RFC 3339 times. Nothing else is ever quoted.
_LITERAL = re.compile(r"[A-Za-z0-9_:.+-]{1,64}")
_TOKEN_VERSION = 1


@dataclass(frozen=True)
class JourneyFilter:
    """What a list or a board asks for; every field optional, all combine."""

    stage: Stage | None = None
    region: str | None = None
    risk: Risk | None = None
    min_escalation_level: int = 0
    next_deadline_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.region is not None:
            require_region(self.region, "filter.region")
        if not 0 <= self.min_escalation_level <= LEVEL_REGIONAL:
            raise InvalidArgument(
                "filter.min_escalation_level", f"must be between 0 and {LEVEL_REGIONAL}"
            )


@dataclass(frozen=True)
class ListScope:
    """The journeys a caller may list: a region (coordinators) or the cases
    an organisation holds (officers and supervisors)."""

    region: str | None = None
    holder: str | None = None

    @property
    def by_holder(self) -> bool:
        return self.holder is not None


def list_scope(caller: Caller | None, wanted: JourneyFilter) -> ListScope:
    """The caller's scope for lists and boards; PermissionDenied outside it."""
    if caller is None:  # in-process: the system's
        return ListScope(region=wanted.region)
    if caller.role is Role.COORDINATOR:
        if not caller.region:
            raise PermissionDenied("a coordinator's token must name her region")
        if wanted.region is not None and wanted.region != caller.region:
            raise PermissionDenied("a coordinator lists her own region only")
        return ListScope(region=caller.region)
    if caller.role in HOLDER_ROLES:
        # The same rule as intake's case lists: the cases her organisation holds.
        return ListScope(holder=caller.org)
    raise PermissionDenied("this role lists no journeys")


# --- the query ---------------------------------------------------------------------------


def quote(value: str) -> str:
    """A query literal; only values of the strict pattern are accepted."""
    if not _LITERAL.fullmatch(value):
        raise ValueError("not a safe visibility literal")
    return f"'{value}'"


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def visibility_query(scope: ListScope, wanted: JourneyFilter, case_ids: Sequence[str] = ()) -> str:
    """The visibility query for `scope` and `wanted`; with a holder's scope,
    `case_ids` names the journeys to look at (at least one)."""
    clauses = [f"WorkflowType = {quote(JOURNEY_WORKFLOW)}", "ExecutionStatus = 'Running'"]
    region = scope.region or wanted.region
    if region is not None:
        clauses.append(f"{SA_REGION} = {quote(require_region(region, 'filter.region'))}")
    if wanted.stage is not None:
        clauses.append(f"{SA_STAGE} = {quote(Stage(wanted.stage).value)}")
    if wanted.risk is not None:
        clauses.append(f"{SA_RISK} = {quote(Risk(wanted.risk).value)}")
    if wanted.min_escalation_level:
        clauses.append(f"{SA_ESCALATION_LEVEL} >= {int(wanted.min_escalation_level)}")
    if wanted.next_deadline_before is not None:
        clauses.append(f"{SA_NEXT_DEADLINE} < {quote(rfc3339(wanted.next_deadline_before))}")
    if scope.by_holder:
        if not case_ids:
            raise ValueError("a holder's query names its journeys")
        ids = ", ".join(
            quote(journey_workflow_id(d.require_intake_case_id(case_id))) for case_id in case_ids
        )
        clauses.append(f"WorkflowId IN ({ids})")
    return " AND ".join(clauses)


def held_case_ids(session: Session, holder: str, *, after: str | None, limit: int) -> list[str]:
    """The ids of the cases `holder` holds, in id order, after `after`."""
    query = select(CaseRow.case_id).where(CaseRow.holding_organisation_id == holder)
    if after is not None:
        query = query.where(CaseRow.case_id > after)
    return list(session.execute(query.order_by(CaseRow.case_id).limit(limit)).scalars())


# --- what visibility shows, and a board's changes ------------------------------------------

STAGE_KEY = SearchAttributeKey.for_keyword(SA_STAGE)
RISK_KEY = SearchAttributeKey.for_keyword(SA_RISK)
REGION_KEY = SearchAttributeKey.for_keyword(SA_REGION)
LEVEL_KEY = SearchAttributeKey.for_int(SA_ESCALATION_LEVEL)
NEXT_KEY = SearchAttributeKey.for_datetime(SA_NEXT_DEADLINE)
PENDING_KEY = SearchAttributeKey.for_keyword_list(SA_PENDING_SECTORS)
WORKFLOW_PREFIX = "journey-"


@dataclass(frozen=True)
class JourneyRow:
    """One journey as visibility shows it."""

    case_id: str
    stage: Stage | None
    risk: Risk | None
    region: str
    escalation_level: int
    pending_sectors: tuple[Sector, ...]
    next_deadline: datetime | None


class BoardEvent(StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"
    SYNCED = "synced"


@dataclass(frozen=True)
class BoardChange:
    kind: BoardEvent
    journey: JourneyRow | None
    at: datetime


def _enum_or_none(kind: Any, value: Any) -> Any:
    try:
        return kind(value) if value is not None else None
    except ValueError:
        return None


def journey_row(wf: WorkflowExecution) -> JourneyRow:
    attrs = wf.typed_search_attributes
    sectors = [_enum_or_none(Sector, s) for s in attrs.get(PENDING_KEY) or []]
    return JourneyRow(
        case_id=wf.id.removeprefix(WORKFLOW_PREFIX),
        stage=_enum_or_none(Stage, attrs.get(STAGE_KEY)),
        risk=_enum_or_none(Risk, attrs.get(RISK_KEY)),
        region=attrs.get(REGION_KEY) or "",
        escalation_level=int(attrs.get(LEVEL_KEY) or 0),
        pending_sectors=tuple(s for s in sectors if s is not None),
        next_deadline=attrs.get(NEXT_KEY),
    )


def board_changes(
    before: dict[str, JourneyRow] | None, after: dict[str, JourneyRow], at: datetime
) -> list[BoardChange]:
    """What changed between two rounds of a board (the first: all ADDED)."""
    old = before or {}
    changes = [
        BoardChange(BoardEvent.ADDED if case_id not in old else BoardEvent.CHANGED, row, at)
        for case_id, row in after.items()
        if old.get(case_id) != row
    ]
    changes += [
        BoardChange(BoardEvent.REMOVED, row, at)
        for case_id, row in old.items()
        if case_id not in after
    ]
    return changes


# --- pages -------------------------------------------------------------------------------


def page_size_of(page_size: int) -> int:
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return page_size or DEFAULT_PAGE_SIZE


def _binding(caller: Caller | None, scope: ListScope, wanted: JourneyFilter) -> str:
    who = (caller.subject, caller.role.value) if caller is not None else ("", "")
    return fingerprint(who, scope.region, scope.holder, wanted)[:24]


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: Temporal's token, or the last case walked."""

    temporal: bytes | None = None
    after_case: str | None = None


def encode_cursor(
    cursor: Cursor, caller: Caller | None, scope: ListScope, wanted: JourneyFilter
) -> str:
    body: dict[str, object] = {"v": _TOKEN_VERSION, "b": _binding(caller, scope, wanted)}
    if cursor.temporal is not None:
        body["t"] = base64.b64encode(cursor.temporal).decode()
    if cursor.after_case is not None:
        body["c"] = cursor.after_case
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    token: str, caller: Caller | None, scope: ListScope, wanted: JourneyFilter
) -> Cursor:
    """The cursor of a page token; an empty token is the first page."""
    if not token:
        return Cursor()
    if len(token) > 4096:
        raise InvalidArgument("page_token", "is malformed")
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(body, dict) or body.get("v") != _TOKEN_VERSION:
            raise ValueError("version")
        temporal = base64.b64decode(body["t"], validate=True) if "t" in body else None
        after = body.get("c")
        if after is not None:
            d.require_intake_case_id(str(after))
    except (ValueError, TypeError, binascii.Error, InvalidArgument):
        raise InvalidArgument("page_token", "is malformed") from None
    if body.get("b") != _binding(caller, scope, wanted):
        raise InvalidArgument("page_token", "belongs to another list (filter or caller)")
    if (temporal is None) == (after is None) or (temporal is not None) == scope.by_holder:
        raise InvalidArgument("page_token", "is malformed")
    return Cursor(temporal=temporal, after_case=str(after) if after is not None else None)
