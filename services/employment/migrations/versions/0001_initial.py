"""Employment: initial schema (programmes, referrals, outbox, idempotency keys)."""

import sqlalchemy as sa
from alembic import op

from masar.platform.migrations import create_ledger_and_outbox, drop_ledger_and_outbox
from masar.referral.migrations import create_referrals_table, drop_referrals_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_ledger_and_outbox(op)

    op.create_table(
        "programmes",
        sa.Column("programme_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("seats_taken", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "seats_taken >= 0 AND seats_taken <= seats",
            name=op.f("ck_programmes_seats_within_capacity"),
        ),
        sa.PrimaryKeyConstraint("programme_id", name=op.f("pk_programmes")),
    )
    op.create_index(op.f("ix_programmes_kind"), "programmes", ["kind"], unique=False)
    op.create_index(op.f("ix_programmes_region"), "programmes", ["region"], unique=False)

    create_referrals_table(
        op,
        sa.Column("interests", sa.Text(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("training_outcome", sa.String(length=32), nullable=True),
        sa.Column("training_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("employer_type", sa.String(length=32), nullable=True),
        sa.Column("contract_type", sa.String(length=32), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    drop_referrals_table(op)
    op.drop_index(op.f("ix_programmes_region"), table_name="programmes")
    op.drop_index(op.f("ix_programmes_kind"), table_name="programmes")

    op.drop_table("programmes")
    drop_ledger_and_outbox(op)
