"""The network's migrations build exactly the schema its models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from masar.platform.db import Database, migrate
from services.network.app import MIGRATIONS_DIR
from services.network.models import Base


def test_migrations_match_the_models(database_url):
    database = Database(database_url)
    try:
        migrate(database, MIGRATIONS_DIR)
        with database.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        database.dispose()
