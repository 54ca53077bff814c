"""Databases: one engine per service, units of work, Alembic migrations.

SQLite (a file under MASAR_DATA_DIR) is the embedded default; PostgreSQL
(`postgresql+psycopg://...`) is production. Business code never commits: the
unit of work (one RPC, one activity) commits or rolls back.

On SQLite every unit of work begins with BEGIN IMMEDIATE, so writers are
serialised and a check-then-reserve (beds, seats) cannot interleave; on
PostgreSQL repositories lock the rows they guard with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

T = TypeVar("T")

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """Each service owns its own metadata (its own database), same conventions."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class KernelBase(DeclarativeBase):
    """Base for the kernel's own tables (the outbox), added to a service's metadata."""

    metadata = new_metadata()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    # `sqlalchemy.create_engine` looked up at call time: the OpenTelemetry
    # instrumentation (masar.platform.telemetry) replaces it after this module is imported.
    create_engine = sqlalchemy.create_engine
    if is_sqlite(url):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if path == ":memory:" else None,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN (so we can make it IMMEDIATE).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine and its unit of work. Synchronous SQLAlchemy, run off the
    event loop with `run` so gRPC handlers and activities stay responsive."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def call(self, fn: Callable[[Session], T]) -> T:
        with self.unit_of_work() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """One unit of work in a worker thread (contextvars — and so the
        current trace — are carried over by asyncio.to_thread)."""
        return await asyncio.to_thread(self.call, fn)

    def dispose(self) -> None:
        self.engine.dispose()


# --- Alembic -------------------------------------------------------------------


def migrate(database: Database | str, migrations_dir: Path) -> None:
    """Create or upgrade a service's schema to head with its own migrations."""
    from alembic import command
    from alembic.config import Config

    url = database.url if isinstance(database, Database) else database
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    if isinstance(database, Database):
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    else:
        command.upgrade(config, "head")


def run_alembic_env(target_metadata: MetaData) -> None:
    """The whole body of every service's migrations/env.py."""
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    url = config.get_main_option("sqlalchemy.url")
    render_as_batch = bool(url and is_sqlite(url))
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=render_as_batch,
        )
        context.run_migrations()
        return
    assert url is not None
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            context.configure(
                connection=conn, target_metadata=target_metadata, render_as_batch=render_as_batch
            )
            context.run_migrations()
    finally:
        engine.dispose()
