"""Alembic environment of the shelter service (its own database)."""

from masar.platform.db import run_alembic_env
from services.shelter.models import Base

run_alembic_env(Base.metadata)
