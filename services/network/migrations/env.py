"""Alembic environment of the network service (its own database)."""

from masar.platform.db import run_alembic_env
from services.network.models import Base

run_alembic_env(Base.metadata)
