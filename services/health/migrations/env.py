"""Alembic environment of the health service (its own database)."""

from masar.platform.db import run_alembic_env
from services.health.models import Base

run_alembic_env(Base.metadata)
