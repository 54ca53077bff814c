"""Psychosocial: initial schema — support providers, referrals (sessions and
plan), outbox, idempotency keys, the audit log; providers and referrals name
their organisation (the tables every sector has come from
masar.referral.migrations)."""

import sqlalchemy as sa
from alembic import op

from masar.platform.migrations import create_ledger_and_outbox, drop_ledger_and_outbox
from masar.referral.migrations import (
    add_organisations,
    create_referrals_table,
    downgrade_audit_log,
    drop_organisations,
    drop_referrals_table,
    upgrade_audit_log,
)

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_ledger_and_outbox(op)

    op.create_table(
        "support_providers",
        sa.Column("provider_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("kinds", sa.String(length=200), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_support_providers")),
    )
    op.create_index(
        op.f("ix_support_providers_region"), "support_providers", ["region"], unique=False
    )

    create_referrals_table(
        op,
        sa.Column("support", sa.Text(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("sessions", sa.Text(), nullable=True),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("plan_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("support_outcome", sa.String(length=16), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    add_organisations(op, "support_providers")
    upgrade_audit_log()


def downgrade() -> None:
    downgrade_audit_log()
    drop_organisations(op, "support_providers")
    drop_referrals_table(op)
    op.drop_index(op.f("ix_support_providers_region"), table_name="support_providers")
    op.drop_table("support_providers")
    drop_ledger_and_outbox(op)
