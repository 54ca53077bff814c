"""What every sector's Alembic revisions share, so that the tables common to
every sector come from one place:

- revision 0001 calls `masar.platform.migrations.create_ledger_and_outbox(op)`
  and `create_referrals_table(op, *the sector's own columns)` (and the `drop_`
  functions in `downgrade()`);
- revision 0002, the audit log (`masar.platform.audit`), is only::

      revision = "0002"
      down_revision = "0001"
      upgrade = upgrade_audit_log
      downgrade = downgrade_audit_log

- revision 0003, providers belong to organisations, calls
  `add_organisations(op, "<the provider table>")` (and
  `drop_organisations` in `downgrade()`).

Written out as first migrated, on purpose: a revision must create the same
schema forever, even after the models move on (a later change is a new
revision)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op as alembic_op

from masar.platform.audit import create_audit_tables, drop_audit_tables

_REFERRAL_INDEXES = (
    ("ix_referrals_case_id", "case_id"),
    ("ix_referrals_created_at", "created_at"),
    ("ix_referrals_provider_id", "provider_id"),
    ("ix_referrals_region", "region"),
    ("ix_referrals_status", "status"),
)


def create_referrals_table(op: Any, *sector_columns: sa.Column[Any]) -> None:
    """For a sector's first revision (`upgrade()`): the `referrals` table,
    the sector's own columns first, then `ReferralColumns` as first migrated."""
    op.create_table(
        "referrals",
        *sector_columns,
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
    for name, column in _REFERRAL_INDEXES:
        op.create_index(op.f(name), "referrals", [column], unique=False)


def drop_referrals_table(op: Any) -> None:
    """For a sector's first revision (`downgrade()`)."""
    for name, _ in reversed(_REFERRAL_INDEXES):
        op.drop_index(op.f(name), table_name="referrals")
    op.drop_table("referrals")


def add_organisations(op: Any, provider_table: str) -> None:
    """For a sector's revision 0003: an `organisation_id` on its providers
    (the organisation of the network each belongs to) and on its referrals
    (copied from the provider when the referral is made: its staff act on
    it). Nullable and left NULL on existing rows: a provider registered
    before has no organisation, and its referrals are seen by coordinators
    and by no staff until an operator assigns it one, e.g. on shelter::

        UPDATE shelters SET organisation_id = 'org-...' WHERE shelter_id = 'shl-...';
        UPDATE referrals SET organisation_id = 'org-...' WHERE provider_id = 'shl-...';
    """
    for table in (provider_table, "referrals"):
        op.add_column(table, sa.Column("organisation_id", sa.String(length=128), nullable=True))
        op.create_index(
            op.f(f"ix_{table}_organisation_id"), table, ["organisation_id"], unique=False
        )


def drop_organisations(op: Any, provider_table: str) -> None:
    """For a sector's revision 0003 (`downgrade()`)."""
    for table in ("referrals", provider_table):
        op.drop_index(op.f(f"ix_{table}_organisation_id"), table_name=table)
        op.drop_column(table, "organisation_id")


def upgrade_audit_log() -> None:
    """Revision 0002 of every sector: the append-only, hash-chained audit log."""
    create_audit_tables(alembic_op)


def downgrade_audit_log() -> None:
    drop_audit_tables(alembic_op)
