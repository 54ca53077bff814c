"""Alembic environment of the intake service (its own database)."""

from masar.platform.db import run_alembic_env
from services.intake.models import Base

run_alembic_env(Base.metadata)
