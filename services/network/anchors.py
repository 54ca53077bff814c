"""Audit anchors: the services' signed audit heads, kept here, outside their
own databases (masar.platform.audit_anchor says why and how they are checked).

The table is append-only (triggers refuse UPDATE and DELETE) and, per
service, its sequence only grows: a head older than the last anchor is a
rolled-back log and is refused; the same sequence with another hash is a
rewritten one and is refused too; the same anchor again (a retry) is answered
with the stored one. Anchors are written one at a time (the table is locked
on PostgreSQL; SQLite's unit of work is already exclusive), so two anchors of
one service can never pass each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from masar.platform.audit_anchor import ANCHOR_TABLE, Anchor
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from masar.platform.errors import FailedPrecondition
from services.network.models import AUDIT_ANCHORS


@dataclass(frozen=True)
class Anchored:
    anchor: Anchor
    already: bool


def _anchor(row: object) -> Anchor:
    values = row._mapping  # type: ignore[attr-defined]  # a Row
    return Anchor(
        service=str(values["service"]),
        sequence=int(values["sequence"]),
        head_hash=str(values["head_hash"]),
        key_id=str(values["key_id"]),
        signature=bytes.fromhex(str(values["signature"])),
        anchored_at=as_utc(values["anchored_at"]),
    )


class AnchorRegistry:
    def __init__(self, database: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    async def anchor(self, proposed: Anchor, *, anchored_by: str) -> Anchored:
        """Store `proposed` (already validated, its service the caller's own)."""
        return await self.database.run(lambda s: self._anchor(s, proposed, anchored_by))

    def _anchor(self, session: Session, proposed: Anchor, anchored_by: str) -> Anchored:
        table = AUDIT_ANCHORS
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"LOCK TABLE {ANCHOR_TABLE} IN SHARE ROW EXCLUSIVE MODE"))
        last = session.execute(
            select(func.max(table.c.sequence)).where(table.c.service == proposed.service)
        ).scalar_one_or_none()
        if last is not None and proposed.sequence <= int(last):
            row = session.execute(
                select(table).where(
                    table.c.service == proposed.service, table.c.sequence == proposed.sequence
                )
            ).one_or_none()
            if row is not None:
                stored = _anchor(row)
                if stored.head_hash == proposed.head_hash:
                    return Anchored(stored, already=True)
                raise FailedPrecondition(
                    "another head was anchored at this sequence: the log was rewritten"
                )
            raise FailedPrecondition(f"the last anchor is at {int(last)}: the log was rolled back")
        now = self.clock()
        session.execute(
            table.insert().values(
                service=proposed.service,
                sequence=proposed.sequence,
                head_hash=proposed.head_hash,
                key_id=proposed.key_id,
                signature=proposed.signature.hex(),
                anchored_at=now,
                anchored_by=anchored_by,
            )
        )
        return Anchored(
            Anchor(
                service=proposed.service,
                sequence=proposed.sequence,
                head_hash=proposed.head_hash,
                key_id=proposed.key_id,
                signature=proposed.signature,
                anchored_at=now,
            ),
            already=False,
        )
