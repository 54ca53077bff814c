"""Alembic environment of the psychosocial service (its own database)."""

from masar.platform.db import run_alembic_env
from services.psychosocial.models import Base

run_alembic_env(Base.metadata)
