"""The health and psychosocial services' migrations build exactly the schema
their models describe, on SQLite and PostgreSQL, and go down to nothing and
up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from masar.platform.db import Database, migrate
from services.health import app as health_app
from services.health import models as health_models
from services.psychosocial import app as psychosocial_app
from services.psychosocial import models as psychosocial_models

SERVICES: dict[str, tuple[Path, MetaData]] = {
    "health": (health_app.MIGRATIONS_DIR, health_models.Base.metadata),
    "psychosocial": (psychosocial_app.MIGRATIONS_DIR, psychosocial_models.Base.metadata),
}


def _alembic(database: Database, migrations: Path, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


@pytest.mark.parametrize("service", list(SERVICES))
def test_migrations_match_the_models_and_go_down_and_up(database_url: str, service: str) -> None:
    migrations, metadata = SERVICES[service]
    database = Database(database_url)
    try:
        migrate(database, migrations)
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        _alembic(database, migrations, "downgrade", "base")
        with database.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        _alembic(database, migrations, "upgrade", "head")
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        database.dispose()
