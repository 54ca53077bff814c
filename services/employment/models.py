"""Employment's tables, on the service's own metadata (its own database).

The referral handshake's tables (referrals' common columns, the outbox and the
idempotency ledger) come from masar.referral; employment adds its programmes
and the enrolment details.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.referral import ORGANISATION_ID_LENGTH, ReferralColumns, handshake_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


# The outbox, the idempotency ledger and the audit log (migrations 0001 and 0002).
TABLES = handshake_tables(Base.metadata)


class ProgrammeRow(Base):
    __tablename__ = "programmes"
    # The database guards the invariant too: a bug cannot over-allocate seats.
    __table_args__ = (
        CheckConstraint("seats_taken >= 0 AND seats_taken <= seats", name="seats_within_capacity"),
    )

    programme_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    seats: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Comma-separated language tags the programme is taught in.
    languages: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The organisation of the network that runs the programme (required when registered;
    # NULL for one registered before: its referrals are seen by no staff).
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )


class EnrolmentRow(ReferralColumns, Base):
    """An enrolment referral: the handshake's columns plus what employment
    needs to know and records. The needs are nullable: a purge erases them."""

    __tablename__ = "referrals"

    # Her interests and languages: personal, so encrypted; comma-separated codes.
    interests: Mapped[str | None] = mapped_column(
        EncryptedText("employment.interests"), nullable=True
    )
    languages: Mapped[str | None] = mapped_column(
        EncryptedText("employment.languages"), nullable=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    training_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    training_completed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    employer_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    contract_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
