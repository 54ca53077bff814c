"""Notifications: journey events told to the people who must act.

`NotificationDesk.notify` (the activity `network.notify`) resolves the
recipients from the directory (services/network/audience.py), and stores the
notification, each recipient's inbox copy, its pending deliveries (e-mail,
webhook) and the recipients' open items in ONE unit of work, keyed by the
journey's idempotency key: a retry, a replay or a restart finds the stored
notification and tells nobody twice. Delivery happens afterwards, in the
background (services/network/dispatcher.py), so a failing channel never
blocks or fails the journey.

An event with nobody to tell (an organisation with no active staff) is
escalated at once to the region's coordinators (a notification of kind
UNDELIVERED) and answered `undelivered=True`; the dispatcher does the same
later for a notification that no channel delivered and nobody acknowledged
within the policy's delay.

Acknowledgements are recorded with who and when; the journey learns them
through `network.acknowledgements` (`acknowledgements` below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from masar.contract.notify import (
    Acknowledgement,
    AcknowledgementsQuery,
    AcknowledgementsResult,
    NotifyEvent,
    NotifyKind,
    NotifyResult,
)
from masar.platform import audit
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from masar.platform.errors import NotFound, PermissionDenied
from masar.platform.idempotency import run_retrying_conflicts
from services.network import notify_store as store
from services.network.audience import (
    OPENING_KINDS,
    RESOLVING_KINDS,
    SILENT_KINDS,
    DeliveryPolicy,
    ReachState,
    audience,
    check_event,
    coordinators,
    item_key,
)
from services.network.domain import AccountRole, Manager
from services.network.models import (
    AccountRow,
    DeliveryAttemptRow,
    DeliveryRow,
    NotificationCopyRow,
    NotificationRow,
    OrganisationRow,
    OrganisationWebhookRow,
)

log = logging.getLogger(__name__)

UNDELIVERED_SUFFIX = "#undelivered"
# How far back a watch looks again for copies committed out of order.
WATCH_OVERLAP = timedelta(seconds=60)


class InboxBroker:
    """Wakes the watchers of an account when a copy for her is committed
    (in this process; watchers also poll, for copies written by another)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def subscribe(self, account_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(account_id, set()).add(event)
        return event

    def unsubscribe(self, account_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(account_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[account_id]

    def publish(self, account_ids: Iterable[str]) -> None:
        for account_id in account_ids:
            for event in self._waiters.get(account_id, ()):
                event.set()


@dataclass(frozen=True)
class InboxEntry:
    """A notification as one recipient sees it."""

    notification: NotificationRow
    copy: NotificationCopyRow


@dataclass(frozen=True)
class RecipientState:
    copy: NotificationCopyRow
    deliveries: list[DeliveryRow]
    attempts: dict[str, list[DeliveryAttemptRow]]


@dataclass(frozen=True)
class NotificationDetail:
    notification: NotificationRow
    mine: NotificationCopyRow | None
    recipients: list[RecipientState]


@dataclass(frozen=True)
class WebhookConfig:
    organisation_id: str
    url: str
    # Returned once, when created or rotated; empty otherwise.
    secret: str = ""


@dataclass
class _Recorded:
    result: NotifyResult
    told: list[str] = field(default_factory=list)


class NotificationDesk:
    def __init__(
        self,
        database: Database,
        *,
        policy: DeliveryPolicy | None = None,
        broker: InboxBroker | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.policy = policy or DeliveryPolicy()
        self.broker = broker or InboxBroker()
        self.clock = clock
        # Called after a commit that created deliveries (wakes the dispatcher).
        self.on_recorded: Callable[[], None] = lambda: None

    # --- recording -------------------------------------------------------------------------

    async def notify(self, event: NotifyEvent) -> NotifyResult:
        check_event(event)
        recorded = await run_retrying_conflicts(self.database, lambda s: self._notify(s, event))
        self.published(recorded.told)
        return recorded.result

    def published(self, account_ids: list[str]) -> None:
        if account_ids:
            self.broker.publish(account_ids)
            self.on_recorded()

    def _notify(self, session: Session, event: NotifyEvent) -> _Recorded:
        existing = store.by_key(session, event.idempotency_key)
        if existing is not None:
            escalated = store.by_key(session, existing.event_key + UNDELIVERED_SUFFIX)
            return _Recorded(
                NotifyResult(
                    notification_id=existing.notification_id,
                    recipients=existing.recipients,
                    undelivered=existing.state == ReachState.UNDELIVERED.value,
                    escalated_to=escalated.recipients if escalated is not None else 0,
                    already=True,
                )
            )
        now = self.clock()
        silent = event.kind in SILENT_KINDS
        recipients = [] if silent else store.resolve(session, audience(event))
        row, copies = self.record(session, event, recipients, now=now)
        told = [c.account_id for c in copies]
        result = NotifyResult(notification_id=row.notification_id, recipients=len(recipients))
        if not silent and not recipients:
            # Nobody to tell: never counted as sent.
            row.state = ReachState.UNDELIVERED.value
            row.check_at = None
            escalation = self.escalate(session, row, now=now)
            result.undelivered = True
            result.escalated_to = len(escalation)
            told += escalation
            log.warning(
                "notification reached nobody: escalated to the region's coordinators",
                extra={"notification_id": row.notification_id, "kind": row.kind},
            )
        return _Recorded(result, told)

    def record(
        self,
        session: Session,
        event: NotifyEvent,
        recipients: list[store.Recipient],
        *,
        now: datetime,
        origin_id: str | None = None,
        payload: str | None = None,
    ) -> tuple[NotificationRow, list[NotificationCopyRow]]:
        """The notification, its copies and deliveries, and the open items."""
        silent = event.kind in SILENT_KINDS
        row = NotificationRow(
            notification_id=store.new_notification_id(),
            event_key=event.idempotency_key,
            kind=event.kind.value,
            case_id=event.case_id,
            region=event.region,
            referral_id=event.referral_id,
            sector=event.sector,
            provider_organisation_id=event.provider_organisation_id,
            holding_organisation_id=event.holding_organisation_id,
            transfer_id=event.transfer_id,
            receiving_organisation_id=event.receiving_organisation_id,
            rung=event.rung,
            deadline=as_utc(event.deadline) if event.deadline else None,
            occurred_at=as_utc(event.occurred_at) if event.occurred_at else now,
            created_at=now,
            recipients=len(recipients),
            state=(ReachState.SILENT if silent else ReachState.PENDING).value,
            # Network-made notifications (escalations, digests) are not checked again.
            check_at=(
                now + self.policy.undelivered_after
                if recipients and origin_id is None and event.kind is not NotifyKind.DIGEST
                else None
            ),
            origin_id=origin_id,
            payload=payload,
        )
        session.add(row)
        session.flush()
        copies = store.add_copies(session, row, recipients, now=now)
        key = item_key(event)
        if event.kind in RESOLVING_KINDS and event.case_id:
            store.resolve_items(session, case_id=event.case_id, key=key, now=now)
        if event.kind in OPENING_KINDS and event.case_id and key:
            for recipient in recipients:
                store.open_item(
                    session,
                    account_id=recipient.account_id,
                    case_id=event.case_id,
                    key=key,
                    kind=event.kind.value,
                    referral_id=event.referral_id,
                    sector=event.sector,
                    deadline=row.deadline,
                    notification_id=row.notification_id,
                    now=now,
                )
        return row, copies

    def escalate(self, session: Session, origin: NotificationRow, *, now: datetime) -> list[str]:
        """Tell the region's coordinators that `origin` reached nobody (once)."""
        key = origin.event_key + UNDELIVERED_SUFFIX
        if store.by_key(session, key) is not None:
            return []
        event = NotifyEvent(
            kind=NotifyKind.UNDELIVERED,
            idempotency_key=key,
            case_id=origin.case_id,
            region=origin.region,
            referral_id=origin.referral_id,
            sector=origin.sector,
            provider_organisation_id=origin.provider_organisation_id,
            holding_organisation_id=origin.holding_organisation_id,
            rung=origin.rung,
            deadline=as_utc(origin.deadline) if origin.deadline else None,
            transfer_id=origin.transfer_id,
            receiving_organisation_id=origin.receiving_organisation_id,
            occurred_at=now,
        )
        recipients = store.resolve(session, [coordinators(origin.region)])
        _, copies = self.record(
            session, event, recipients, now=now, origin_id=origin.notification_id
        )
        return [c.account_id for c in copies]

    # --- the inbox ---------------------------------------------------------------------------

    async def inbox(
        self, account_id: str, *, unacknowledged: bool, size: int, token: str
    ) -> tuple[list[InboxEntry], str]:
        rows, next_token = await self.database.run(
            lambda s: store.inbox(
                s, account_id, unacknowledged=unacknowledged, size=size, token=token
            )
        )
        return [InboxEntry(n, c) for c, n in rows], next_token

    async def detail(self, caller: Manager, notification_id: str) -> NotificationDetail:
        def work(session: Session) -> NotificationDetail:
            row = store.get(session, notification_id)
            copies = store.copies_of(session, notification_id)
            mine = next((c for c in copies if c.account_id == caller.subject), None)
            regional = caller.role == AccountRole.COORDINATOR and caller.region == row.region
            if mine is None and not regional and caller.role != AccountRole.OPERATOR:
                raise NotFound("notification not found")
            deliveries = store.deliveries_of(session, [c.copy_id for c in copies])
            attempts: dict[str, list[DeliveryAttemptRow]] = {}
            for attempt in store.attempts_of(session, [d.delivery_id for d in deliveries]):
                attempts.setdefault(attempt.delivery_id, []).append(attempt)
            return NotificationDetail(
                notification=row,
                mine=mine,
                recipients=[
                    RecipientState(
                        copy=c,
                        deliveries=[d for d in deliveries if d.copy_id == c.copy_id],
                        attempts=attempts,
                    )
                    for c in copies
                ],
            )

        return await self.database.run(work)

    async def acknowledge(self, caller: Manager, notification_id: str) -> tuple[InboxEntry, bool]:
        """Record who acknowledged and when; True when it already was."""

        def work(session: Session) -> tuple[InboxEntry, bool]:
            copy = store.copy_of(session, notification_id, caller.subject)
            row = store.get(session, notification_id)
            if copy.acknowledged_at is not None:
                return InboxEntry(row, copy), True
            now = self.clock()
            copy.acknowledged_at = now
            copy.acknowledged_by = caller.subject
            store.mark_reached(session, notification_id)
            audit.append(
                session,
                actor=caller,
                action="network.notification_acknowledged",
                case_id=row.case_id or None,
                target=notification_id,
                now=now,
            )
            session.flush()
            session.refresh(row)
            return InboxEntry(row, copy), False

        return await self.database.run(work)

    async def watch(self, account_id: str, *, backlog: bool) -> AsyncIterator[InboxEntry]:
        """The account's new copies as they are committed (and first, with
        `backlog`, those not acknowledged yet, oldest first)."""
        wake = self.broker.subscribe(account_id)
        try:
            start = self.clock()
            primed = await self.database.run(
                lambda s: store.recent_copies(s, account_id, start - WATCH_OVERLAP)
            )
            seen = {c.copy_id: as_utc(c.created_at) for c, _ in primed}
            if backlog:
                pending, _ = await self.inbox(account_id, unacknowledged=True, size=200, token="")
                for entry in reversed(pending):
                    seen[entry.copy.copy_id] = as_utc(entry.copy.created_at)
                    yield entry
            watermark = start
            while True:
                since = watermark - WATCH_OVERLAP
                rows = await self.database.run(
                    lambda s, since=since: store.recent_copies(s, account_id, since)  # type: ignore[misc]
                )
                for copy, row in rows:
                    created = as_utc(copy.created_at)
                    watermark = max(watermark, created)
                    if copy.copy_id not in seen:
                        seen[copy.copy_id] = created
                        yield InboxEntry(row, copy)
                horizon = watermark - 2 * WATCH_OVERLAP
                seen = {k: v for k, v in seen.items() if v >= horizon}
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self.policy.poll.total_seconds())
                wake.clear()
        finally:
            self.broker.unsubscribe(account_id, wake)

    # --- the journey's view ------------------------------------------------------------------

    async def acknowledgements(self, query: AcknowledgementsQuery) -> AcknowledgementsResult:
        def work(session: Session) -> AcknowledgementsResult:
            result = AcknowledgementsResult()
            for row in store.case_notifications(session, query.case_id, query.idempotency_keys):
                if row.state == ReachState.UNDELIVERED.value:
                    result.undelivered.append(row.event_key)
                for copy in store.copies_of(session, row.notification_id):
                    if copy.acknowledged_at is None:
                        continue
                    result.acknowledgements.append(
                        Acknowledgement(
                            idempotency_key=row.event_key,
                            notification_id=row.notification_id,
                            account_id=copy.acknowledged_by or copy.account_id,
                            role=copy.role,
                            organisation_id=copy.organisation_id,
                            acknowledged_at=as_utc(copy.acknowledged_at),
                        )
                    )
            return result

        return await self.database.run(work)

    # --- preferences and webhooks --------------------------------------------------------------

    async def preferences(self, account_id: str) -> store.Preferences:
        return await self.database.run(lambda s: store.preferences(s, account_id))

    async def set_preferences(self, caller: Manager, prefs: store.Preferences) -> store.Preferences:
        def work(session: Session) -> store.Preferences:
            if session.get(AccountRow, caller.subject) is None:
                raise PermissionDenied("only a staff account has notification preferences")
            now = self.clock()
            saved = store.save_preferences(session, caller.subject, prefs, now=now)
            audit.append(
                session,
                actor=caller,
                action="network.notification_preferences_set",
                target=caller.subject,
                now=now,
            )
            return saved

        return await self.database.run(work)

    async def set_webhook(
        self, caller: Manager, organisation_id: str, url: str, *, rotate: bool
    ) -> WebhookConfig:
        def work(session: Session) -> WebhookConfig:
            organisation = session.get(OrganisationRow, organisation_id)
            if organisation is None:
                raise NotFound("organisation not found")
            check_may_configure_webhook(caller, organisation)
            now = self.clock()
            row = session.get(OrganisationWebhookRow, organisation_id, with_for_update=True)
            secret = ""
            if row is None:
                secret = new_webhook_secret()
                row = OrganisationWebhookRow(
                    organisation_id=organisation_id, secret=secret, created_at=now
                )
                session.add(row)
            elif rotate:
                secret = new_webhook_secret()
                row.secret = secret
            row.url = url
            row.updated_at = now
            audit.append(
                session,
                actor=caller,
                action="network.webhook_rotated" if secret else "network.webhook_set",
                target=organisation_id,
                now=now,
            )
            return WebhookConfig(organisation_id, url, secret)

        return await self.database.run(work)


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def check_may_configure_webhook(caller: Manager, organisation: OrganisationRow) -> None:
    """A network administrator, a coordinator of the organisation's region,
    or a supervisor of the organisation."""
    if caller.role == AccountRole.NETWORK_ADMIN:
        return
    if caller.role == AccountRole.COORDINATOR and caller.region == organisation.region:
        return
    if caller.role == AccountRole.SUPERVISOR and caller.org == organisation.organisation_id:
        return
    raise PermissionDenied("an organisation's webhook is set by its supervisors or coordinators")
