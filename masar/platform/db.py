"""Databases: one engine per service, units of work, Alembic migrations.

SQLite (a file under MASAR_DATA_DIR) is the embedded default; PostgreSQL
(`postgresql+psycopg://...`) is production. Business code never commits: the
unit of work (one RPC, one activity) commits or rolls back.

On SQLite every unit of work begins with BEGIN IMMEDIATE, so writers are
serialised and a check-then-reserve (beds, seats) cannot interleave; on
PostgreSQL repositories lock the rows they guard with SELECT ... FOR UPDATE.

Nothing a statement was given leaks through an error: engines hide bound
parameters (`hide_parameters=True`), and PostgreSQL's own words are cut to
what quotes no value (`scrub_database_error`: its DETAIL — "Key (x)=(...)",
"Failing row contains (...)" —, CONTEXT and any message that may quote an
input are dropped; SQLSTATE, constraint, table and column names stay), so an
IntegrityError, its log line or a traceback names the statement and the
rule it broke, never the values (a survivor's data, a key).

A SQLite file is its owner's only: created 0600 in a directory created 0700
(its -wal and -shm inherit the file's mode), and an older one readable by
others is made 0600 when opened.
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
from sqlalchemy.engine import Engine, ExceptionContext, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

from masar.platform.crypto import create_private_file, restrict_file

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


# What SQLite writes beside a database file (all inherit the file's mode).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def prepare_sqlite_file(path: Path) -> None:
    """The database file 0600 (its missing directories 0700) before SQLite
    opens it: SQLite gives its -wal and -shm the database file's mode.
    An existing one (and its companions) readable by others is made 0600."""
    if not path.exists():
        create_private_file(path)  # an empty file is an empty SQLite database
    for companion in ("", *SQLITE_COMPANIONS):
        restrict_file(path.with_name(path.name + companion))


def make_engine(url: str, *, echo: bool = False) -> Engine:
    # `sqlalchemy.create_engine` looked up at call time: the OpenTelemetry
    # instrumentation (masar.platform.telemetry) replaces it after this module is imported.
    create_engine = sqlalchemy.create_engine
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            prepare_sqlite_file(path)
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if make_url(url).database == ":memory:" else None,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
    )
    event.listen(engine, "handle_error", _scrub_error)
    return engine


# SQLSTATE classes whose primary message names rules, never values:
# integrity constraints (23) and transaction rollbacks (40: serialisation
# failures, deadlocks), and P0 (RAISE EXCEPTION in Masar's own triggers, whose
# messages are fixed text such as "audit_log is append-only"). Others (22
# "invalid input syntax for type ...: "..."") may quote the value.
_RULE_CLASSES = ("23", "40", "P0")


def scrub_database_error(error: BaseException) -> None:
    """Cut a PostgreSQL (psycopg) error's text to what cannot quote a value,
    in place. Other drivers' errors are left as they are (SQLite names the
    constraint or column, never the value)."""
    diag = getattr(error, "diag", None)
    sqlstate = getattr(error, "sqlstate", None)
    if diag is None or not hasattr(diag, "message_primary"):
        return
    parts = [f"SQLSTATE {sqlstate or '?'}"]
    primary = diag.message_primary
    if primary and sqlstate and sqlstate[:2] in _RULE_CLASSES:
        parts.append(str(primary))
    for label, value in (
        ("table", diag.table_name),
        ("column", diag.column_name),
        ("constraint", diag.constraint_name),
    ):
        if value:
            parts.append(f"{label} {value}")
    error.args = ("; ".join(parts) + " (details hidden: they may quote values)",)


def _scrub_error(context: ExceptionContext) -> None:
    scrub_database_error(context.original_exception)
    wrapped = context.sqlalchemy_exception
    if wrapped is not None and isinstance(wrapped, sqlalchemy.exc.DBAPIError):
        orig = context.original_exception
        wrapped.args = (f"({type(orig).__module__}.{type(orig).__name__}) {orig}",)


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
