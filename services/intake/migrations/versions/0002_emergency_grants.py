"""Intake: coordinators' emergency grants (services.intake.grants) — access to one case
outside the coordinator's region, with a reason, for a limited time.

The note is free text: stored as EncryptedText ciphertext (see models.py).

Revision ID: 0002
Revises: 0001

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "emergency_grants",
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("org", sa.String(length=128), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("case_region", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_emergency_grants")),
    )
    op.create_index(
        "ix_emergency_grants_case_id_subject", "emergency_grants", ["case_id", "subject"]
    )


def downgrade() -> None:
    op.drop_index("ix_emergency_grants_case_id_subject", table_name="emergency_grants")
    op.drop_table("emergency_grants")
