"""Legal aid's tables, on the service's own metadata (its own database).

The referral handshake's tables (the referrals' common columns, the outbox and
the idempotency ledger) come from masar.referral; legal aid adds its
providers, the matters and languages a referral carries, protection orders and
hearings.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.referral import ORGANISATION_ID_LENGTH, ReferralColumns, handshake_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


# The outbox, the idempotency ledger and the audit log (migrations 0001 and 0002).
TABLES = handshake_tables(Base.metadata)


class ProviderRow(Base):
    __tablename__ = "providers"

    provider_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The organisation of the network that the provider belongs to (required when registered;
    # NULL for one registered before: its referrals are seen by no staff).
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )


class ProviderLanguageRow(Base):
    __tablename__ = "provider_languages"

    provider_id: Mapped[str] = mapped_column(
        ForeignKey("providers.provider_id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class ProviderMatterRow(Base):
    __tablename__ = "provider_matters"

    provider_id: Mapped[str] = mapped_column(
        ForeignKey("providers.provider_id", ondelete="CASCADE"), primary_key=True
    )
    matter: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class LegalReferralRow(ReferralColumns, Base):
    """A legal aid referral: the handshake's columns plus what legal aid was
    told (matters, languages) and its first meeting. The JSON columns are
    columns of this row so that a staff action the journey refuses is undone
    with the row; a purge erases them."""

    __tablename__ = "referrals"

    # JSON list of {"matter", "status", "opened_at", "closed_at", "outcome"}.
    # Matters such as trafficking or residency are sensitive: encrypted.
    matters: Mapped[str | None] = mapped_column(EncryptedText("legal.matters"), nullable=True)
    # JSON list of language tags.
    languages: Mapped[str | None] = mapped_column(EncryptedText("legal.languages"), nullable=True)
    first_meeting_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    # A medical certificate a hospital care unit issued (revision 0004): its
    # date and ITT days only, never clinical content.
    certificate_issued_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    certificate_itt_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ProtectionOrderRow(Base):
    __tablename__ = "protection_orders"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    referral_id: Mapped[str] = mapped_column(
        ForeignKey("referrals.referral_id", ondelete="CASCADE"), index=True
    )
    measure: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    effective_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    breaches: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HearingRow(Base):
    __tablename__ = "hearings"

    hearing_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    referral_id: Mapped[str] = mapped_column(
        ForeignKey("referrals.referral_id", ondelete="CASCADE"), index=True
    )
    # Which of the referral's matters; encrypted like the referral's own list.
    matter: Mapped[str] = mapped_column(EncryptedText("legal.hearing_matter"))
    court: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The provider's own free-text note: encrypted at rest, erased by a purge.
    note: Mapped[str | None] = mapped_column(EncryptedText("legal.hearing_note"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
