"""Health's tables, on the service's own metadata (its own database).

The referral handshake's tables (referrals' common columns, the outbox, the
idempotency ledger and the audit log) come from masar.referral; health adds
its care units and the care recorded on each referral: codes and times only.
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


class CareUnitRow(Base):
    __tablename__ = "care_units"

    care_unit_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64), index=True)
    # Comma-separated care codes (contract CARE_SERVICES) and language tags.
    services: Mapped[str] = mapped_column(String(200))
    languages: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The organisation of the network (a hospital) the unit belongs to.
    organisation_id: Mapped[str | None] = mapped_column(
        String(ORGANISATION_ID_LENGTH), index=True, nullable=True
    )


class CareReferralRow(ReferralColumns, Base):
    """A medical referral: the handshake's columns plus what health needs to
    know and records. The needs are nullable: a purge erases them."""

    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint(
            "certificate_itt_days IS NULL OR "
            "(certificate_itt_days >= 0 AND certificate_itt_days <= 365)",
            name="itt_days_in_range",
        ),
    )

    # The care she needs and her languages: personal, so encrypted; comma-separated codes.
    care: Mapped[str | None] = mapped_column(EncryptedText("health.care"), nullable=True)
    languages: Mapped[str | None] = mapped_column(EncryptedText("health.languages"), nullable=True)
    incident_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Each clinical step: its outcome code (domain StepOutcome) and when.
    pep_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pep_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    emergency_contraception_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    emergency_contraception_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    forensic_exam_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    forensic_exam_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    certificate_issued_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    certificate_itt_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The follow-up visits done (contract FollowUpVisit), each once.
    two_weeks_visit_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    three_months_visit_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    six_months_visit_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    care_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
