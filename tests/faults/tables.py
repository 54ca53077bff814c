"""What a service's database holds, table by table, row by row — and what
changed between two looks.

`TableDump(engine).snapshot()` reads every table the database has (found with
SQLAlchemy's inspector), every row and every column, ordered by the table's
primary key (all its columns when it has none). `changes(before, after)`
lists what differs: a table that appeared or vanished, a row added, removed
or modified (named by its primary key, with the columns that changed), so a
refused request that rewrites an existing row is caught even when no count
moves.

A few tables record refusals on purpose (the audit log records who was
refused; the sign-in throttle counts failures): `appendable` tables may gain
rows but never lose or change one; `free` tables are not compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.engine import Engine

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableRows:
    """One table's columns, and its rows keyed by primary key."""

    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    rows: Mapping[Row, Row]


Snapshot = Mapping[str, TableRows]


class TableDump:
    """Reads whole tables of one database; the tables are found once (with
    the inspector) and reflected once: a schema does not change under a test."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables: list[tuple[Table, tuple[str, ...]]] | None = None

    def _reflect(self) -> list[tuple[Table, tuple[str, ...]]]:
        if self._tables is None:
            inspector = inspect(self.engine)
            metadata = MetaData()
            tables = []
            for name in sorted(inspector.get_table_names()):
                table = Table(name, metadata, autoload_with=self.engine)
                keys = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
                tables.append((table, keys or tuple(c.name for c in table.columns)))
            self._tables = tables
        return self._tables

    def snapshot(self) -> dict[str, TableRows]:
        found: dict[str, TableRows] = {}
        with self.engine.connect() as connection:
            for table, keys in self._reflect():
                columns = tuple(c.name for c in table.columns)
                at = [columns.index(k) for k in keys]
                query = select(table).order_by(*(table.c[k] for k in keys))
                rows: dict[Row, Row] = {}
                for row in connection.execute(query):
                    values = tuple(row)
                    key = tuple(values[i] for i in at)
                    # A table without a primary key keyed by all its columns:
                    # identical rows are told apart by their rank.
                    while key in rows:
                        key = (*key, "#")
                    rows[key] = values
                found[table.name] = TableRows(columns, keys, rows)
        return found


def _row_changes(name: str, before: TableRows, after: TableRows, *, appendable: bool) -> list[str]:
    found: list[str] = []
    if before.columns != after.columns:
        return [f"{name}: columns {list(before.columns)} became {list(after.columns)}"]
    for key, old in before.rows.items():
        new = after.rows.get(key)
        if new is None:
            found.append(f"{name}: row {key} removed")
        elif new != old:
            changed = [c for c, a, b in zip(before.columns, old, new, strict=True) if a != b]
            found.append(f"{name}: row {key} modified ({', '.join(changed)})")
    if not appendable:
        found += [f"{name}: row {key} added" for key in after.rows.keys() - before.rows.keys()]
    return found


def changes(
    before: Snapshot,
    after: Snapshot,
    *,
    appendable: Iterable[str] = (),
    free: Iterable[str] = (),
) -> list[str]:
    """Every difference between two snapshots, one line each ([] if none)."""
    append_only, ignored = frozenset(appendable), frozenset(free)
    found: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        if name in ignored:
            continue
        if name not in after:
            found.append(f"{name}: table vanished")
        elif name not in before:
            found.append(f"{name}: table appeared")
        else:
            found += _row_changes(name, before[name], after[name], appendable=name in append_only)
    return found
