"""The idempotency ledger: a retried request returns its first result and writes nothing.

Every create and every staff action carries an idempotency key. The ledger
(table ``idempotency_keys``) remembers (scope, key) with a fingerprint of the
request: a retry returns the first result; the same key with a different
request is refused by the caller as INVALID_ARGUMENT on ``idempotency_key``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from masar.platform.clock import utcnow
from masar.platform.db import Database
from masar.platform.errors import InvalidArgument

T = TypeVar("T")

MAX_KEY_LENGTH = 200


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(48), primary_key=True),
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("subject_id", String(64), nullable=False),
        # JSON of ids and counts only, never personal data.
        Column("result", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


def fingerprint(*parts: Any) -> str:
    """A stable digest of a request (dataclasses, enums, lists, protobuf messages)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Message):
            digest.update(part.SerializeToString(deterministic=True))
        else:
            digest.update(json.dumps(_jsonable(part), sort_keys=True).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def request_fingerprint(message: Message, *, key_field: str = "idempotency_key") -> str:
    """Fingerprint of a protobuf request without its idempotency key."""
    copy = type(message)()
    copy.CopyFrom(message)
    if key_field in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField(key_field)
    return fingerprint(copy)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class LedgerEntry:
    subject_id: str
    result: dict[str, Any] | None


class IdempotencyLedger:
    """Remembers which (scope, key) produced which result, in the caller's unit of work."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def lookup(
        self, session: Session, *, scope: str, key: str, fingerprint: str
    ) -> LedgerEntry | None:
        row = (
            session.execute(
                select(self.table).where(self.table.c.scope == scope, self.table.c.key == key)
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            return None
        if row["fingerprint"] != fingerprint:
            raise InvalidArgument("idempotency_key", "was already used for a different request")
        result = json.loads(row["result"]) if row["result"] else None
        return LedgerEntry(subject_id=row["subject_id"], result=result)

    def record(
        self,
        session: Session,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        subject_id: str,
        result: dict[str, Any] | None = None,
    ) -> None:
        session.execute(
            self.table.insert().values(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                subject_id=subject_id,
                result=json.dumps(result) if result is not None else None,
                created_at=utcnow(),
            )
        )

    def set_result(self, session: Session, *, scope: str, key: str, result: dict[str, Any]) -> None:
        session.execute(
            self.table.update()
            .where(self.table.c.scope == scope, self.table.c.key == key)
            .values(result=json.dumps(result))
        )

    def once(
        self,
        session: Session,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        create: Callable[[], str],
    ) -> tuple[str, bool]:
        """Run `create` (which returns the new record's id) unless this key
        already did: returns (id, created_now)."""
        entry = self.lookup(session, scope=scope, key=key, fingerprint=fingerprint)
        if entry is not None:
            return entry.subject_id, False
        subject_id = create()
        self.record(session, scope=scope, key=key, fingerprint=fingerprint, subject_id=subject_id)
        return subject_id, True


async def run_retrying_conflicts(database: Database, fn: Callable[[Session], T]) -> T:
    """One unit of work, retried when a concurrent first attempt with the same
    idempotency key won the race (a unique violation on PostgreSQL)."""
    attempts = 3
    for attempt in range(attempts):
        try:
            return await database.run(fn)
        except IntegrityError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
