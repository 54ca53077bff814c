"""The unit of work, on SQLite and on PostgreSQL; what errors and files let out."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import traceback
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, Column, Integer, String, Table, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from masar.platform.db import Database, new_metadata

metadata = new_metadata()
counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


@pytest.fixture
def database(database_url):
    db = Database(database_url)
    metadata.create_all(db.engine)
    yield db
    db.dispose()


def test_unit_of_work_commits(database) -> None:
    database.call(lambda s: s.execute(counters.insert().values(name="beds", value=3)))
    assert database.call(lambda s: s.execute(select(counters.c.value)).scalar_one()) == 3


def test_unit_of_work_rolls_back_everything_on_error(database) -> None:
    def half_written(session):
        session.execute(counters.insert().values(name="a", value=1))
        raise ValueError("validation failed after the first write")

    with pytest.raises(ValueError):
        database.call(half_written)
    assert (
        database.call(lambda s: s.execute(select(func.count()).select_from(counters)).scalar()) == 0
    )


async def test_check_then_write_never_interleaves(database) -> None:
    """Forty concurrent reservations of three places: exactly three succeed."""
    database.call(lambda s: s.execute(counters.insert().values(name="free", value=3)))

    def reserve(session) -> bool:
        free = session.execute(
            select(counters.c.value).where(counters.c.name == "free").with_for_update()
        ).scalar_one()
        if free <= 0:
            return False
        session.execute(counters.update().where(counters.c.name == "free").values(value=free - 1))
        return True

    results = await asyncio.gather(*(database.run(reserve) for _ in range(40)))
    assert sum(results) == 3
    assert (
        database.call(
            lambda s: s.execute(
                select(counters.c.value).where(counters.c.name == "free")
            ).scalar_one()
        )
        == 0
    )


def test_sqlite_pragmas(sqlite_url) -> None:
    db = Database(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


# --- no leaks: values stay out of errors and logs; files are the owner's only -------------

CANARY = "Canary-7f3e-survivor-name"


@pytest.fixture
def loose_umask():
    """The most common umask (022): what the code creates must not depend on it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_integrity_error_names_no_value(database_url, caplog) -> None:
    """A duplicate key, a broken check, a bad type: the exception, its
    traceback and every log line name the statement and the rule, never the
    values it was given (PostgreSQL's DETAIL would quote them)."""
    db = Database(database_url, echo=True)  # echo: statements (and their parameters) logged
    local = new_metadata()
    people = Table(
        "people",
        local,
        Column("alias", String(64), primary_key=True),
        Column("age", Integer, CheckConstraint("age > 0", name="age_positive")),
    )
    local.create_all(db.engine)
    db.call(lambda s: s.execute(people.insert().values(alias=CANARY, age=30)))
    attempts: list[dict[str, object]] = [
        {"alias": CANARY, "age": 31},  # duplicate key
        {"alias": f"{CANARY}-2", "age": -1},  # check constraint
        {"alias": f"{CANARY}-3", "age": CANARY},  # wrong type (PostgreSQL refuses it)
    ]
    caplog.set_level(logging.DEBUG)
    raised: list[DBAPIError] = []
    for values in attempts:

        def write(session: Session, values: dict[str, object] = values) -> None:
            session.execute(people.insert().values(**values))

        try:
            db.call(write)
        except DBAPIError as exc:
            raised.append(exc)
            logging.getLogger("masar.test").exception("the write failed")
    assert isinstance(raised[0], IntegrityError) and isinstance(raised[1], IntegrityError)
    assert "age_positive" in str(raised[1])  # the rule broken is named
    for error in raised:
        assert CANARY not in str(error)
        assert CANARY not in "".join(traceback.format_exception(error))
    assert caplog.records and CANARY not in caplog.text
    db.dispose()


def test_sqlite_files_are_the_owners_only(tmp_path, loose_umask) -> None:
    path = tmp_path / "data" / "nested" / "service.db"
    db = Database(f"sqlite:///{path}")
    local = new_metadata()
    Table("t", local, Column("a", Integer, primary_key=True))
    local.create_all(db.engine)
    with db.engine.connect() as conn:  # WAL open: -wal and -shm exist
        conn.exec_driver_sql("INSERT INTO t (a) VALUES (1)")
        conn.commit()
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["service.db", "service.db-shm", "service.db-wal"]
        assert {name: _mode(path.parent / name) for name in files} == dict.fromkeys(files, 0o600)
    assert _mode(tmp_path / "data") == _mode(path.parent) == 0o700
    db.dispose()


def test_an_older_world_readable_sqlite_file_is_tightened(tmp_path, loose_umask) -> None:
    path = tmp_path / "old.db"
    for name in ("old.db", "old.db-wal"):
        (tmp_path / name).touch(mode=0o644)
        os.chmod(tmp_path / name, 0o644)
    Database(f"sqlite:///{path}").dispose()
    assert _mode(path) == _mode(tmp_path / "old.db-wal") == 0o600


def test_ci_never_skips_postgresql(monkeypatch) -> None:
    """Any non-empty CI (not only "true") makes a missing PostgreSQL a failure."""
    from tests.conftest import POSTGRES_ENV, in_ci, postgres_server_url

    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    for value in ("true", "1", "yes", "gitlab"):
        monkeypatch.setenv("CI", value)
        assert in_ci()
        with pytest.raises(pytest.fail.Exception, match=POSTGRES_ENV):
            postgres_server_url()
    for value in ("", "  "):
        monkeypatch.setenv("CI", value)
        assert not in_ci() and postgres_server_url() is None
    monkeypatch.delenv("CI")
    assert not in_ci() and postgres_server_url() is None
