"""initial: providers, referrals with their matters, protection orders, hearings"""

import sqlalchemy as sa
from alembic import op

from masar.platform.migrations import create_ledger_and_outbox, drop_ledger_and_outbox
from masar.referral.migrations import create_referrals_table, drop_referrals_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_ledger_and_outbox(op)

    op.create_table(
        "providers",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_providers")),
    )
    op.create_index(op.f("ix_providers_region"), "providers", ["region"], unique=False)

    create_referrals_table(
        op,
        sa.Column("matters", sa.Text(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("first_meeting_at", sa.DateTime(timezone=True), nullable=True),
    )

    op.create_table(
        "hearings",
        sa.Column("hearing_id", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=32), nullable=False),
        sa.Column("matter", sa.Text(), nullable=False),
        sa.Column("court", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referrals.referral_id"],
            name=op.f("fk_hearings_referral_id_referrals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hearing_id", name=op.f("pk_hearings")),
    )
    op.create_index(op.f("ix_hearings_referral_id"), "hearings", ["referral_id"], unique=False)

    op.create_table(
        "protection_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=32), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breaches", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referrals.referral_id"],
            name=op.f("fk_protection_orders_referral_id_referrals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_protection_orders")),
    )
    op.create_index(
        op.f("ix_protection_orders_referral_id"), "protection_orders", ["referral_id"], unique=False
    )

    op.create_table(
        "provider_languages",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.provider_id"],
            name=op.f("fk_provider_languages_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", "language", name=op.f("pk_provider_languages")),
    )
    op.create_index(
        op.f("ix_provider_languages_language"), "provider_languages", ["language"], unique=False
    )

    op.create_table(
        "provider_matters",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("matter", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.provider_id"],
            name=op.f("fk_provider_matters_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", "matter", name=op.f("pk_provider_matters")),
    )
    op.create_index(
        op.f("ix_provider_matters_matter"), "provider_matters", ["matter"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_provider_matters_matter"), table_name="provider_matters")

    op.drop_table("provider_matters")
    op.drop_index(op.f("ix_provider_languages_language"), table_name="provider_languages")

    op.drop_table("provider_languages")
    op.drop_index(op.f("ix_protection_orders_referral_id"), table_name="protection_orders")

    op.drop_table("protection_orders")
    op.drop_index(op.f("ix_hearings_referral_id"), table_name="hearings")

    op.drop_table("hearings")
    drop_referrals_table(op)
    op.drop_index(op.f("ix_providers_region"), table_name="providers")

    op.drop_table("providers")
    drop_ledger_and_outbox(op)
