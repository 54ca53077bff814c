"""Shelter: initial schema (shelters, referrals, outbox, idempotency keys)."""

import sqlalchemy as sa
from alembic import op

from masar.platform.migrations import create_ledger_and_outbox, drop_ledger_and_outbox
from masar.referral.migrations import create_referrals_table, drop_referrals_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_ledger_and_outbox(op)

    create_referrals_table(
        op,
        sa.Column("household_size", sa.Integer(), nullable=True),
        sa.Column("children", sa.Integer(), nullable=True),
        sa.Column("accessibility_needs", sa.Text(), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
    )

    op.create_table(
        "shelters",
        sa.Column("shelter_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("accepts_children", sa.Boolean(), nullable=False),
        sa.Column("accessibility", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("reserved_beds", sa.Integer(), nullable=False),
        sa.Column("occupied_beds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "reserved_beds >= 0 AND occupied_beds >= 0 AND reserved_beds + occupied_beds <= capacity",
            name=op.f("ck_shelters_beds_within_capacity"),
        ),
        sa.PrimaryKeyConstraint("shelter_id", name=op.f("pk_shelters")),
    )
    op.create_index(op.f("ix_shelters_region"), "shelters", ["region"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_shelters_region"), table_name="shelters")

    op.drop_table("shelters")
    drop_referrals_table(op)
    drop_ledger_and_outbox(op)
