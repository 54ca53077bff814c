"""Network: notifications (one per event key), the recipients' inbox copies
(one per event and recipient), their deliveries on external channels with
every attempt, notification preferences, organisations' webhooks and the
accounts' open items (the daily digest's source).

Revision ID: 0003
Revises: 0002

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=64), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=False),
        sa.Column("provider_organisation_id", sa.String(length=32), nullable=False),
        sa.Column("holding_organisation_id", sa.String(length=32), nullable=False),
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("receiving_organisation_id", sa.String(length=32), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        _at("deadline", nullable=True),
        _at("occurred_at"),
        _at("created_at"),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _at("check_at", nullable=True),
        sa.Column("origin_id", sa.String(length=32), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("notification_id", name="pk_notifications"),
        sa.UniqueConstraint("event_key", name="uq_notifications_event_key"),
    )
    op.create_index("ix_notifications_case_id", "notifications", ["case_id"])
    op.create_index("ix_notifications_state", "notifications", ["state"])

    op.create_table(
        "notification_copies",
        sa.Column("copy_id", sa.String(length=32), nullable=False),
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        _at("created_at"),
        _at("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name="fk_notification_copies_notification_id_notifications",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_notification_copies_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("copy_id", name="pk_notification_copies"),
        sa.UniqueConstraint(
            "notification_id", "account_id", name="uq_notification_copies_notification_id"
        ),
    )
    op.create_index(
        "ix_notification_copies_account_id", "notification_copies", ["account_id"]
    )

    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("copy_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_attempt_at"),
        _at("lease_until", nullable=True),
        _at("last_attempt_at", nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        _at("sent_at", nullable=True),
        _at("created_at"),
        sa.ForeignKeyConstraint(
            ["copy_id"],
            ["notification_copies.copy_id"],
            name="fk_deliveries_copy_id_notification_copies",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_deliveries"),
        sa.UniqueConstraint("copy_id", "channel", name="uq_deliveries_copy_id"),
    )
    op.create_index("ix_deliveries_copy_id", "deliveries", ["copy_id"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_index("ix_deliveries_next_attempt_at", "deliveries", ["next_attempt_at"])

    op.create_table(
        "delivery_attempts",
        sa.Column("attempt_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _at("at"),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.delivery_id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
        ),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_delivery_attempts"),
    )
    op.create_index(
        "ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"]
    )

    op.create_table(
        "notification_preferences",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("email_enabled", sa.Boolean(), nullable=False),
        sa.Column("digest_enabled", sa.Boolean(), nullable=False),
        sa.Column("digest_hour", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("last_digest_on", sa.String(length=10), nullable=True),
        _at("updated_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_notification_preferences_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_notification_preferences"),
    )

    op.create_table(
        "organisation_webhooks",
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.organisation_id"],
            name="fk_organisation_webhooks_organisation_id_organisations",
        ),
        sa.PrimaryKeyConstraint("organisation_id", name="pk_organisation_webhooks"),
    )

    op.create_table(
        "open_items",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("item_key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("referral_id", sa.String(length=64), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=False),
        _at("deadline", nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        _at("resolved_at", nullable=True),
        sa.Column("notification_id", sa.String(length=32), nullable=False),
        _at("updated_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_open_items_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("account_id", "case_id", "item_key", name="pk_open_items"),
    )
    op.create_index("ix_open_items_resolved", "open_items", ["resolved"])


def downgrade() -> None:
    op.drop_table("open_items")
    op.drop_table("organisation_webhooks")
    op.drop_table("notification_preferences")
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("notification_copies")
    op.drop_table("notifications")
