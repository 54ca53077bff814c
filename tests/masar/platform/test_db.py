"""The unit of work, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, Integer, String, Table, func, select

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
