"""The bad-input test's comparison of table contents (tests.faults.tables):
a refused request that rewrites an existing row — the row count unchanged —
is caught; so is one that adds or removes a row, anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.faults.tables import TableDump, changes


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'service.db'}")
    with engine.begin() as db:
        db.execute(
            text(
                "CREATE TABLE referrals (referral_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                " beds INTEGER NOT NULL, notes BLOB)"
            )
        )
        db.execute(text("CREATE TABLE tags (referral_id TEXT, tag TEXT)"))
        db.execute(
            text("CREATE TABLE audit_log (sequence INTEGER PRIMARY KEY, action TEXT NOT NULL)")
        )
        db.execute(
            text(
                "INSERT INTO referrals VALUES ('ref-1', 'PENDING', 2, x'00ff'),"
                " ('ref-2', 'ACCEPTED', 1, NULL)"
            )
        )
        db.execute(text("INSERT INTO tags VALUES ('ref-1', 'a'), ('ref-1', 'a'), ('ref-2', 'b')"))
        db.execute(text("INSERT INTO audit_log VALUES (1, 'case.read')"))
    yield engine
    engine.dispose()


def write(engine: Engine, sql: str) -> None:
    with engine.begin() as db:
        db.execute(text(sql))


def counts(engine: Engine) -> dict[str, int]:
    """What the test compared before: the number of rows per table."""
    with engine.connect() as db:
        return {
            t: int(db.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
            for t in ("referrals", "tags", "audit_log")
        }


def test_nothing_written_nothing_reported(engine: Engine) -> None:
    dump = TableDump(engine)
    assert changes(dump.snapshot(), dump.snapshot()) == []


def test_a_partial_write_that_modifies_a_row_is_caught_where_counts_were_not(
    engine: Engine,
) -> None:
    dump = TableDump(engine)
    before, counted = dump.snapshot(), counts(engine)
    # A refused request that committed half its work: one column of one row.
    write(engine, "UPDATE referrals SET status = 'DECLINED' WHERE referral_id = 'ref-1'")
    assert counts(engine) == counted  # the row counts cannot see it
    assert changes(before, dump.snapshot()) == ["referrals: row ('ref-1',) modified (status)"]


def test_a_modified_binary_column_is_caught(engine: Engine) -> None:
    dump = TableDump(engine)
    before = dump.snapshot()
    write(engine, "UPDATE referrals SET notes = x'00fe' WHERE referral_id = 'ref-1'")
    assert changes(before, dump.snapshot()) == ["referrals: row ('ref-1',) modified (notes)"]


def test_a_row_replaced_by_another_is_caught(engine: Engine) -> None:
    dump = TableDump(engine)
    before = dump.snapshot()
    write(engine, "DELETE FROM referrals WHERE referral_id = 'ref-2'")
    write(engine, "INSERT INTO referrals VALUES ('ref-3', 'ACCEPTED', 1, NULL)")
    assert changes(before, dump.snapshot()) == [
        "referrals: row ('ref-2',) removed",
        "referrals: row ('ref-3',) added",
    ]


def test_a_table_without_primary_key_is_compared_by_whole_rows(engine: Engine) -> None:
    dump = TableDump(engine)
    before = dump.snapshot()
    write(engine, "UPDATE tags SET tag = 'c' WHERE referral_id = 'ref-2'")
    assert changes(before, dump.snapshot()) == [
        "tags: row ('ref-2', 'b') removed",
        "tags: row ('ref-2', 'c') added",
    ]
    # Identical rows count: one of two duplicates removed is a change.
    before = dump.snapshot()
    write(engine, "DELETE FROM tags WHERE rowid = (SELECT min(rowid) FROM tags WHERE tag = 'a')")
    assert changes(before, dump.snapshot()) == ["tags: row ('ref-1', 'a', '#') removed"]


def test_an_appendable_table_may_gain_rows_but_not_change_them(engine: Engine) -> None:
    dump = TableDump(engine)
    before = dump.snapshot()
    write(engine, "INSERT INTO audit_log VALUES (2, 'case.read_refused')")
    after = dump.snapshot()
    assert changes(before, after) == ["audit_log: row (2,) added"]
    assert changes(before, after, appendable={"audit_log"}) == []
    write(engine, "UPDATE audit_log SET action = 'nothing' WHERE sequence = 1")
    assert changes(before, dump.snapshot(), appendable={"audit_log"}) == [
        "audit_log: row (1,) modified (action)"
    ]
    assert changes(before, dump.snapshot(), free={"audit_log"}) == []


def test_a_dropped_or_new_table_is_caught(engine: Engine) -> None:
    before = TableDump(engine).snapshot()
    write(engine, "DROP TABLE tags")
    write(engine, "CREATE TABLE extra (x INTEGER PRIMARY KEY)")
    assert changes(before, TableDump(engine).snapshot()) == [
        "extra: table appeared",
        "tags: table vanished",
    ]
