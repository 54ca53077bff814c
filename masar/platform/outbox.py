"""Transactional outbox: staff decisions reach the journey even if Temporal is down.

A service records a decision and its outbox entry in the same unit of work,
then tries to deliver it at once as a Temporal Update (so staff usually get the
journey's answer synchronously). If Temporal cannot be reached the entry stays
QUEUED and the dispatcher loop delivers it when Temporal is back. Every entry
carries an event id that the journey deduplicates, so a delivery repeated after
a crash is seen once.

Each service adds the `outbox` table to its own metadata with `outbox_table`
and creates it in its own migrations.

Every Update is signed by the service (masar.platform.assertions): the entry
keeps who acted — the verified caller of the request that wrote it (or the
service itself outside any request) — and each delivery attempt signs a fresh
actor assertion with the outbox's `signer` right before sending, so an entry
that waited for Temporal still arrives with a live assertion. An outbox
without a signer sends its Updates unsigned, and the journey refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.orm import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from masar.contract import journey_workflow_id
from masar.contract.assertion import jsonable
from masar.platform.assertions import Actor, AssertionSigner
from masar.platform.db import Database
from masar.platform.identity import caller_or_none
from masar.platform.temporal import TemporalConnector

log = logging.getLogger(__name__)


class DeliveryOutcome(enum.StrEnum):
    DELIVERED = "DELIVERED"
    QUEUED = "QUEUED"  # Temporal unreachable: will be delivered later
    REJECTED = "REJECTED"  # the journey refused it (stale, unknown, closed)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("case_id", String(64), nullable=False, index=True),
        Column("update_name", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("status", String(16), nullable=False, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("delivered_at", DateTime(timezone=True), nullable=True),
        # An error type or status code name, never a message with data in it.
        Column("last_error", String(128), nullable=True),
    )


# An entry's payload: {"format": 2, "event": <the Update as JSON>, "actor": <Actor>}.
# Entries written before (the Update alone, unsigned) are still delivered.
ENTRY_FORMAT = 2


def entry_payload(event: Any, actor: Actor | None) -> str:
    """What the outbox keeps for an Update: the event (its assertion left
    out: one is signed at each delivery) and who acted."""
    doc = jsonable(event)
    doc.pop("assertion", None)
    return json.dumps(
        {"format": ENTRY_FORMAT, "event": doc, "actor": actor.to_json() if actor else None}
    )


def read_entry(payload: str) -> tuple[dict[str, Any], Actor | None]:
    """(the Update as JSON, who acted) from an entry's payload."""
    doc = json.loads(payload)
    if isinstance(doc, dict) and doc.get("format") == ENTRY_FORMAT and "event" in doc:
        actor = doc.get("actor")
        return dict(doc["event"]), Actor.from_json(actor) if actor else None
    return dict(doc), None


def _age(created_at: datetime) -> timedelta:
    if created_at.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
        created_at = created_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - created_at


@dataclass
class RejectedUpdate:
    """What the journey said when it refused an update (from its validator)."""

    error_type: str | None
    message: str


class Outbox:
    def __init__(
        self,
        database: Database,
        table: Table,
        connector: TemporalConnector,
        *,
        signer: AssertionSigner | None = None,
    ) -> None:
        self._db = database
        self._table = table
        self._connector = connector
        # The service's assertion key (masar.platform.assertions): set by the
        # service's wiring; without it Updates go unsigned (and are refused).
        self.signer = signer
        self.update_timeout = 10.0
        self.min_age = timedelta(seconds=self.update_timeout / 2)
        self._locks: dict[str, asyncio.Lock] = {}

    def enqueue(
        self,
        session: Session,
        *,
        case_id: str,
        update_name: str,
        event: Any,
        actor: Actor | None = None,
    ) -> str:
        """Record an update for the journey, in the caller's unit of work.
        `event` is a contract dataclass with an `event_id`; `actor` who acted
        (by default the verified caller of the current request, if any)."""
        event_id: str = event.event_id
        if actor is None:
            caller = caller_or_none()
            actor = Actor.of(caller) if caller is not None else None
        session.execute(
            self._table.insert().values(
                event_id=event_id,
                case_id=case_id,
                update_name=update_name,
                payload=entry_payload(event, actor),
                status=DeliveryOutcome.QUEUED.value,
                attempts=0,
                created_at=datetime.now(UTC),
            )
        )
        return event_id

    def status(self, session: Session, event_id: str) -> DeliveryOutcome | None:
        row = session.execute(
            select(self._table.c.status).where(self._table.c.event_id == event_id)
        ).scalar_one_or_none()
        return DeliveryOutcome(row) if row else None

    async def deliver(
        self, event_id: str, *, background: bool = False
    ) -> tuple[DeliveryOutcome, RejectedUpdate | None]:
        """Try to deliver one entry now.

        One delivery of an entry at a time in this process: the request that
        wrote the entry and the dispatcher never both send it (one could see it
        refused while the other, a moment later, sees it accepted). The
        dispatcher (`background`) also leaves entries younger than `min_age`
        to the request that wrote them.
        """
        lock = self._locks.setdefault(event_id, asyncio.Lock())
        try:
            async with lock:
                return await self._deliver_once(event_id, background=background)
        finally:
            if not lock.locked() and len(self._locks) > 1000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}

    async def _deliver_once(
        self, event_id: str, *, background: bool
    ) -> tuple[DeliveryOutcome, RejectedUpdate | None]:
        row = await self._db.run(
            lambda s: (
                s.execute(select(self._table).where(self._table.c.event_id == event_id))
                .mappings()
                .one_or_none()
            )
        )
        if row is None:
            raise KeyError(event_id)
        if row["status"] != DeliveryOutcome.QUEUED.value:
            return DeliveryOutcome(row["status"]), None
        if background and _age(row["created_at"]) < self.min_age:
            return DeliveryOutcome.QUEUED, None
        client = self._connector.client
        if client is None:
            try:
                client = await asyncio.wait_for(self._connector.get(), timeout=3.0)
            except Exception:
                await self._mark(event_id, DeliveryOutcome.QUEUED, "TemporalUnreachable")
                return DeliveryOutcome.QUEUED, None
        handle = client.get_workflow_handle(journey_workflow_id(row["case_id"]))
        event = self._signed(row["case_id"], row["update_name"], row["payload"])
        try:
            await handle.execute_update(
                row["update_name"],
                event,
                id=event_id,
                rpc_timeout=timedelta(seconds=self.update_timeout),
            )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            error_type = getattr(cause, "type", None)
            await self._mark(event_id, DeliveryOutcome.REJECTED, error_type or "Rejected")
            return DeliveryOutcome.REJECTED, RejectedUpdate(error_type, str(cause or exc))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                await self._mark(event_id, DeliveryOutcome.REJECTED, "JourneyNotRunning")
                return DeliveryOutcome.REJECTED, RejectedUpdate(
                    "JourneyNotRunning", "journey not running"
                )
            await self._mark(
                event_id, DeliveryOutcome.QUEUED, exc.status.name if exc.status else "RPCError"
            )
            return DeliveryOutcome.QUEUED, None
        except Exception as exc:
            await self._mark(event_id, DeliveryOutcome.QUEUED, type(exc).__name__)
            return DeliveryOutcome.QUEUED, None
        await self._mark(event_id, DeliveryOutcome.DELIVERED, None)
        return DeliveryOutcome.DELIVERED, None

    def _signed(self, case_id: str, update_name: str, payload: str) -> dict[str, Any]:
        """The entry's Update with a fresh assertion (unsigned without a signer)."""
        event, actor = read_entry(payload)
        if self.signer is None:
            log.warning("outbox has no assertion signer", extra={"update": update_name})
            return event
        actor = actor or Actor.service(self.signer.issuer)
        return self.signer.sign_json(update_name, case_id, event, actor)

    async def _mark(self, event_id: str, outcome: DeliveryOutcome, error: str | None) -> None:
        values: dict[str, Any] = {
            "status": outcome.value,
            "attempts": self._table.c.attempts + 1,
            "last_error": error,
        }
        if outcome is DeliveryOutcome.DELIVERED:
            values["delivered_at"] = datetime.now(UTC)
        await self._db.run(
            lambda s: s.execute(
                update(self._table).where(self._table.c.event_id == event_id).values(**values)
            )
        )

    async def pending(self, limit: int = 100) -> list[str]:
        return await self._db.run(
            lambda s: list(
                s.execute(
                    select(self._table.c.event_id)
                    .where(self._table.c.status == DeliveryOutcome.QUEUED.value)
                    .order_by(self._table.c.created_at)
                    .limit(limit)
                ).scalars()
            )
        )

    async def run(self, stop: asyncio.Event, *, interval: float = 2.0) -> None:
        """Deliver queued entries, oldest first, until `stop` is set."""
        while not stop.is_set():
            try:
                for event_id in await self.pending():
                    if stop.is_set():
                        break
                    outcome, _ = await self.deliver(event_id, background=True)
                    if outcome is DeliveryOutcome.QUEUED:
                        break  # Temporal still unreachable; wait before the next round
            except Exception:
                log.exception("outbox round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
