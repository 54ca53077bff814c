"""The audit log: append-only and hash-chained, one per service database.

Every read of personal data, every decision, every consent change and every
emergency grant is an entry: who (subject, role, organisation), what (an
action code), which case, which target (a referral or grant id), why (a reason
code), when. Entries carry ids and codes only — `append` refuses free text —
so the log never needs purging when a survivor withdraws consent.

Chain: entry n stores `prev_hash` (the hash of entry n-1; 64 zeros for the
first) and `hash = SHA-256(prev_hash "\\n" canonical JSON of the entry)`, the
canonical form covering seq, at, actor, role, org, action, case_id, target and
reason. A head record (`audit_head`, one row) holds the last seq and hash and
an HMAC of both under a key derived from the key ring, which the database does
not hold.

What `verify` detects, for anyone with write access to the database but not to
the key ring:
- an edited entry (its hash no longer matches its content);
- a removed entry (a gap in seq, or a broken link to the previous hash);
- reordered entries (seq is hashed, and each links to the one before);
- entries removed from the end, or forged ones appended (the head no longer
  matches, and the head cannot be rewritten without the key).
What it cannot detect alone: a rewrite by someone who also holds the key ring
(the service itself, compromised); the whole log and its head deleted
together, or both restored from an older backup (roll-back). Anchors catch
those: the service signs its head with an anchoring key of its own (not in
the key ring, not in the database) and the network service keeps it, append
only and forward only; `masar audit verify` checks every log against its
anchors (masar.platform.audit_anchor), and fails on a log rolled back past its
last anchor, erased, dropped, or rewritten before it.

Triggers refuse UPDATE and DELETE on `audit_log` (and TRUNCATE on PostgreSQL);
the chain is what proves integrity, the triggers only stop accidents.

Appends are serialised: on PostgreSQL by locking the head row (SELECT ... FOR
UPDATE), on SQLite by the unit of work's BEGIN IMMEDIATE.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    DDL,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    event,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from masar.platform.crypto import Keyring, process_keyring

AUDIT_TABLE = "audit_log"
HEAD_TABLE = "audit_head"
GENESIS_HASH = "0" * 64
_HEAD_ID = 1
_MAC_INFO = b"masar.audit.head.v1"

# Ids and codes only: no spaces, so no sentence (and so no narrative) fits.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}")


class Actor(Protocol):
    """Who acts: `masar.platform.identity.Caller` is one."""

    @property
    def subject(self) -> str: ...
    @property
    def role(self) -> Any: ...
    @property
    def org(self) -> str: ...


def _log_columns() -> list[Column[Any]]:
    return [
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("actor", String(128), nullable=False),
        Column("role", String(32), nullable=False),
        Column("org", String(128), nullable=False),
        Column("action", String(64), nullable=False),
        Column("case_id", String(64), nullable=True),
        Column("target", String(128), nullable=True),
        Column("reason", String(64), nullable=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    ]


def _head_columns() -> list[Column[Any]]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", Integer, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("key_id", String(64), nullable=False),
        Column("mac", String(64), nullable=False),
    ]


def _guard_ddl(
    dialect: str, table: str = AUDIT_TABLE, function: str = "masar_audit_append_only"
) -> list[str]:
    """Triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on
    `table`: the audit log, or the network service's audit anchors."""
    message = f"{table} is append-only"
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "
            f"{table} FOR EACH ROW EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
        ]
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    return []


def guard_append_only(table: Table, function: str) -> None:
    """Install `_guard_ddl`'s triggers when `metadata.create_all` creates `table`."""
    for dialect in ("postgresql", "sqlite"):
        for statement in _guard_ddl(dialect, table.name, function):
            event.listen(
                table,
                "after_create",
                DDL(statement.replace("%", "%%")).execute_if(dialect=dialect),  # type: ignore[no-untyped-call]  # DDL is untyped
            )


def guard_ddl(dialect: str, table: str, function: str) -> list[str]:
    """The statements of `guard_append_only`, for an Alembic migration."""
    return _guard_ddl(dialect, table, function)


@dataclass(frozen=True)
class AuditTables:
    log: Table
    head: Table


def audit_tables(metadata: MetaData) -> AuditTables:
    """Add the audit tables to a service's own metadata (as `outbox_table`).
    `metadata.create_all` also installs the append-only triggers; Alembic
    migrations call `create_audit_tables(op)` instead."""
    log_table = Table(
        AUDIT_TABLE, metadata, *_log_columns(), Index("ix_audit_log_case_id", "case_id")
    )
    head = Table(HEAD_TABLE, metadata, *_head_columns())
    guard_append_only(log_table, "masar_audit_append_only")
    return AuditTables(log=log_table, head=head)


def create_audit_tables(op: Any) -> None:
    """For a service's Alembic migration (`upgrade()`): tables and triggers."""
    op.create_table(AUDIT_TABLE, *_log_columns())
    op.create_index("ix_audit_log_case_id", AUDIT_TABLE, ["case_id"])
    op.create_table(HEAD_TABLE, *_head_columns())
    for statement in _guard_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def drop_audit_tables(op: Any) -> None:
    """For a service's Alembic migration (`downgrade()`)."""
    op.drop_table(HEAD_TABLE)
    op.drop_table(AUDIT_TABLE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS masar_audit_append_only()")


# The module's own copy, for its queries; identical to what `audit_tables` adds.
_TABLES = audit_tables(MetaData())
_LOG = _TABLES.log
_HEAD = _TABLES.head


# --- entries ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    role: str
    org: str
    action: str
    case_id: str | None
    target: str | None
    reason: str | None
    prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        return json.dumps(
            {
                "seq": self.seq,
                "at": _iso(self.at),
                "actor": self.actor,
                "role": self.role,
                "org": self.org,
                "action": self.action,
                "case_id": self.case_id,
                "target": self.target,
                "reason": self.reason,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode()

    def computed_hash(self) -> str:
        return entry_hash(self.prev_hash, self.canonical())

    @classmethod
    def from_row(cls, row: RowMapping | Mapping[str, Any]) -> AuditEntry:
        values = {k: row[k] for k in cls.__dataclass_fields__}
        values["at"] = _utc(values["at"])
        return cls(**values)


def entry_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical).hexdigest()


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes: they were written in UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_code(name: str, value: str | None, *, required: bool = False) -> None:
    if value is None or value == "":
        if required:
            raise ValueError(f"audit {name} is required")
        return
    if not _CODE.fullmatch(value):
        raise ValueError(f"audit {name} must be an id or a code, not free text")


def _head_key(keyring: Keyring, key_id: str) -> bytes:
    key = keyring.keys.get(key_id)
    if key is None:
        raise KeyError(key_id)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO).derive(key)


def _head_mac(keyring: Keyring, key_id: str, seq: int, last_hash: str) -> str:
    message = f"{seq}:{last_hash}".encode()
    return hmac.new(_head_key(keyring, key_id), message, hashlib.sha256).hexdigest()


def _lock_head(session: Session, keyring: Keyring) -> RowMapping:
    query = select(_HEAD).where(_HEAD.c.id == _HEAD_ID)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        query = query.with_for_update()
    row = session.execute(query).mappings().one_or_none()
    if row is not None:
        return row
    genesis = {
        "id": _HEAD_ID,
        "seq": 0,
        "hash": GENESIS_HASH,
        "key_id": keyring.active_id,
        "mac": _head_mac(keyring, keyring.active_id, 0, GENESIS_HASH),
    }
    if dialect == "postgresql":
        session.execute(postgresql.insert(_HEAD).values(**genesis).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(_HEAD).values(**genesis).on_conflict_do_nothing())
    else:
        session.execute(_HEAD.insert().values(**genesis))
    return session.execute(query).mappings().one()


def append(
    session: Session,
    *,
    actor: Actor,
    action: str,
    case_id: str | None = None,
    target: str | None = None,
    reason: str | None = None,
    keyring: Keyring | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's unit of work (it commits with the
    change it records, or not at all)."""
    _check_code("action", action, required=True)
    _check_code("case_id", case_id)
    _check_code("target", target)
    _check_code("reason", reason)
    role = str(getattr(actor.role, "value", actor.role))
    _check_code("actor", actor.subject, required=True)
    _check_code("role", role, required=True)
    _check_code("org", actor.org)
    ring = keyring or process_keyring()
    head = _lock_head(session, ring)
    moment = _utc(now or datetime.now(UTC))
    draft = AuditEntry(
        seq=int(head["seq"]) + 1,
        at=moment,
        actor=actor.subject,
        role=role,
        org=actor.org or "",
        action=action,
        case_id=case_id or None,
        target=target or None,
        reason=reason or None,
        prev_hash=str(head["hash"]),
        hash="",
    )
    entry = AuditEntry(**{**draft.__dict__, "hash": draft.computed_hash()})
    session.execute(_LOG.insert().values(**entry.__dict__))
    session.execute(
        _HEAD.update()
        .where(_HEAD.c.id == _HEAD_ID)
        .values(
            seq=entry.seq,
            hash=entry.hash,
            key_id=ring.active_id,
            mac=_head_mac(ring, ring.active_id, entry.seq, entry.hash),
        )
    )
    return entry


def read_head(session: Session) -> tuple[int, str] | None:
    """The chain's head as its record says (seq, hash); None before the first
    entry. What a service signs and anchors (masar.platform.audit_anchor)."""
    row = session.execute(select(_HEAD).where(_HEAD.c.id == _HEAD_ID)).mappings().one_or_none()
    return None if row is None else (int(row["seq"]), str(row["hash"]))


def hashes_at(session: Session, seqs: list[int]) -> dict[int, str]:
    """The stored hash of each entry in `seqs` that exists."""
    if not seqs:
        return {}
    rows = session.execute(select(_LOG.c.seq, _LOG.c.hash).where(_LOG.c.seq.in_(seqs)))
    return {int(seq): str(digest) for seq, digest in rows}


def entries_for_case(session: Session, case_id: str) -> list[AuditEntry]:
    """Who did what to one case, oldest first."""
    rows = session.execute(select(_LOG).where(_LOG.c.case_id == case_id).order_by(_LOG.c.seq))
    return [AuditEntry.from_row(r) for r in rows.mappings()]


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int | None  # the entry where it shows, None for the head
    kind: str  # altered | missing | broken_link | truncated_or_appended | head_*
    detail: str


@dataclass
class VerifyResult:
    entries: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None


@contextmanager
def _session_of(source: Engine | Session) -> Iterator[Session]:
    if isinstance(source, Session):
        yield source
        return
    with Session(source) as session:
        yield session


def verify(source: Engine | Session, *, keyring: Keyring | None = None) -> VerifyResult:
    """Walk the whole chain and check the head (read only)."""
    ring = keyring or process_keyring()
    result = VerifyResult()
    with _session_of(source) as session:
        head = session.execute(select(_HEAD).where(_HEAD.c.id == _HEAD_ID)).mappings().one_or_none()
        rows = session.execute(select(_LOG).order_by(_LOG.c.seq)).mappings()
        expected_seq, expected_prev = 1, GENESIS_HASH
        last: AuditEntry | None = None
        for row in rows:
            entry = AuditEntry.from_row(row)
            result.entries += 1
            problems = result.problems
            if entry.seq != expected_seq:
                problems.append(
                    Problem(entry.seq, "missing", f"expected entry {expected_seq} before it")
                )
            elif entry.prev_hash != expected_prev:
                problems.append(
                    Problem(entry.seq, "broken_link", "does not follow the entry before it")
                )
            if entry.computed_hash() != entry.hash:
                problems.append(Problem(entry.seq, "altered", "content does not match its hash"))
            expected_seq, expected_prev, last = entry.seq + 1, entry.hash, entry
    _check_head(head, last, ring, result)
    return result


def _check_head(
    head: RowMapping | None, last: AuditEntry | None, ring: Keyring, result: VerifyResult
) -> None:
    if head is None:
        if last is not None:
            result.problems.append(Problem(None, "head_missing", "the head record was removed"))
        return
    result.head_seq, result.head_hash = int(head["seq"]), str(head["hash"])
    try:
        expected_mac = _head_mac(ring, head["key_id"], result.head_seq, result.head_hash)
    except KeyError:
        result.problems.append(
            Problem(None, "head_unverifiable", "the head's key is not in the key ring")
        )
    else:
        if not hmac.compare_digest(expected_mac, str(head["mac"])):
            result.problems.append(Problem(None, "head_forged", "the head record was rewritten"))
    last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
    if (last_seq, last_hash) != (result.head_seq, result.head_hash):
        result.problems.append(
            Problem(
                None,
                "truncated_or_appended",
                f"the log ends at entry {last_seq} but its head says {result.head_seq}",
            )
        )


def has_audit_log(engine: Engine) -> bool:
    names = set(inspect(engine).get_table_names())
    return AUDIT_TABLE in names and HEAD_TABLE in names
