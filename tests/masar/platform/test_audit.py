"""The hash-chained audit log, on SQLite and PostgreSQL, tampered with by raw SQL."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, String, Table, select, text
from sqlalchemy.exc import DBAPIError

from masar.cli.audit import audit_verify_main
from masar.platform import audit
from masar.platform.audit_anchor import AnchorKey, AnchorSettings, AuditAnchorer, anchor_table
from masar.platform.crypto import Keyring
from masar.platform.db import Database, migrate, new_metadata
from masar.platform.identity import Caller, Role
from masar.platform.settings import ServiceSettings

NOW = datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
OFFICER = Caller(
    subject="u-officer",
    role=Role.INTAKE_OFFICER,
    org="assoc-7",
    region="fes-meknes",
    issued_at=NOW,
    expires_at=NOW + timedelta(hours=8),
)


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate("k1")


def _database(url: str) -> Database:
    metadata = new_metadata()
    audit.audit_tables(metadata)
    db = Database(url)
    metadata.create_all(db.engine)
    return db


def _fill(db: Database, ring: Keyring, count: int = 5) -> None:
    for i in range(count):
        with db.unit_of_work() as session:
            audit.append(
                session,
                actor=OFFICER,
                action="case.read" if i % 2 else "consent.granted",
                case_id=f"case{i % 2}",
                target=f"shr-{i:04d}",
                reason="intake" if i % 2 else None,
                keyring=ring,
                now=NOW + timedelta(minutes=i),
            )


def _drop_guard(db: Database) -> None:
    """An owner of the database can remove the triggers; the chain still tells."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))
            conn.execute(text("DROP TRIGGER audit_log_no_truncate ON audit_log"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def _raw(db: Database, *statements: str, **params: object) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def test_intact_chain_verifies(database_url, ring) -> None:
    db = _database(database_url)
    _fill(db, ring)
    result = audit.verify(db.engine, keyring=ring)
    assert result.ok, result.problems
    assert (result.entries, result.head_seq) == (5, 5)
    entries = db.call(lambda s: audit.entries_for_case(s, "case1"))
    assert [e.seq for e in entries] == [2, 4]
    assert entries[0].actor == "u-officer" and entries[0].role == "intake_officer"
    assert entries[0].at == NOW + timedelta(minutes=1)
    db.dispose()


def test_entries_carry_codes_not_free_text(database_url, ring) -> None:
    db = _database(database_url)
    with pytest.raises(ValueError, match="reason"):
        db.call(
            lambda s: audit.append(
                s, actor=OFFICER, action="case.read", reason="she fears her husband", keyring=ring
            )
        )
    empty = audit.verify(db.engine, keyring=ring)  # nothing was written: intact
    assert empty.ok and empty.entries == 0
    db.dispose()


def test_update_and_delete_are_refused_by_the_database(database_url, ring) -> None:
    db = _database(database_url)
    _fill(db, ring, 2)
    for statement in ("UPDATE audit_log SET action = 'x' WHERE seq = 1", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            _raw(db, statement)
    assert audit.verify(db.engine, keyring=ring).ok
    db.dispose()


def _rewrite_chain_from(db: Database, seq: int) -> None:
    """What an attacker who knows the algorithm (but not the key) does after
    an edit: recompute every later hash, and the head's seq and hash."""
    with db.engine.begin() as conn:
        log = audit.audit_tables(new_metadata()).log  # typed columns: `at` as a datetime
        rows = conn.execute(select(log).order_by(log.c.seq)).mappings().all()
        prev = audit.GENESIS_HASH
        for row in rows:
            entry = audit.AuditEntry.from_row({**row, "prev_hash": prev, "hash": ""})
            new_hash = entry.computed_hash()
            if row["seq"] >= seq:
                conn.execute(
                    text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                    {"p": prev, "h": new_hash, "s": row["seq"]},
                )
            prev = new_hash
        conn.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": rows[-1]["seq"], "h": prev}
        )


@pytest.mark.parametrize(
    ("tamper", "kind", "seq"),
    [
        ("edit", "altered", 3),
        ("delete", "missing", 4),
        ("reorder", "broken_link", 2),
        ("drop_last", "truncated_or_appended", None),
        ("rewrite", "head_forged", None),
    ],
)
def test_tampering_is_detected(database_url, ring, tamper, kind, seq) -> None:
    db = _database(database_url)
    _fill(db, ring)
    _drop_guard(db)
    if tamper == "edit":
        _raw(db, "UPDATE audit_log SET action = 'consent.withdrawn' WHERE seq = 3")
    elif tamper == "delete":
        _raw(db, "DELETE FROM audit_log WHERE seq = 3")
    elif tamper == "reorder":
        _raw(
            db,
            "UPDATE audit_log SET seq = -2 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = -2",
        )
    elif tamper == "drop_last":
        _raw(db, "DELETE FROM audit_log WHERE seq = 5")
    elif tamper == "rewrite":
        _raw(db, "UPDATE audit_log SET case_id = 'case9' WHERE seq = 2")
        _rewrite_chain_from(db, 2)
    result = audit.verify(db.engine, keyring=ring)
    assert not result.ok
    assert kind in {p.kind for p in result.problems}, result.problems
    assert result.first_bad_seq == seq
    db.dispose()


def test_concurrent_appends_keep_one_chain(database_url, ring) -> None:
    db = _database(database_url)

    def writer(n: int) -> None:
        for _ in range(8):
            db.call(lambda s: audit.append(s, actor=OFFICER, action=f"probe.{n}", keyring=ring))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = audit.verify(db.engine, keyring=ring)
    assert result.ok, result.problems
    assert result.entries == result.head_seq == 24
    db.dispose()


def test_key_rotation_keeps_the_head_verifiable(sqlite_url, ring) -> None:
    db = _database(sqlite_url)
    _fill(db, ring, 2)
    rotated = ring.rotated("k2")
    _fill(db, rotated, 1)
    assert audit.verify(db.engine, keyring=rotated).ok
    unknown = audit.verify(db.engine, keyring=Keyring.generate("k9"))
    assert [p.kind for p in unknown.problems] == ["head_unverifiable"]
    db.dispose()


def test_audit_verify_command(tmp_path, ring, capsys) -> None:
    spec = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in ring.keys.items())
    env = {"MASAR_DATA_DIR": str(tmp_path), "MASAR_KEYRING": spec}
    db = _database(ServiceSettings.from_env("intake", env).database_url)
    _fill(db, ring, 3)

    assert audit_verify_main(["--json"], environ=env) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["services"]["intake"]["status"] == "intact"
    assert report["services"]["intake"]["entries"] == 3
    assert report["services"]["shelter"] == {"status": "absent"}

    _drop_guard(db)
    _raw(db, "UPDATE audit_log SET target = 'shr-9999' WHERE seq = 2")
    assert audit_verify_main(["--service", "intake"], environ=env) == 1
    out = capsys.readouterr().out
    assert "intake: tampered" in out and "entry 2: altered" in out
    db.dispose()


MIGRATION = """
from alembic import op

from masar.platform.audit import create_audit_tables, drop_audit_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_audit_tables(op)


def downgrade() -> None:
    drop_audit_tables(op)
"""


def test_alembic_helper_creates_tables_and_guard(database_url, ring, tmp_path) -> None:
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from masar.platform.db import new_metadata, run_alembic_env\n\n"
        "run_alembic_env(new_metadata())\n"
    )
    (migrations / "script.py.mako").write_text("")
    (migrations / "versions" / "0001_audit.py").write_text(MIGRATION)
    db = Database(database_url)
    migrate(db, migrations)
    assert audit.has_audit_log(db.engine)
    _fill(db, ring, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        _raw(db, "DELETE FROM audit_log WHERE seq = 1")
    assert audit.verify(db.engine, keyring=ring).ok
    db.dispose()


# --- anchors: a head signed with the service's anchoring key, kept elsewhere ----------


class _TableSink:
    """Stores anchors in a network-like database (services/network/anchors.py
    through gRPC is tested in tests/services/network/test_audit_anchors.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = anchor_table(new_metadata())
        self.sent: list[int] = []

    async def anchor(self, service, sequence, head_hash, key_id, signature) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                self.table.insert().values(
                    service=service,
                    sequence=sequence,
                    head_hash=head_hash,
                    key_id=key_id,
                    signature=signature.hex(),
                    anchored_at=NOW,
                    anchored_by="service-intake",
                )
            )
        self.sent.append(sequence)

    async def aclose(self) -> None:
        pass


class _Stack:
    """A data dir with an intake database (SQLite or PostgreSQL), the network
    database holding the anchors, and intake's anchoring key."""

    def __init__(self, tmp_path, database_url: str, ring: Keyring) -> None:
        spec = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in ring.keys.items())
        self.env = {
            "MASAR_DATA_DIR": str(tmp_path),
            "MASAR_KEYRING": spec,
            "MASAR_INTAKE_DATABASE_URL": database_url,
        }
        self.ring = ring
        metadata = new_metadata()
        audit.audit_tables(metadata)
        Table("cases", metadata, Column("case_id", String(32), primary_key=True))
        self.db = Database(database_url)
        metadata.create_all(self.db.engine)
        network_metadata = new_metadata()
        anchor_table(network_metadata)
        self.network = Database(ServiceSettings.from_env("network", self.env).database_url)
        network_metadata.create_all(self.network.engine)
        self.key = AnchorKey.from_env("intake", self.env)  # the local key file, 0600
        self.key_path = tmp_path / "audit-anchor-intake.key"
        self.sink = _TableSink(self.network)
        self.anchorer = AuditAnchorer(
            service="intake", database=self.db, key=self.key, sink=self.sink
        )

    def fill(self, count: int) -> None:
        _fill(self.db, self.ring, count)

    def anchor(self) -> None:
        assert asyncio.run(self.anchorer.anchor_now())

    def verify(self, capsys) -> tuple[int, dict, str]:
        code = audit_verify_main(["--json", "--service", "intake"], environ=self.env)
        captured = capsys.readouterr()
        return code, json.loads(captured.out), captured.err

    def dispose(self) -> None:
        self.db.dispose()
        self.network.dispose()


@pytest.fixture
def stack(tmp_path, database_url, ring):
    built = _Stack(tmp_path, database_url, ring)
    yield built
    built.dispose()


def _kinds(report: dict) -> set[str]:
    return {p["kind"] for p in report["services"]["intake"].get("problems", [])}


def test_anchored_log_verifies(stack, capsys) -> None:
    stack.fill(3)
    stack.anchor()
    stack.fill(2)  # written after the last anchor: fine
    code, report, err = stack.verify(capsys)
    assert code == 0 and err == "", report
    intake = report["services"]["intake"]
    assert intake["status"] == "intact" and intake["anchor"]["seq"] == 3
    assert oct(stack.key_path.stat().st_mode & 0o777) == "0o600"


def _head_row(db: Database) -> dict:
    with db.engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_head")).mappings().one())


def test_a_rolled_back_head_fails(stack, capsys) -> None:
    stack.fill(3)
    backup = _head_row(stack.db)  # the state of an older backup
    stack.fill(2)
    stack.anchor()
    # Restored from the backup: entries 4 and 5 gone, the old (valid) head back.
    _drop_guard(stack.db)
    _raw(stack.db, "DELETE FROM audit_log WHERE seq > 3")
    _raw(
        stack.db,
        "UPDATE audit_head SET seq = :seq, hash = :hash, key_id = :key_id, mac = :mac",
        **{k: backup[k] for k in ("seq", "hash", "key_id", "mac")},
    )
    # The chain alone cannot tell...
    assert audit.verify(stack.db.engine, keyring=stack.ring).ok
    # ... its anchor can.
    code, report, err = stack.verify(capsys)
    assert code == 1 and "rolled_back" in _kinds(report), report
    assert err.count("\n") == 1 and err.startswith("masar audit verify: FAILED: intake")
    # And the network refuses to anchor the older head (services/network/anchors.py).


def test_erased_entries_fail(stack, capsys) -> None:
    stack.fill(4)
    stack.anchor()
    _drop_guard(stack.db)
    _raw(stack.db, "DELETE FROM audit_log", "DELETE FROM audit_head")  # log and head together
    assert audit.verify(stack.db.engine, keyring=stack.ring).ok  # an empty chain is intact
    code, report, err = stack.verify(capsys)
    assert code == 1 and "rolled_back" in _kinds(report), report
    assert "FAILED" in err


def test_dropped_tables_fail(stack, capsys) -> None:
    stack.fill(2)
    stack.anchor()
    _raw(stack.db, "DROP TABLE audit_log", "DROP TABLE audit_head")
    code, report, err = stack.verify(capsys)
    assert code == 1 and report["services"]["intake"]["status"] == "missing"
    assert _kinds(report) == {"log_missing"} and "FAILED: intake" in err


def test_dropped_tables_fail_even_without_an_anchor(stack, capsys) -> None:
    stack.fill(2)
    _raw(stack.db, "DROP TABLE audit_log", "DROP TABLE audit_head")
    code, report, _ = stack.verify(capsys)
    assert code == 1 and _kinds(report) == {"tables_missing"}, report


def test_an_edited_entry_fails_and_mismatches_its_anchor(stack, capsys) -> None:
    stack.fill(3)
    stack.anchor()
    _drop_guard(stack.db)
    _raw(stack.db, "UPDATE audit_log SET target = 'shr-9999' WHERE seq = 3")
    code, report, _ = stack.verify(capsys)
    assert code == 1 and "altered" in _kinds(report)
    # Rewritten whole from there on (the hashes recomputed): the anchor still tells.
    _rewrite_chain_from(stack.db, 3)
    code, report, _ = stack.verify(capsys)
    assert code == 1 and {"anchor_mismatch", "head_forged"} <= _kinds(report), report


def test_reordered_entries_fail(stack, capsys) -> None:
    stack.fill(3)
    stack.anchor()
    _drop_guard(stack.db)
    _raw(
        stack.db,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    code, report, _ = stack.verify(capsys)
    assert code == 1 and {"broken_link", "anchor_mismatch"} <= _kinds(report), report


def test_an_anchor_not_signed_by_the_service_is_refused(stack, capsys) -> None:
    stack.fill(2)
    impostor = AnchorKey.generate("intake")
    asyncio.run(
        stack.sink.anchor("intake", 2, "a" * 64, stack.key.key_id, impostor.sign(2, "a" * 64))
    )
    code, report, _ = stack.verify(capsys)
    assert code == 1 and "anchor_forged" in _kinds(report), report


def test_the_anchorer_anchors_every_n_entries_and_at_shutdown(stack) -> None:
    anchorer = AuditAnchorer(
        service="intake",
        database=stack.db,
        key=lambda: stack.key,
        sink=stack.sink,
        settings=AnchorSettings(every_entries=3, every_seconds=3600),
    )

    async def scenario() -> None:
        assert not await anchorer.anchor_now()  # nothing to anchor yet
        stack.fill(2)
        assert not anchorer._due(2)  # fewer than 3 new entries, within the hour
        stack.fill(1)
        assert anchorer._due(3)
        stop = asyncio.Event()
        anchorer.settings = AnchorSettings(every_entries=3, every_seconds=0.05)  # poll fast
        task = asyncio.create_task(anchorer.run(stop))
        for _ in range(100):
            if stack.sink.sent:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task
        assert stack.sink.sent == [3]
        stack.fill(1)
        await anchorer.close()  # the shutdown anchor
        assert stack.sink.sent == [3, 4]
        await anchorer.close()  # nothing new: nothing sent
        assert stack.sink.sent == [3, 4]

    asyncio.run(scenario())
