"""Intake's tables, on the service's own metadata (its own database).

Personal data (alias, birth year, nationality, interpreter need, contact
details, narrative,
the risk checklist's answers, free-text reasons and notes) is stored as
`EncryptedText("intake.<column>")`. Everything a list shows — ids, region,
levels, states, dates — is plain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from masar.platform.audit import audit_tables
from masar.platform.clock import as_utc
from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.platform.idempotency import idempotency_table
from masar.platform.outbox import outbox_table
from services.intake.grants import emergency_grants_table


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite (which
    stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = new_metadata()


# Changes for the journey (the platform outbox), the idempotency ledger (which
# key made which case, change or escalation; migration 0003) and the
# append-only audit log (who read a case's personal data, who changed a
# consent), in intake's own database.
OUTBOX = outbox_table(Base.metadata)
IDEMPOTENCY = idempotency_table(Base.metadata)
AUDIT = audit_tables(Base.metadata)
# Coordinators' emergency access to cases outside their region (migration 0002).
EMERGENCY_GRANTS = emergency_grants_table(Base.metadata)


class CaseRow(Base):
    __tablename__ = "cases"

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    risk: Mapped[str] = mapped_column(String(16), index=True)
    risk_assessment_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # Who registered the case, and who holds it now (migration 0004). NULL:
    # not recorded (cases from before; a NULL holder is seen by coordinators only).
    source_organisation_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    holding_organisation_id: Mapped[str | None] = mapped_column(
        String(128), nullable=True, index=True
    )

    # Survivor profile.
    alias: Mapped[str | None] = mapped_column(EncryptedText("intake.alias"), nullable=True)
    birth_year: Mapped[str | None] = mapped_column(
        EncryptedText("intake.birth_year"), nullable=True
    )
    nationality: Mapped[str | None] = mapped_column(
        EncryptedText("intake.nationality"), nullable=True
    )
    migrant_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    languages: Mapped[list[str]] = mapped_column(JSON)
    accompanying_children: Mapped[int] = mapped_column(Integer)
    # "true" / "false"; NULL = not asked (migration 0006).
    interpreter_needed: Mapped[str | None] = mapped_column(
        EncryptedText("intake.interpreter_needed"), nullable=True
    )
    phone: Mapped[str | None] = mapped_column(EncryptedText("intake.phone"), nullable=True)
    email: Mapped[str | None] = mapped_column(EncryptedText("intake.email"), nullable=True)
    address: Mapped[str | None] = mapped_column(EncryptedText("intake.address"), nullable=True)
    safe_contact_instructions: Mapped[str | None] = mapped_column(
        EncryptedText("intake.safe_contact_instructions"), nullable=True
    )

    # Incident (GBVIMS: one type).
    incident_at: Mapped[datetime] = mapped_column(UtcDateTime())
    violence_type: Mapped[str] = mapped_column(String(32))
    incident_contexts: Mapped[list[str]] = mapped_column(JSON)
    narrative: Mapped[str | None] = mapped_column(EncryptedText("intake.narrative"), nullable=True)

    # Needs.
    needs: Mapped[list[str]] = mapped_column(JSON)
    declined: Mapped[list[str]] = mapped_column(JSON)
    accessibility_needs: Mapped[list[str]] = mapped_column(JSON)
    legal_matters: Mapped[list[str]] = mapped_column(JSON)
    employment_interests: Mapped[list[str]] = mapped_column(JSON)


class ConsentRow(Base):
    __tablename__ = "consents"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RiskAssessmentRow(Base):
    __tablename__ = "risk_assessments"

    assessment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    assessed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # JSON {indicator: answer}: includes health data (pregnancy), so encrypted.
    answers: Mapped[str] = mapped_column(EncryptedText("intake.risk_answers"))
    score: Mapped[int] = mapped_column(Integer)
    computed: Mapped[str] = mapped_column(String(16))
    override_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    override_reason: Mapped[str | None] = mapped_column(
        EncryptedText("intake.risk_override_reason"), nullable=True
    )
    level: Mapped[str] = mapped_column(String(16))


class CaseChangeRow(Base):
    """One change made through the API after registration; with the outbox
    entry (same id) that carries it to the journey."""

    __tablename__ = "case_changes"

    change_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # False for changes that stay with intake (reporting consent).
    notifies_journey: Mapped[bool] = mapped_column(Boolean)
    # APPLIED, or REJECTED (the journey refused it and it was undone).
    status: Mapped[str] = mapped_column(String(16))
    # Structured, non-personal details (scope, item, reason code, times).
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    # How to undo it: {"before": {...}, "after": {...}} of case columns and consents.
    undo: Mapped[dict[str, Any]] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(EncryptedText("intake.change_notes"), nullable=True)
    rejection: Mapped[str | None] = mapped_column(String(128), nullable=True)


class JourneyStartRow(Base):
    """The "journey start pending" marker, written with the case in one unit of
    work; the journey starter clears it once Temporal has the workflow."""

    __tablename__ = "journey_starts"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    # The JourneyInput as JSON (no personal data).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An error type name, never a message.
    last_error: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Runs started for the case (a reopened case whose journey had ended adds one).
    runs: Mapped[int] = mapped_column(Integer, default=0)


class EscalationRow(Base):
    __tablename__ = "escalations"

    escalation_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[int] = mapped_column(Integer)
    wait: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    referral_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # A transfer's rungs (migration 0004): the transfer, and the organisation a
    # reminder is addressed to (its receiver).
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    organisation_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)


class TransferRow(Base):
    """A request that another organisation take over a case (migration 0004).
    Ids, codes and times only."""

    __tablename__ = "transfers"

    transfer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    from_organisation_id: Mapped[str] = mapped_column(String(128), index=True)
    to_organisation_id: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    # The survivor's consent to the transfer to `to_organisation_id`.
    consent_recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    consent_recorded_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decline_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    redirect_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
