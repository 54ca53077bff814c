"""Alembic environment of the shelter service (its own database)."""

from masar.db import run_alembic_env
from services.shelter.models import Base

run_alembic_env(Base.metadata)
