"""Shelter: initial schema (shelters, referrals, outbox, idempotency keys).

Revision ID: 0001
Revises:

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=48), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "outbox",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("update_name", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_case_id"), "outbox", ["case_id"], unique=False)
    op.create_index(op.f("ix_outbox_status"), "outbox", ["status"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("household_size", sa.Integer(), nullable=True),
        sa.Column("children", sa.Integer(), nullable=True),
        sa.Column("accessibility_needs", sa.Text(), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
        sa.Column("referral_id", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decline_reason", sa.String(length=32), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("needs_purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("referral_id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_referrals_idempotency_key")),
    )
    op.create_index(op.f("ix_referrals_case_id"), "referrals", ["case_id"], unique=False)
    op.create_index(op.f("ix_referrals_created_at"), "referrals", ["created_at"], unique=False)
    op.create_index(op.f("ix_referrals_provider_id"), "referrals", ["provider_id"], unique=False)
    op.create_index(op.f("ix_referrals_region"), "referrals", ["region"], unique=False)
    op.create_index(op.f("ix_referrals_status"), "referrals", ["status"], unique=False)

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
    """Downgrade schema."""
    op.drop_index(op.f("ix_shelters_region"), table_name="shelters")

    op.drop_table("shelters")
    op.drop_index(op.f("ix_referrals_status"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_region"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_provider_id"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_created_at"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_case_id"), table_name="referrals")

    op.drop_table("referrals")
    op.drop_index(op.f("ix_outbox_status"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_case_id"), table_name="outbox")

    op.drop_table("outbox")
    op.drop_table("idempotency_keys")
