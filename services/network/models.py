"""The network service's tables, on its own metadata (its own database).

Staff contact details are encrypted (EncryptedText). Sign-in looks accounts
up by a keyed hash of the username or e-mail (`*_index`, see
services/network/credentials.py), never by the plain value; the throttle's
keys are keyed hashes too, so the database holds no source addresses.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
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


# --- notifications (services/network/notifications.py) ------------------------------------
#
# Ids, codes and times only: no survivor data ever reaches the network.


class NotificationRow(Base):
    """One journey event (or the network's own: an undelivered escalation, a
    digest), stored once per idempotency key."""

    __tablename__ = "notifications"

    notification_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    region: Mapped[str] = mapped_column(String(64))
    referral_id: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(32))
    provider_organisation_id: Mapped[str] = mapped_column(String(32))
    holding_organisation_id: Mapped[str] = mapped_column(String(32))
    transfer_id: Mapped[str] = mapped_column(String(64))
    receiving_organisation_id: Mapped[str] = mapped_column(String(32))
    rung: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # How many people the event was addressed to.
    recipients: Mapped[int] = mapped_column(Integer)
    # audience.ReachState; checked at `check_at` while pending.
    state: Mapped[str] = mapped_column(String(16), index=True)
    check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # An undelivered escalation: the notification that reached nobody.
    origin_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A digest's lines (JSON: ids, codes, deadlines).
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)


class NotificationCopyRow(Base):
    """A recipient's copy (her inbox entry): one per (event, recipient)."""

    __tablename__ = "notification_copies"
    __table_args__ = (UniqueConstraint("notification_id", "account_id"),)

    copy_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    notification_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("notifications.notification_id")
    )
    account_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accounts.account_id"), index=True
    )
    # The recipient's role and organisation when she was told.
    role: Mapped[str] = mapped_column(String(32))
    organisation_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Who acknowledged (the verified caller's subject: the recipient).
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeliveryRow(Base):
    """A copy sent on an external channel; its id is the e-mail's Message-ID
    and the webhook's delivery id, the same at every attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("copy_id", "channel"),)

    delivery_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    copy_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("notification_copies.copy_id"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A code (smtp_connect, http_503, ...), never a message with data in it.
    last_error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryAttemptRow(Base):
    __tablename__ = "delivery_attempts"

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deliveries.delivery_id"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(64), nullable=True)


class NotificationPreferenceRow(Base):
    """An account's choices; an account without a row has the defaults
    (e-mail on, no digest, no webhook of her own)."""

    __tablename__ = "notification_preferences"

    account_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accounts.account_id"), primary_key=True
    )
    email_enabled: Mapped[bool] = mapped_column(Boolean)
    digest_enabled: Mapped[bool] = mapped_column(Boolean)
    digest_hour: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(
        EncryptedText("network.account_webhook"), nullable=True
    )
    # The local (Africa/Casablanca) date of the last digest, YYYY-MM-DD.
    last_digest_on: Mapped[str | None] = mapped_column(String(10), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OrganisationWebhookRow(Base):
    """An organisation's gateway (SMS, messaging): where its staff's
    notifications are posted, and the secret that signs every post (also
    those to its accounts' own webhooks)."""

    __tablename__ = "organisation_webhooks"

    organisation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisations.organisation_id"), primary_key=True
    )
    url: Mapped[str] = mapped_column(EncryptedText("network.webhook_url"))
    secret: Mapped[str] = mapped_column(EncryptedText("network.webhook_secret"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OpenItemRow(Base):
    """What an account has to act on, fed by the notifications (the daily
    digest's source): opened or moved by an event, resolved by another."""

    __tablename__ = "open_items"

    account_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accounts.account_id"), primary_key=True
    )
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    referral_id: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved: Mapped[bool] = mapped_column(Boolean, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    notification_id: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
