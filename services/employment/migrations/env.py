"""Alembic environment of the employment service (its own database)."""

from masar.platform.db import run_alembic_env
from services.employment.models import Base

run_alembic_env(Base.metadata)
