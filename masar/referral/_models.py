"""The tables of the handshake: the columns every sector's referral table
has, and the platform tables a sector's database holds with it (outbox,
idempotency ledger, audit log) — for the models and for the migrations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import DateTime, Integer, MetaData, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from masar.platform.audit import AuditTables, audit_tables
from masar.platform.idempotency import MAX_KEY_LENGTH, idempotency_table
from masar.platform.outbox import outbox_table


class ReferralColumns:
    """Columns every sector's referral table has. Mix into the sector's model::

    class PlacementRow(ReferralColumns, Base):
        __tablename__ = "referrals"
    """

    referral_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    provider_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    risk: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decline_reason: Mapped[str | None] = mapped_column(String(32))
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a purge erased what the sector received for the case.
    needs_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class HandshakeTables:
    outbox: Table
    idempotency: Table
    # Append-only and hash-chained (each sector's migration 0002): who did
    # what to which case.
    audit: AuditTables


def handshake_tables(metadata: MetaData) -> HandshakeTables:
    """Add the outbox, the idempotency ledger and the audit log to a sector's metadata."""
    return HandshakeTables(
        outbox=outbox_table(metadata),
        idempotency=idempotency_table(metadata),
        audit=audit_tables(metadata),
    )


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
