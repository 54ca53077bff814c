"""Shelter's tables, on the service's own metadata (its own database).

The referral handshake's tables (referrals' common columns, the outbox and the
idempotency ledger) come from masar.referral; the shelter adds its shelters
and the few needs a placement requires.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.referral import ORGANISATION_ID_LENGTH, ReferralColumns, handshake_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


# The outbox, the idempotency ledger and the audit log (migrations 0001 and 0002).
TABLES = handshake_tables(Base.metadata)


class ShelterRow(Base):
    __tablename__ = "shelters"
    # The database guards the invariant too: a bug cannot over-allocate beds.
    __table_args__ = (
        CheckConstraint(
            "reserved_beds >= 0 AND occupied_beds >= 0 "
            "AND reserved_beds + occupied_beds <= capacity",
            name="beds_within_capacity",
        ),
    )

    shelter_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64), index=True)
    capacity: Mapped[int] = mapped_column(Integer)
    accepts_children: Mapped[bool] = mapped_column(Boolean)
    # Comma-separated contract.ACCESSIBILITY_FEATURES codes (what the building offers).
    accessibility: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(EncryptedText("shelter.address"))
    reserved_beds: Mapped[int] = mapped_column(Integer, default=0)
    occupied_beds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The organisation of the network that runs the shelter (required when registered;
    # NULL for one registered before: its referrals are seen by no staff).
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )


class PlacementRow(ReferralColumns, Base):
    """A placement referral: the handshake's columns plus what the shelter
    needs to know. The needs are nullable: a purge erases them."""

    __tablename__ = "referrals"

    household_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    children: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Health-related, so encrypted; comma-separated ACCESSIBILITY_FEATURES codes.
    accessibility_needs: Mapped[str | None] = mapped_column(
        EncryptedText("shelter.accessibility_needs"), nullable=True
    )
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    checked_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
