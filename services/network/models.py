"""The network service's tables, on its own metadata (its own database).

Staff contact details are encrypted (EncryptedText). Sign-in looks accounts
up by a keyed hash of the username or e-mail (`*_index`, see
services/network/credentials.py), never by the plain value; the throttle's
keys are keyed hashes too, so the database holds no source addresses.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from masar.platform.audit import audit_tables
from masar.platform.audit_anchor import anchor_table
from masar.platform.crypto import EncryptedText
from masar.platform.db import new_metadata
from masar.platform.idempotency import idempotency_table


class Base(DeclarativeBase):
    metadata = new_metadata()


IDEMPOTENCY = idempotency_table(Base.metadata)
# Append-only and hash-chained: account administration and every sign-in.
AUDIT = audit_tables(Base.metadata)
# Append-only: the other services' signed audit heads (services/network/anchors.py).
AUDIT_ANCHORS = anchor_table(Base.metadata)


class OrganisationRow(Base):
    __tablename__ = "organisations"

    organisation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64), index=True)
    # Comma-separated codes (domain SpokenLanguage, ServedSector).
    languages: Mapped[str] = mapped_column(String(200), default="")
    sectors: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccountRow(Base):
    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(EncryptedText("network.username"))
    username_index: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(EncryptedText("network.email"))
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    # The key ring key the two indexes were computed with.
    index_key_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(EncryptedText("network.display_name"))
    mobile: Mapped[str] = mapped_column(EncryptedText("network.mobile"))
    role: Mapped[str] = mapped_column(String(32))
    organisation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisations.organisation_id"), index=True
    )
    region: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    disable_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # argon2id, in the PHC string format.
    password_hash: Mapped[str] = mapped_column(String(256))
    password_change_required: Mapped[bool] = mapped_column(Boolean)
    totp_secret: Mapped[str | None] = mapped_column(EncryptedText("network.totp"), nullable=True)
    # The last TOTP time step accepted: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RefreshSessionRow(Base):
    """One sign-in: the refresh token's hash, rotated at each refresh."""

    __tablename__ = "refresh_sessions"

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accounts.account_id"), index=True
    )
    # SHA-256 of the current secret; a rotated-out secret presented again
    # revokes the session (a stolen refresh token shows itself).
    secret_hash: Mapped[str] = mapped_column(String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignInFailureRow(Base):
    """Recent sign-in failures of one key: `addr:<hash>` or `acct:<hash>`."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
