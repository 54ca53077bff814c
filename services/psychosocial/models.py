"""Psychosocial's tables, on the service's own metadata (its own database).

The referral handshake's tables (referrals' common columns, the outbox, the
idempotency ledger and the audit log) come from masar.referral; psychosocial
adds its providers and, on each referral, the sessions (date and attendance)
and the support plan (goal codes and their progress) — no notes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.referral import ORGANISATION_ID_LENGTH, ReferralColumns, handshake_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


# The outbox, the idempotency ledger and the audit log (migration 0001).
TABLES = handshake_tables(Base.metadata)


class SupportProviderRow(Base):
    __tablename__ = "support_providers"

    provider_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64), index=True)
    # Comma-separated support kinds (contract SUPPORT_KINDS) and language tags.
    kinds: Mapped[str] = mapped_column(String(200))
    languages: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The organisation of the network (an association) running it.
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )


class SupportReferralRow(ReferralColumns, Base):
    """A psychosocial referral: the handshake's columns plus what the provider
    needs to know and records. Nullable: a purge erases them."""

    __tablename__ = "referrals"

    # The support she asked for and her languages: personal, so encrypted.
    support: Mapped[str | None] = mapped_column(
        EncryptedText("psychosocial.support"), nullable=True
    )
    languages: Mapped[str | None] = mapped_column(
        EncryptedText("psychosocial.languages"), nullable=True
    )
    # JSON: [{"held_at": ISO 8601, "attendance": code}], oldest first.
    sessions: Mapped[str | None] = mapped_column(Text, nullable=True)
    # JSON: [{"goal": code, "progress": code, "reviewed_at": ISO 8601 | null}].
    plan: Mapped[str | None] = mapped_column(Text, nullable=True)
    plan_reviewed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    support_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
