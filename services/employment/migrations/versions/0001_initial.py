"""Employment: initial schema (programmes, referrals, outbox, idempotency keys).

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

    op.create_table(
        "referrals",
        sa.Column("interests", sa.Text(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("training_outcome", sa.String(length=32), nullable=True),
        sa.Column("training_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("employer_type", sa.String(length=32), nullable=True),
        sa.Column("contract_type", sa.String(length=32), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
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


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_referrals_status"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_region"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_provider_id"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_created_at"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_case_id"), table_name="referrals")

    op.drop_table("referrals")
    op.drop_index(op.f("ix_programmes_region"), table_name="programmes")
    op.drop_index(op.f("ix_programmes_kind"), table_name="programmes")

    op.drop_table("programmes")
    op.drop_index(op.f("ix_outbox_status"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_case_id"), table_name="outbox")

    op.drop_table("outbox")
    op.drop_table("idempotency_keys")
