"""Alembic environment of the legal aid service (its own database)."""

from masar.platform.db import run_alembic_env
from services.legal.models import Base

run_alembic_env(Base.metadata)
