"""The tables of the handshake, for a sector's models: the columns every
sector's referral table has, and the platform tables a sector's database holds
with it (outbox, idempotency ledger, audit log). Its migrations create them
with `masar.referral.migrations`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, MetaData, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from masar.platform.audit import AuditTables, audit_tables
from masar.platform.idempotency import MAX_KEY_LENGTH, idempotency_table
from masar.platform.outbox import outbox_table

# The longest organisation id (masar.platform.validation.require_organisation_id).
ORGANISATION_ID_LENGTH = 128


class ReferralColumns:
    """Columns every sector's referral table has. Mix into the sector's model::

    class PlacementRow(ReferralColumns, Base):
        __tablename__ = "referrals"
    """

    referral_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    provider_id: Mapped[str] = mapped_column(String(64), index=True)
    # The provider's organisation when the referral was made (None: a
    # provider that named none; only coordinators see the referral).
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )
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
