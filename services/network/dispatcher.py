"""The background dispatcher of the network service: delivers the pending
deliveries (e-mail, webhooks) with retries and backoff, escalates the
notifications that reached nobody in time, and sends the daily digests.

A delivery is claimed (status SENDING, attempts + 1, a lease) and committed
before it is sent, then its outcome is committed: SENT, PENDING again with
the next attempt's time, or FAILED (a permanent refusal, or too many
attempts). Every attempt is kept (`delivery_attempts`): the delivery state
shows the retries. A process that dies between the channel's acceptance and
that commit leaves the delivery SENDING: once its lease ends it is sent
again, with the same Message-ID / delivery id, so the receiver can tell —
at least once, never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from masar.contract.notify import NotifyEvent, NotifyKind
from masar.platform.clock import as_utc, utcnow
from masar.platform.db import Database
from services.network import notify_store as store
from services.network.audience import (
    Channel,
    DeliveryPolicy,
    DeliveryStatus,
    ReachState,
    digest_due,
    digest_lines,
    local_day,
)
from services.network.domain import AccountStatus
from services.network.mail import Mailer, MailOutcome, build_message
from services.network.models import (
    AccountRow,
    DeliveryAttemptRow,
    DeliveryRow,
    NotificationCopyRow,
    NotificationPreferenceRow,
    NotificationRow,
)
from services.network.notifications import NotificationDesk
from services.network.texts import NoticeView, render
from services.network.webhooks import encode_body, post

log = logging.getLogger(__name__)

# Called after a channel accepted a delivery, before the outcome is committed
# (tests: a crash at exactly that point).
AfterSend = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class Job:
    delivery_id: str
    channel: Channel
    attempt: int
    notification_id: str
    created_at: datetime
    account_id: str
    language: str
    email: str
    mobile: str
    webhook_url: str
    webhook_secret: str
    view: NoticeView


@dataclass(frozen=True)
class Outcome:
    sent: bool
    error: str | None = None
    permanent: bool = False


def notice_view(row: NotificationRow) -> NoticeView:
    return NoticeView(
        notification_id=row.notification_id,
        kind=NotifyKind(row.kind),
        case_id=row.case_id,
        region=row.region,
        referral_id=row.referral_id,
        sector=row.sector,
        provider_organisation_id=row.provider_organisation_id,
        holding_organisation_id=row.holding_organisation_id,
        transfer_id=row.transfer_id,
        receiving_organisation_id=row.receiving_organisation_id,
        rung=row.rung,
        deadline=as_utc(row.deadline) if row.deadline else None,
        origin_id=row.origin_id or "",
        digest_date=local_day(as_utc(row.created_at)).isoformat(),
        digest=store.digest_lines_of(row),
    )


def webhook_document(job: Job, console_url: str) -> dict[str, object]:
    """The JSON a gateway receives: ids, codes, times, the console link and a
    short text in the recipient's language; the recipient's own account id,
    language and mobile number (for an SMS gateway to route it)."""
    view = job.view
    rendered = render(view, job.language, console_url)
    return {
        "delivery_id": job.delivery_id,
        "notification": {
            "notification_id": view.notification_id,
            "kind": view.kind.value,
            "case_id": view.case_id,
            "referral_id": view.referral_id,
            "sector": view.sector,
            "provider_organisation_id": view.provider_organisation_id,
            "holding_organisation_id": view.holding_organisation_id,
            "transfer_id": view.transfer_id,
            "receiving_organisation_id": view.receiving_organisation_id,
            "region": view.region,
            "rung": view.rung,
            "deadline": view.deadline.isoformat() if view.deadline else None,
            "link": rendered.link,
        },
        "recipient": {
            "account_id": job.account_id,
            "language": job.language,
            "mobile": job.mobile,
        },
        "text": rendered.short,
    }


class Dispatcher:
    def __init__(
        self,
        database: Database,
        desk: NotificationDesk,
        *,
        mailer: Mailer,
        sender: str,
        console_url: str,
        policy: DeliveryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        after_send: AfterSend | None = None,
    ) -> None:
        self.database = database
        self.desk = desk
        self.mailer = mailer
        self.sender = sender
        self.console_url = console_url
        self.policy = policy or desk.policy
        self.clock = clock
        self.after_send = after_send
        self._wake = asyncio.Event()
        desk.on_recorded = self.wake

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # the loop never dies; the next tick retries
                log.warning("notification dispatch failed", extra={"error": type(exc).__name__})
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waiter, stopper},
                timeout=self.policy.poll.total_seconds(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in (waiter, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._wake.clear()

    async def tick(self) -> None:
        """One round: due deliveries, overdue reach checks, due digests."""
        while True:
            jobs = await self.database.run(self._claim)
            if not jobs:
                break
            await asyncio.gather(*(self._deliver(job) for job in jobs))
        await self.check_reach()
        await self.send_digests()

    # --- deliveries ----------------------------------------------------------------------------

    def _claim(self, session: Session) -> list[Job]:
        now = self.clock()
        rows = list(
            session.execute(
                select(DeliveryRow)
                .where(
                    or_(
                        (DeliveryRow.status == DeliveryStatus.PENDING.value)
                        & (DeliveryRow.next_attempt_at <= now),
                        (DeliveryRow.status == DeliveryStatus.SENDING.value)
                        & (DeliveryRow.lease_until <= now),
                    )
                )
                .order_by(DeliveryRow.next_attempt_at)
                .limit(self.policy.batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        jobs = []
        for row in rows:
            row.status = DeliveryStatus.SENDING.value
            row.attempts += 1
            row.lease_until = now + self.policy.lease
            row.last_attempt_at = now
            job = self._job(session, row)
            if job is None:
                self._finish_row(session, row, Outcome(False, "no_recipient", True), now)
            else:
                jobs.append(job)
        return jobs

    def _job(self, session: Session, row: DeliveryRow) -> Job | None:
        copy = session.get(NotificationCopyRow, row.copy_id)
        account = session.get(AccountRow, copy.account_id) if copy is not None else None
        if copy is None or account is None or account.status != AccountStatus.ACTIVE.value:
            return None
        notification = store.get(session, copy.notification_id)
        url = secret = ""
        if row.channel == Channel.WEBHOOK.value:
            hook = store.webhook_of(session, copy.organisation_id)
            if hook is None:
                return None
            url = store.preferences(session, account.account_id).webhook_url or hook.url
            secret = hook.secret
            if not url:
                return None
        return Job(
            delivery_id=row.delivery_id,
            channel=Channel(row.channel),
            attempt=row.attempts,
            notification_id=notification.notification_id,
            created_at=as_utc(row.created_at),
            account_id=account.account_id,
            language=account.language,
            email=account.email,
            mobile=account.mobile,
            webhook_url=url,
            webhook_secret=secret,
            view=notice_view(notification),
        )

    async def _deliver(self, job: Job) -> None:
        try:
            outcome = await asyncio.to_thread(self._send, job)
        except Exception as exc:  # a bug in a channel is a failed attempt, not a dead loop
            outcome = Outcome(False, f"error_{type(exc).__name__}"[:64])
        if outcome.sent and self.after_send is not None:
            self.after_send(job.channel.value, job.delivery_id)
        await self.database.run(lambda s: self._finish(s, job, outcome))
        if not outcome.sent:
            log.info(
                "delivery attempt failed",
                extra={
                    "delivery_id": job.delivery_id,
                    "channel": job.channel.value,
                    "attempt": job.attempt,
                    "error": outcome.error,
                },
            )

    def _send(self, job: Job) -> Outcome:
        if job.channel is Channel.EMAIL:
            rendered = render(job.view, job.language, self.console_url)
            message = build_message(
                rendered,
                sender=self.sender,
                to=job.email,
                delivery_id=job.delivery_id,
                notification_id=job.notification_id,
                created_at=job.created_at,
            )
            mailed: MailOutcome = self.mailer.send(message, delivery_id=job.delivery_id)
            return Outcome(mailed.sent, mailed.error, mailed.permanent)
        body = encode_body(webhook_document(job, self.console_url))
        posted = post(job.webhook_url, body, secret=job.webhook_secret, delivery_id=job.delivery_id)
        return Outcome(posted.sent, posted.error, posted.permanent)

    def _finish(self, session: Session, job: Job, outcome: Outcome) -> None:
        row = session.get(DeliveryRow, job.delivery_id, with_for_update=True)
        if row is None:
            return
        now = self.clock()
        if row.status != DeliveryStatus.SENDING.value or row.attempts != job.attempt:
            # Its lease ended and another dispatcher took it over: only log the attempt.
            session.add(
                DeliveryAttemptRow(
                    delivery_id=row.delivery_id,
                    attempt=job.attempt,
                    at=now,
                    sent=outcome.sent,
                    error=outcome.error,
                )
            )
            return
        self._finish_row(session, row, outcome, now)

    def _finish_row(
        self, session: Session, row: DeliveryRow, outcome: Outcome, now: datetime
    ) -> None:
        row.lease_until = None
        row.last_error = outcome.error
        if outcome.sent:
            row.status = DeliveryStatus.SENT.value
            row.sent_at = now
            copy = session.get(NotificationCopyRow, row.copy_id)
            if copy is not None:
                store.mark_reached(session, copy.notification_id)
        elif outcome.permanent or row.attempts >= self.policy.max_attempts:
            row.status = DeliveryStatus.FAILED.value
        else:
            row.status = DeliveryStatus.PENDING.value
            row.next_attempt_at = now + self.policy.backoff(row.attempts)
        session.add(
            DeliveryAttemptRow(
                delivery_id=row.delivery_id,
                attempt=row.attempts,
                at=now,
                sent=outcome.sent,
                error=outcome.error,
            )
        )

    # --- nothing reached anyone in time ------------------------------------------------------

    async def check_reach(self) -> None:
        told = await self.database.run(self._check_reach)
        self.desk.published(told)

    def _check_reach(self, session: Session) -> list[str]:
        now = self.clock()
        rows = session.execute(
            select(NotificationRow)
            .where(
                NotificationRow.state == ReachState.PENDING.value,
                NotificationRow.check_at <= now,
            )
            .limit(self.policy.batch)
            .with_for_update(skip_locked=True)
        ).scalars()
        told: list[str] = []
        for row in rows:
            row.state = ReachState.UNDELIVERED.value
            row.check_at = None
            told += self.desk.escalate(session, row, now=now)
            log.warning(
                "notification undelivered in time: escalated to the region's coordinators",
                extra={"notification_id": row.notification_id, "kind": row.kind},
            )
        return told

    # --- daily digests ---------------------------------------------------------------------------

    async def send_digests(self) -> None:
        now = self.clock()
        due = await self.database.run(lambda s: self._due_digests(s, now))
        for account_id in due:
            told = await self.database.run(lambda s, a=account_id: self._digest(s, a))  # type: ignore[misc]
            self.desk.published(told)

    def _due_digests(self, session: Session, now: datetime) -> list[str]:
        rows = session.execute(
            select(NotificationPreferenceRow)
            .join(AccountRow, AccountRow.account_id == NotificationPreferenceRow.account_id)
            .where(
                NotificationPreferenceRow.digest_enabled.is_(True),
                AccountRow.status == AccountStatus.ACTIVE.value,
            )
        ).scalars()
        return [
            r.account_id
            for r in rows
            if digest_due(now=now, hour=r.digest_hour, last_sent_on=r.last_digest_on)
        ]

    def _digest(self, session: Session, account_id: str) -> list[str]:
        now = self.clock()
        prefs = session.get(NotificationPreferenceRow, account_id, with_for_update=True)
        account = session.get(AccountRow, account_id)
        if prefs is None or account is None or not prefs.digest_enabled:
            return []
        if not digest_due(now=now, hour=prefs.digest_hour, last_sent_on=prefs.last_digest_on):
            return []
        today = local_day(now).isoformat()
        prefs.last_digest_on = today
        lines = digest_lines(store.open_items(session, account_id), now)
        if not lines:
            return []
        key = f"digest:{account_id}:{today}"
        if store.by_key(session, key) is not None:
            return []
        event = NotifyEvent(
            kind=NotifyKind.DIGEST,
            idempotency_key=key,
            case_id="",
            region=account.region,
            occurred_at=now,
        )
        recipient = store.Recipient(account_id, account.role, account.organisation_id)
        _, copies = self.desk.record(
            session, event, [recipient], now=now, payload=store.digest_payload(lines)
        )
        return [c.account_id for c in copies]


def digest_of(row: NotificationRow) -> list[dict[str, object]]:
    """A digest's lines as stored (for the API)."""
    return list(json.loads(row.payload)) if row.payload else []
