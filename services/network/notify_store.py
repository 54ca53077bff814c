"""Every notification query, inside a caller's unit of work; never commits."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from masar.contract.notify import NotifyKind
from masar.platform.clock import as_utc
from masar.platform.errors import NotFound
from masar.platform.paging import decode_page_token, encode_page_token
from services.network.audience import (
    Audience,
    Channel,
    DeliveryStatus,
    DigestLine,
    OpenItem,
    ReachState,
)
from services.network.domain import AccountStatus, OrganisationStatus
from services.network.models import (
    AccountRow,
    DeliveryAttemptRow,
    DeliveryRow,
    NotificationCopyRow,
    NotificationPreferenceRow,
    NotificationRow,
    OpenItemRow,
    OrganisationRow,
    OrganisationWebhookRow,
)


def new_notification_id() -> str:
    return f"ntf-{secrets.token_hex(8)}"


def new_copy_id() -> str:
    return f"ntc-{secrets.token_hex(8)}"


def new_delivery_id() -> str:
    return f"dlv-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Recipient:
    account_id: str
    role: str
    organisation_id: str


@dataclass(frozen=True)
class Preferences:
    email_enabled: bool = True
    digest_enabled: bool = False
    digest_hour: int = 7
    webhook_url: str = ""


# --- the directory: who is told ------------------------------------------------------------


def resolve(session: Session, audiences: Iterable[Audience]) -> list[Recipient]:
    """Active accounts of active organisations, once each, in a stable order."""
    found: dict[str, Recipient] = {}
    for audience in audiences:
        query = (
            select(AccountRow.account_id, AccountRow.role, AccountRow.organisation_id)
            .join(OrganisationRow, OrganisationRow.organisation_id == AccountRow.organisation_id)
            .where(
                AccountRow.status == AccountStatus.ACTIVE.value,
                OrganisationRow.status == OrganisationStatus.ACTIVE.value,
                AccountRow.role.in_([r.value for r in audience.roles]),
            )
        )
        if audience.organisation_id:
            query = query.where(AccountRow.organisation_id == audience.organisation_id)
        elif audience.region:
            query = query.where(AccountRow.region == audience.region)
        else:
            continue
        for account_id, role, organisation_id in session.execute(query):
            found.setdefault(account_id, Recipient(account_id, role, organisation_id))
    return sorted(found.values(), key=lambda r: r.account_id)


def preferences(session: Session, account_id: str) -> Preferences:
    row = session.get(NotificationPreferenceRow, account_id)
    if row is None:
        return Preferences()
    return Preferences(
        email_enabled=row.email_enabled,
        digest_enabled=row.digest_enabled,
        digest_hour=row.digest_hour,
        webhook_url=row.webhook_url or "",
    )


def save_preferences(
    session: Session, account_id: str, prefs: Preferences, *, now: datetime
) -> Preferences:
    row = session.get(NotificationPreferenceRow, account_id, with_for_update=True)
    if row is None:
        row = NotificationPreferenceRow(account_id=account_id, last_digest_on=None)
        session.add(row)
    row.email_enabled = prefs.email_enabled
    row.digest_enabled = prefs.digest_enabled
    row.digest_hour = prefs.digest_hour
    row.webhook_url = prefs.webhook_url or None
    row.updated_at = now
    session.flush()
    return prefs


def webhook_of(session: Session, organisation_id: str) -> OrganisationWebhookRow | None:
    return session.get(OrganisationWebhookRow, organisation_id)


def channels_for(session: Session, recipient: Recipient) -> list[Channel]:
    prefs = preferences(session, recipient.account_id)
    channels = [Channel.EMAIL] if prefs.email_enabled else []
    hook = webhook_of(session, recipient.organisation_id)
    if hook is not None and (prefs.webhook_url or hook.url):
        channels.append(Channel.WEBHOOK)
    return channels


# --- notifications and copies ----------------------------------------------------------------


def by_key(session: Session, event_key: str) -> NotificationRow | None:
    return session.execute(
        select(NotificationRow).where(NotificationRow.event_key == event_key)
    ).scalar_one_or_none()


def get(session: Session, notification_id: str) -> NotificationRow:
    row = session.get(NotificationRow, notification_id)
    if row is None:
        raise NotFound("notification not found")
    return row


def add_copies(
    session: Session,
    notification: NotificationRow,
    recipients: Sequence[Recipient],
    *,
    now: datetime,
) -> list[NotificationCopyRow]:
    copies = []
    for recipient in recipients:
        copy = NotificationCopyRow(
            copy_id=new_copy_id(),
            notification_id=notification.notification_id,
            account_id=recipient.account_id,
            role=recipient.role,
            organisation_id=recipient.organisation_id,
            created_at=now,
            acknowledged_at=None,
            acknowledged_by=None,
        )
        session.add(copy)
        copies.append(copy)
        for channel in channels_for(session, recipient):
            session.add(
                DeliveryRow(
                    delivery_id=new_delivery_id(),
                    copy_id=copy.copy_id,
                    channel=channel.value,
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    last_attempt_at=None,
                    last_error=None,
                    sent_at=None,
                    created_at=now,
                )
            )
    session.flush()
    return copies


def copy_of(session: Session, notification_id: str, account_id: str) -> NotificationCopyRow:
    row = session.execute(
        select(NotificationCopyRow).where(
            NotificationCopyRow.notification_id == notification_id,
            NotificationCopyRow.account_id == account_id,
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("notification not found")
    return row


def copies_of(session: Session, notification_id: str) -> list[NotificationCopyRow]:
    return list(
        session.execute(
            select(NotificationCopyRow)
            .where(NotificationCopyRow.notification_id == notification_id)
            .order_by(NotificationCopyRow.account_id)
        ).scalars()
    )


def inbox(
    session: Session, account_id: str, *, unacknowledged: bool, size: int, token: str
) -> tuple[list[tuple[NotificationCopyRow, NotificationRow]], str]:
    """The account's copies, newest first (keyset paging on (created_at, copy_id))."""
    copy = NotificationCopyRow
    query = (
        select(copy, NotificationRow)
        .join(NotificationRow, NotificationRow.notification_id == copy.notification_id)
        .where(copy.account_id == account_id)
    )
    if unacknowledged:
        query = query.where(copy.acknowledged_at.is_(None))
    if token:
        at, last = decode_page_token(token)
        query = query.where(
            or_(copy.created_at < at, and_(copy.created_at == at, copy.copy_id < last))
        )
    query = query.order_by(copy.created_at.desc(), copy.copy_id.desc()).limit(size + 1)
    rows = [(c, n) for c, n in session.execute(query).tuples()]
    next_token = ""
    if len(rows) > size:
        last_copy = rows[size - 1][0]
        next_token = encode_page_token(as_utc(last_copy.created_at), last_copy.copy_id)
    return rows[:size], next_token


def recent_copies(
    session: Session, account_id: str, since: datetime
) -> list[tuple[NotificationCopyRow, NotificationRow]]:
    copy = NotificationCopyRow
    query = (
        select(copy, NotificationRow)
        .join(NotificationRow, NotificationRow.notification_id == copy.notification_id)
        .where(copy.account_id == account_id, copy.created_at >= since)
        .order_by(copy.created_at, copy.copy_id)
    )
    return [(c, n) for c, n in session.execute(query).tuples()]


def deliveries_of(session: Session, copy_ids: Sequence[str]) -> list[DeliveryRow]:
    if not copy_ids:
        return []
    return list(
        session.execute(
            select(DeliveryRow)
            .where(DeliveryRow.copy_id.in_(copy_ids))
            .order_by(DeliveryRow.copy_id, DeliveryRow.channel)
        ).scalars()
    )


def attempts_of(session: Session, delivery_ids: Sequence[str]) -> list[DeliveryAttemptRow]:
    if not delivery_ids:
        return []
    return list(
        session.execute(
            select(DeliveryAttemptRow)
            .where(DeliveryAttemptRow.delivery_id.in_(delivery_ids))
            .order_by(DeliveryAttemptRow.delivery_id, DeliveryAttemptRow.attempt)
        ).scalars()
    )


def case_notifications(
    session: Session, case_id: str, keys: Sequence[str]
) -> list[NotificationRow]:
    query = select(NotificationRow).where(NotificationRow.case_id == case_id)
    if keys:
        query = query.where(NotificationRow.event_key.in_(list(keys)))
    return list(session.execute(query.order_by(NotificationRow.created_at)).scalars())


def mark_reached(session: Session, notification_id: str) -> None:
    session.execute(
        update(NotificationRow)
        .where(
            NotificationRow.notification_id == notification_id,
            NotificationRow.state == ReachState.PENDING.value,
        )
        .values(state=ReachState.REACHED.value, check_at=None)
    )


# --- open items (the digest's source) --------------------------------------------------------


def open_item(
    session: Session,
    *,
    account_id: str,
    case_id: str,
    key: str,
    kind: str,
    referral_id: str,
    sector: str,
    deadline: datetime | None,
    notification_id: str,
    now: datetime,
) -> None:
    row = session.get(OpenItemRow, (account_id, case_id, key), with_for_update=True)
    if row is None:
        row = OpenItemRow(account_id=account_id, case_id=case_id, item_key=key)
        session.add(row)
    row.kind = kind
    row.referral_id = referral_id
    row.sector = sector
    row.deadline = deadline
    row.resolved = False
    row.resolved_at = None
    row.notification_id = notification_id
    row.updated_at = now
    session.flush()


def resolve_items(session: Session, *, case_id: str, key: str, now: datetime) -> None:
    """Everyone's items for the subject (the whole case when `key` is empty)."""
    query = update(OpenItemRow).where(
        OpenItemRow.case_id == case_id, OpenItemRow.resolved.is_(False)
    )
    if key:
        query = query.where(OpenItemRow.item_key == key)
    session.execute(query.values(resolved=True, resolved_at=now, updated_at=now))


def open_items(session: Session, account_id: str) -> list[OpenItem]:
    rows = session.execute(
        select(OpenItemRow).where(
            OpenItemRow.account_id == account_id, OpenItemRow.resolved.is_(False)
        )
    ).scalars()
    return [
        OpenItem(
            case_id=r.case_id,
            item_key=r.item_key,
            kind=r.kind,
            referral_id=r.referral_id,
            sector=r.sector,
            deadline=as_utc(r.deadline) if r.deadline else None,
        )
        for r in rows
    ]


def digest_payload(lines: Sequence[DigestLine]) -> str:
    return json.dumps(
        [
            {
                "case_id": line.case_id,
                "referral_id": line.referral_id,
                "sector": line.sector,
                "kind": line.kind,
                "deadline": line.deadline.isoformat(),
                "overdue": line.overdue,
            }
            for line in lines
        ]
    )


def digest_lines_of(row: NotificationRow) -> list[DigestLine]:
    if row.kind != NotifyKind.DIGEST.value or not row.payload:
        return []
    return [
        DigestLine(
            case_id=str(d["case_id"]),
            referral_id=str(d["referral_id"]),
            sector=str(d["sector"]),
            kind=str(d["kind"]),
            deadline=as_utc(datetime.fromisoformat(str(d["deadline"]))),
            overdue=bool(d["overdue"]),
        )
        for d in json.loads(row.payload)
    ]
