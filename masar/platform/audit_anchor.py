"""Audit anchors: each service's audit head, signed and kept outside its database.

The head record of an audit log (masar.platform.audit) is protected by an HMAC
under the service's key ring; that stops an edit by someone who can write the
database but not read the key ring, not a roll-back: restore the database from
an older backup, or delete the whole log with its head, and the chain is
intact again. Anchors close that gap.

- The service signs its head — `(service, seq, hash)` under the label
  `masar.audit.anchor.v1` — with an Ed25519 *anchoring key* of its own,
  separate from its data keys and never stored in its database:
  MASAR_AUDIT_ANCHOR_KEY (base64 of the 32-byte private key; the service's
  own environment), or on the local stack
  `$MASAR_DATA_DIR/audit-anchor-<service>.key` (created 0600 on first use).
- It sends the signed head to the network service (`AnchorAuditHead`), which
  keeps it in an append-only table of its own database and refuses a
  sequence lower than the service's last anchor (a rolled-back service
  cannot anchor its older head) or a different hash at the same sequence;
  a service may anchor only its own chain (its service identity).
- `AuditAnchorer` does that periodically — when MASAR_AUDIT_ANCHOR_EVERY_ENTRIES
  (default 100) entries were added since the last anchor, or
  MASAR_AUDIT_ANCHOR_EVERY_SECONDS (default 300) passed with new entries —
  and once more at shutdown. MASAR_AUDIT_ANCHOR=off turns it off.
- `masar audit verify` checks each service's log against its anchors (read
  from the network database), with the public keys of
  MASAR_AUDIT_ANCHOR_PUBLIC_KEYS (`service:base64,...`; a service may be
  named twice while its key rotates) or the local stack's key files: every
  anchored `(seq, hash)` must be in the log, so a log rolled back past an
  anchor, erased, dropped or rewritten fails, and an anchor not signed by
  the service's key is refused.

What remains: the entries written after the last anchor can still be rolled
back unseen (anchor often); a compromised service holds its anchoring key,
but cannot move an anchor it already placed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    select,
)
from sqlalchemy.orm import Session

from masar.contract import ServiceName
from masar.platform import audit
from masar.platform.crypto import private_dir
from masar.platform.db import Database
from masar.platform.keyfiles import raw_key
from masar.platform.settings import Env, SettingsError

log = logging.getLogger(__name__)

ANCHOR_TABLE = "audit_anchors"
_GUARD_FUNCTION = "masar_audit_anchors_append_only"
_SIGN_LABEL = b"masar.audit.anchor.v1"
KEY_FILE = "audit-anchor-{service}.key"
# The services whose chains are anchored (each has a service identity).
ANCHORED_SERVICES: tuple[ServiceName, ...] = (
    "intake",
    "shelter",
    "legal",
    "employment",
    "health",
    "psychosocial",
)
HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


# --- the network service's table ------------------------------------------------------


def _anchor_columns() -> list[Any]:
    return [
        Column("service", String(32), nullable=False),
        Column("sequence", BigInteger, nullable=False),
        Column("head_hash", String(64), nullable=False),
        Column("key_id", String(16), nullable=False),
        Column("signature", String(128), nullable=False),  # hex
        Column("anchored_at", DateTime(timezone=True), nullable=False),
        Column("anchored_by", String(128), nullable=False),
        PrimaryKeyConstraint("service", "sequence", name="pk_audit_anchors"),
    ]


def anchor_table(metadata: MetaData) -> Table:
    """The anchors table on a metadata (the network service's); append-only."""
    table = Table(ANCHOR_TABLE, metadata, *_anchor_columns())
    audit.guard_append_only(table, _GUARD_FUNCTION)
    return table


def create_anchor_table(op: Any) -> None:
    """For the network service's Alembic migration (`upgrade()`)."""
    op.create_table(ANCHOR_TABLE, *_anchor_columns())
    for statement in audit.guard_ddl(op.get_bind().dialect.name, ANCHOR_TABLE, _GUARD_FUNCTION):
        op.execute(statement)


def drop_anchor_table(op: Any) -> None:
    op.drop_table(ANCHOR_TABLE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_GUARD_FUNCTION}()")


_ANCHORS = anchor_table(MetaData())


@dataclass(frozen=True, kw_only=True)
class Anchor:
    service: str
    sequence: int
    head_hash: str
    key_id: str
    signature: bytes
    anchored_at: datetime | None = None


def read_anchors(engine: Engine) -> dict[str, list[Anchor]] | None:
    """Every anchor in a (network) database, by service, oldest first; None
    when the database has no anchors table."""
    if ANCHOR_TABLE not in set(inspect(engine).get_table_names()):
        return None
    found: dict[str, list[Anchor]] = {}
    with Session(engine) as session:
        rows = session.execute(
            select(_ANCHORS).order_by(_ANCHORS.c.service, _ANCHORS.c.sequence)
        ).mappings()
        for row in rows:
            try:
                signature = bytes.fromhex(str(row["signature"]))
            except ValueError:
                signature = b""
            found.setdefault(str(row["service"]), []).append(
                Anchor(
                    service=str(row["service"]),
                    sequence=int(row["sequence"]),
                    head_hash=str(row["head_hash"]),
                    key_id=str(row["key_id"]),
                    signature=signature,
                    anchored_at=row["anchored_at"],
                )
            )
    return found


# --- keys -------------------------------------------------------------------------------


def anchor_message(service: str, sequence: int, head_hash: str) -> bytes:
    return b"\n".join([_SIGN_LABEL, service.encode(), str(sequence).encode(), head_hash.encode()])


def public_key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()[:16]


def _data_dir(env: Env) -> Path:
    return Path(env.text("MASAR_DATA_DIR", "./var")).expanduser()


class AnchorKey:
    """A service's anchoring key (private): signs its audit head."""

    def __init__(self, service: str, key: Ed25519PrivateKey) -> None:
        self.service = service
        self._key = key
        self.public_key = key.public_key()
        self.key_id = public_key_id(self.public_key)

    @classmethod
    def generate(cls, service: str) -> AnchorKey:
        return cls(service, Ed25519PrivateKey.generate())

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> AnchorKey:
        env = Env(environ)
        given = env.optional("MASAR_AUDIT_ANCHOR_KEY")
        if given:
            raw = raw_key(given, source="MASAR_AUDIT_ANCHOR_KEY")
            return cls(service, Ed25519PrivateKey.from_private_bytes(raw))
        return cls.load_or_create(service, _data_dir(env) / KEY_FILE.format(service=service))

    @classmethod
    def load_or_create(cls, service: str, path: Path) -> AnchorKey:
        private_dir(path.parent)  # the data dir: 0700 if created here
        if not path.exists():
            fresh = cls.generate(service)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first
            else:
                with os.fdopen(fd, "w") as f:
                    json.dump(
                        {"service": service, "private_key": fresh.private_key_b64()}, f, indent=2
                    )
                return fresh
        try:
            data = json.loads(path.read_text())
            raw = raw_key(str(data["private_key"]), source=str(path))
        except (OSError, ValueError, KeyError, TypeError):
            raise SettingsError(f"{path} is not an audit anchoring key file") from None
        return cls(service, Ed25519PrivateKey.from_private_bytes(raw))

    def private_key_b64(self) -> str:
        return base64.b64encode(self._key.private_bytes_raw()).decode()

    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key.public_bytes_raw()).decode()

    def sign(self, sequence: int, head_hash: str) -> bytes:
        return self._key.sign(anchor_message(self.service, sequence, head_hash))


@dataclass
class AnchorPublicKeys:
    """The public anchoring keys `masar audit verify` trusts, by service."""

    keys: dict[str, dict[str, Ed25519PublicKey]] = field(default_factory=dict)

    def add(self, service: str, key: Ed25519PublicKey) -> None:
        self.keys.setdefault(service, {})[public_key_id(key)] = key

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, services: Iterable[str] = ANCHORED_SERVICES
    ) -> AnchorPublicKeys:
        """MASAR_AUDIT_ANCHOR_PUBLIC_KEYS, else the local stack's key files
        (read, never created)."""
        env = Env(environ)
        found = cls()
        spec = env.optional("MASAR_AUDIT_ANCHOR_PUBLIC_KEYS")
        if spec:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                service, _, value = part.partition(":")
                if not service or not value:
                    raise SettingsError(
                        "MASAR_AUDIT_ANCHOR_PUBLIC_KEYS is service:base64,service:base64,..."
                    )
                raw = raw_key(value, source="MASAR_AUDIT_ANCHOR_PUBLIC_KEYS")
                found.add(service.strip(), Ed25519PublicKey.from_public_bytes(raw))
            return found
        for service in services:
            path = _data_dir(env) / KEY_FILE.format(service=service)
            if path.exists():
                found.add(service, AnchorKey.load_or_create(service, path).public_key)
        return found

    def verify(self, anchor: Anchor) -> bool | None:
        """True: signed by the service's key; False: forged; None: unknown key."""
        key = self.keys.get(anchor.service, {}).get(anchor.key_id)
        if key is None:
            return None
        try:
            key.verify(
                anchor.signature, anchor_message(anchor.service, anchor.sequence, anchor.head_hash)
            )
        except InvalidSignature:
            return False
        return True


# --- checking a log against its anchors ---------------------------------------------------


def check_anchors(
    source: Engine | Session,
    anchors: Iterable[Anchor],
    keys: AnchorPublicKeys,
    result: audit.VerifyResult,
) -> None:
    """Add to `result` (from `audit.verify` of the same log) what the anchors
    show: a forged or unverifiable anchor, a log that ends before an anchor
    (rolled back or erased), an entry that is not the one anchored."""
    anchored = sorted(anchors, key=lambda a: a.sequence)
    if not anchored:
        return
    for anchor in anchored:
        verdict = keys.verify(anchor)
        if verdict is None:
            result.problems.append(
                audit.Problem(
                    None,
                    "anchor_unverifiable",
                    f"no public anchoring key {anchor.key_id} for {anchor.service}",
                )
            )
        elif not verdict:
            result.problems.append(
                audit.Problem(None, "anchor_forged", f"anchor {anchor.sequence} is not signed")
            )
    with (
        contextlib.nullcontext(source) if isinstance(source, Session) else Session(source)
    ) as session:
        stored = audit.hashes_at(session, [a.sequence for a in anchored])
    last = anchored[-1]
    for anchor in anchored:
        digest = stored.get(anchor.sequence)
        if digest is not None and digest != anchor.head_hash:
            result.problems.append(
                audit.Problem(
                    anchor.sequence, "anchor_mismatch", "not the entry anchored at this sequence"
                )
            )
    if last.sequence not in stored:
        result.problems.append(
            audit.Problem(
                None,
                "rolled_back",
                f"the log holds {result.entries} entries but entry {last.sequence} was anchored",
            )
        )


def missing_log_problem(anchors: Iterable[Anchor]) -> audit.Problem | None:
    """For a service whose log is gone: what its anchors say it had."""
    anchored = sorted(anchors, key=lambda a: a.sequence)
    if not anchored:
        return None
    return audit.Problem(
        None,
        "log_missing",
        f"the audit log is gone but entry {anchored[-1].sequence} was anchored",
    )


# --- anchoring, from the service ---------------------------------------------------------


class AnchorSink(Protocol):
    """Where a service's signed heads go (the network service's AnchorAuditHead)."""

    async def anchor(
        self, service: str, sequence: int, head_hash: str, key_id: str, signature: bytes
    ) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class AnchorSettings:
    enabled: bool = True
    every_entries: int = 100
    every_seconds: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnchorSettings:
        env = Env(environ)
        return cls(
            enabled=env.boolean("MASAR_AUDIT_ANCHOR", True),
            every_entries=env.integer(
                "MASAR_AUDIT_ANCHOR_EVERY_ENTRIES", 100, minimum=1, maximum=1_000_000
            ),
            every_seconds=float(
                env.integer("MASAR_AUDIT_ANCHOR_EVERY_SECONDS", 300, minimum=1, maximum=86_400)
            ),
        )


class AuditAnchorer:
    """Signs a service's audit head and sends it to the sink: periodically
    (`run`) and once more at shutdown (`close`)."""

    def __init__(
        self,
        *,
        service: str,
        database: Database,
        key: AnchorKey | Callable[[], AnchorKey],
        sink: AnchorSink,
        settings: AnchorSettings | None = None,
        shutdown_timeout: float = 3.0,
    ) -> None:
        """`key` may be a function that loads it: called at the first anchor
        (so a process that never anchors never creates a key file)."""
        self.service = service
        self.database = database
        self._key = key
        self.sink = sink
        self.settings = settings or AnchorSettings()
        self.shutdown_timeout = shutdown_timeout
        self.anchored_seq = 0
        self._last_at = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def key(self) -> AnchorKey:
        if not isinstance(self._key, AnchorKey):
            self._key = self._key()
        return self._key

    def _head(self) -> tuple[int, str] | None:
        def read(session: Session) -> tuple[int, str] | None:
            return audit.read_head(session) if audit.has_audit_log(self.database.engine) else None

        return self.database.call(read)

    async def anchor_now(self) -> bool:
        """Anchor the current head if it moved since the last anchor; True
        when an anchor was placed. Failures are logged, never raised."""
        async with self._lock:
            head = await asyncio.to_thread(self._head)
            if head is None or head[0] <= self.anchored_seq:
                return False
            seq, digest = head
            try:
                key = self.key
                await self.sink.anchor(self.service, seq, digest, key.key_id, key.sign(seq, digest))
            except Exception as exc:
                log.warning(
                    "audit head not anchored",
                    extra={"service": self.service, "seq": seq, "error": type(exc).__name__},
                )
                return False
            self.anchored_seq = seq
            self._last_at = time.monotonic()
            return True

    def _due(self, seq: int) -> bool:
        if seq <= self.anchored_seq:
            return False
        if seq - self.anchored_seq >= self.settings.every_entries:
            return True
        return time.monotonic() - self._last_at >= self.settings.every_seconds

    async def run(self, stop: asyncio.Event) -> None:
        poll = min(5.0, self.settings.every_seconds)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
            if stop.is_set():
                return
            try:
                head = await asyncio.to_thread(self._head)
            except Exception as exc:
                log.warning("audit head unreadable", extra={"error": type(exc).__name__})
                continue
            if head is not None and self._due(head[0]):
                await self.anchor_now()

    async def close(self) -> None:
        """The shutdown anchor, then the sink's channel."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.anchor_now(), timeout=self.shutdown_timeout)
        finally:
            await self.sink.aclose()
