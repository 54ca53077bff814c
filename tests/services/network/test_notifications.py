"""Notifications through the real network service (gRPC, its database, its
dispatcher), a real SMTP server and a webhook receiver: who is told, once
per event; e-mails in each recipient's language with no personal data;
signed webhooks; nobody to tell; the inbox, acknowledgements and the live
watch; retries while the SMTP server is down; the .eml fallback; digests."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from masar.contract.notify import AcknowledgementsQuery, NotifyKind
from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from services.network.audience import DIGEST_ZONE, DeliveryPolicy
from services.network.webhooks import verify_signature
from tests.conftest import free_port
from tests.services.network.helpers import admin, stub_as
from tests.services.network.notify_support import (
    CANARY_ALIAS,
    CANARY_CONTACT,
    CONSOLE,
    FES,
    STAFF_NAME,
    MovingClock,
    database_bytes,
    event,
    eventually,
    message_text,
    notify,
    notify_service,
    small_network,
    smtp_server,
    webhook_receiver,
)

pytestmark = pytest.mark.slow


async def inbox(net, staff, **kw) -> list[pb.Notification]:
    reply = await net.inbox_of(staff).ListNotifications(pb.ListNotificationsRequest(**kw))
    return list(reply.notifications)


async def test_each_event_reaches_its_people_once_in_their_language(tmp_path, database_url):
    with smtp_server() as smtp, webhook_receiver() as hook:
        async with notify_service(tmp_path, database_url, smtp_url=smtp.url) as running:
            net = await small_network(running)
            configured = await admin(running).SetOrganisationWebhook(
                pb.SetOrganisationWebhookRequest(
                    organisation_id=net.shelter.organisation_id, url=hook.url
                )
            )
            hook.secret = configured.secret
            assert hook.secret.startswith("whsec_")

            new = event(
                NotifyKind.NEW_REFERRAL,
                provider_organisation_id=net.shelter.organisation_id,
                holding_organisation_id=net.association.organisation_id,
            )
            first = await notify(running, new)
            # A retry, a replay, a restarted worker: the same key, nobody told twice.
            again = await notify(running, new)
            assert first.recipients == 2 and not first.undelivered and not first.already
            assert again.already and again.notification_id == first.notification_id

            reminder = event(
                NotifyKind.REMINDER,
                case_id=new.case_id,
                referral_id=new.referral_id,
                rung=1,
                provider_organisation_id=net.shelter.organisation_id,
            )
            escalation = event(
                NotifyKind.ESCALATION,
                case_id=new.case_id,
                referral_id=new.referral_id,
                rung=2,
                provider_organisation_id=net.shelter.organisation_id,
            )
            await notify(running, reminder)
            assert (await notify(running, escalation)).recipients == 2

            for staff in net.shelter_staff:
                kinds = [n.kind for n in await inbox(net, staff)]
                assert kinds == [pb.NOTIFICATION_KIND_REMINDER, pb.NOTIFICATION_KIND_NEW_REFERRAL]
            for coordinator in net.coordinators:
                kinds = [n.kind for n in await inbox(net, coordinator)]
                assert kinds == [pb.NOTIFICATION_KIND_ESCALATION]
            assert await inbox(net, net.officer) == []

            # Two shelter staff x two events + two coordinators: six e-mails, one each.
            await eventually(lambda: len(smtp.raw) >= 6)
            await eventually(lambda: len(hook.posts) >= 4)
            await asyncio.sleep(0.5)
            assert len(smtp.raw) == 6 and len(hook.posts) == 4
            ids = [m["Message-ID"] for m in smtp.parsed()]
            assert len(set(ids)) == 6 and all(i.endswith("@masar.test>") for i in ids)

            arabic, french = net.shelter_staff
            # Deliveries run concurrently: the order mail arrives in is not the
            # order of the events, so each message is found by its subject.
            mails = smtp.to(arabic.email)
            assert [m["Content-Language"] for m in mails] == ["ar", "ar"]
            (fresh,) = [m for m in mails if "إحالة جديدة" in m["Subject"]]
            plain, rich = message_text(fresh)
            assert new.case_id in plain and new.referral_id in plain
            assert f"{CONSOLE}/cases/{new.case_id}" in plain and 'dir="rtl"' in rich
            subjects = [m["Subject"] for m in smtp.to(french.email)]
            assert any("Nouvelle orientation" in s for s in subjects)
            english = smtp.to(net.coordinators[0].email)[0]
            assert english["Subject"].startswith("Escalation:")

            # Webhooks: signed, each checked by the reference verifier.
            assert all(hook.verified)
            headers, body = hook.posts[0]
            document = json.loads(body)
            assert document["notification"]["case_id"] == new.case_id
            assert headers["X-Masar-Delivery"] == document["delivery_id"]
            tampered = body.replace(new.case_id.encode(), b"case-000000000000")
            assert not verify_signature(hook.secret, tampered, headers)
            old = {**headers, "X-Masar-Timestamp": str(int(time.time()) - 3600)}
            assert not verify_signature(hook.secret, body, old)

            # No personal data anywhere: not the survivor's (never given to the
            # network), not even the staff's names.
            everything = b"\n".join([*smtp.raw, *(b for _, b in hook.posts)])
            for secret in (CANARY_ALIAS, CANARY_CONTACT, STAFF_NAME):
                assert secret.encode() not in everything
                assert secret.encode() not in database_bytes(running)

            # Delivery state is visible to the region's coordinators.
            regional = net.inbox_of(net.coordinators[0])
            detail = await regional.GetNotification(
                pb.GetNotificationRequest(notification_id=first.notification_id)
            )
            assert detail.notification.state == pb.NOTIFICATION_STATE_REACHED
            assert len(detail.recipients) == 2
            channels = {d.channel for r in detail.recipients for d in r.deliveries}
            assert channels == {pb.DELIVERY_CHANNEL_EMAIL, pb.DELIVERY_CHANNEL_WEBHOOK}
            assert all(
                d.status == pb.DELIVERY_STATUS_SENT and d.attempts == 1
                for r in detail.recipients
                for d in r.deliveries
            )
            # ... but not to staff it was not addressed to.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await net.inbox_of(net.officer).GetNotification(
                    pb.GetNotificationRequest(notification_id=first.notification_id)
                )
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_organisation_with_no_active_staff_escalates_at_once(tmp_path, database_url):
    async with notify_service(tmp_path, database_url, smtp_url=None) as running:
        net = await small_network(running)
        reminder = event(
            NotifyKind.REMINDER,
            rung=1,
            provider_organisation_id=net.empty_shelter.organisation_id,
        )
        result = await notify(running, reminder)
        assert result.undelivered and result.recipients == 0 and result.escalated_to == 2
        assert (await notify(running, reminder)).undelivered  # the same answer on a retry
        for coordinator in net.coordinators:
            [told] = await inbox(net, coordinator)
            assert told.kind == pb.NOTIFICATION_KIND_UNDELIVERED
            assert told.origin_notification_id == result.notification_id
            assert told.provider_organisation_id == net.empty_shelter.organisation_id
        assert await inbox(net, net.disabled) == []
        acks = await running.process.components.activities[1](
            AcknowledgementsQuery(case_id=reminder.case_id)
        )
        assert acks.undelivered == [reminder.idempotency_key]


async def test_watch_acknowledge_and_the_journeys_view(tmp_path, sqlite_url):
    async with notify_service(tmp_path, sqlite_url, smtp_url=None) as running:
        net = await small_network(running)
        coordinator = net.coordinators[0]
        stream = net.inbox_of(coordinator).WatchNotifications(pb.WatchNotificationsRequest())
        received: asyncio.Queue[tuple[float, pb.Notification]] = asyncio.Queue()

        async def listen() -> None:
            async for reply in stream:
                await received.put((time.monotonic(), reply.notification))

        listener = asyncio.create_task(listen())
        try:
            await asyncio.sleep(0.5)  # the stream is open
            closure = event(NotifyKind.CLOSURE_REQUESTED, referral_id="", sector="")
            sent_at = time.monotonic()
            told = await notify(running, closure)
            arrived, notification = await asyncio.wait_for(received.get(), timeout=5)
            assert arrived - sent_at < 1.0
            assert notification.notification_id == told.notification_id
            assert notification.kind == pb.NOTIFICATION_KIND_CLOSURE_REQUESTED
        finally:
            stream.cancel()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

        stub = net.inbox_of(coordinator)
        acked = await stub.AcknowledgeNotification(
            pb.AcknowledgeNotificationRequest(notification_id=told.notification_id)
        )
        assert acked.notification.acknowledged and not acked.already_acknowledged
        again = await stub.AcknowledgeNotification(
            pb.AcknowledgeNotificationRequest(notification_id=told.notification_id)
        )
        assert again.already_acknowledged
        assert await inbox(net, coordinator, unacknowledged_only=True) == []
        # Someone it was not addressed to cannot acknowledge it.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await net.inbox_of(net.officer).AcknowledgeNotification(
                pb.AcknowledgeNotificationRequest(notification_id=told.notification_id)
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        detail = await net.inbox_of(net.coordinators[1]).GetNotification(
            pb.GetNotificationRequest(notification_id=told.notification_id)
        )
        seen = {r.account_id: r for r in detail.recipients}
        assert seen[coordinator.account_id].acknowledged_by == coordinator.account_id
        assert seen[coordinator.account_id].HasField("acknowledged_at")
        assert not seen[net.coordinators[1].account_id].HasField("acknowledged_at")

        acks = await running.process.components.activities[1](
            AcknowledgementsQuery(case_id=closure.case_id)
        )
        [ack] = acks.acknowledgements
        assert ack.account_id == coordinator.account_id and ack.role == "coordinator"
        assert ack.idempotency_key == closure.idempotency_key and acks.undelivered == []


async def test_smtp_down_then_up_retries_visibly_and_delivers(tmp_path, sqlite_url):
    port = free_port()
    async with notify_service(tmp_path, sqlite_url, smtp_url=f"smtp://127.0.0.1:{port}") as running:
        net = await small_network(running)
        told = await notify(running, event(NotifyKind.ESCALATION, rung=2))
        coordinator = net.inbox_of(net.coordinators[0])

        async def deliveries() -> list[pb.Delivery]:
            detail = await coordinator.GetNotification(
                pb.GetNotificationRequest(notification_id=told.notification_id)
            )
            return [d for r in detail.recipients for d in r.deliveries]

        async def retried() -> bool:
            return all(d.attempts >= 3 for d in await deliveries())

        await eventually(retried)
        for delivery in await deliveries():
            assert delivery.status in (pb.DELIVERY_STATUS_PENDING, pb.DELIVERY_STATUS_SENDING)
            assert delivery.last_error == "smtp_connect"
        # The event itself is in the inbox all along.
        assert len(await inbox(net, net.coordinators[0])) == 1

        with smtp_server(port) as smtp:

            async def sent() -> bool:
                return all(d.status == pb.DELIVERY_STATUS_SENT for d in await deliveries())

            await eventually(sent)
            assert len(smtp.raw) == 2
        for delivery in await deliveries():
            log = list(delivery.attempt_log)
            assert [a.sent for a in log] == [False] * (len(log) - 1) + [True]
            assert {a.error for a in log[:-1]} == {"smtp_connect"}
            assert delivery.attempts == len(log) >= 4


async def test_nothing_reached_in_time_escalates(tmp_path, sqlite_url):
    policy = DeliveryPolicy(
        base=timedelta(milliseconds=200),
        cap=timedelta(seconds=1),
        undelivered_after=timedelta(seconds=1),
        poll=timedelta(milliseconds=100),
    )
    port = free_port()  # nothing listens: every e-mail fails
    async with notify_service(
        tmp_path, sqlite_url, smtp_url=f"smtp://127.0.0.1:{port}", delivery=policy
    ) as running:
        net = await small_network(running)
        reminder = event(
            NotifyKind.REMINDER, rung=1, provider_organisation_id=net.shelter.organisation_id
        )
        result = await notify(running, reminder)
        assert not result.undelivered and result.recipients == 2

        async def escalated() -> list[pb.Notification]:
            return await inbox(net, net.coordinators[0])

        [told] = await eventually(escalated)
        assert told.kind == pb.NOTIFICATION_KIND_UNDELIVERED
        assert told.origin_notification_id == result.notification_id
        acks = await running.process.components.activities[1](
            AcknowledgementsQuery(case_id=reminder.case_id, idempotency_keys=[])
        )
        assert acks.undelivered == [reminder.idempotency_key]


async def test_without_smtp_emails_are_files_for_newcomers(tmp_path, sqlite_url):
    async with notify_service(tmp_path, sqlite_url, smtp_url=None) as running:
        net = await small_network(running)
        await notify(
            running,
            event(NotifyKind.NEW_REFERRAL, provider_organisation_id=net.shelter.organisation_id),
        )
        mail = tmp_path / "mail"
        files = await eventually(lambda: sorted(mail.glob("*.eml")) if mail.exists() else [])
        await eventually(lambda: len(list(mail.glob("*.eml"))) == 2)
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            text = path.read_text()
            assert "Message-ID: <dlv-" in text and STAFF_NAME not in text
        assert stat.S_IMODE(mail.stat().st_mode) == 0o700


async def test_daily_digest_lists_what_is_due_today_and_overdue(tmp_path, sqlite_url):
    # 06:30 in Casablanca: the digest (at 07:00) is not due yet.
    morning = datetime.now(DIGEST_ZONE).replace(hour=6, minute=30, second=0, microsecond=0)
    clock = MovingClock(morning.astimezone(UTC))
    with smtp_server() as smtp:
        async with notify_service(
            tmp_path, sqlite_url, smtp_url=smtp.url, notify_clock=clock
        ) as running:
            net = await small_network(running)
            arabic = net.shelter_staff[0]
            stub = net.inbox_of(arabic)
            prefs = await stub.SetNotificationPreferences(
                pb.SetNotificationPreferencesRequest(
                    preferences=pb.NotificationPreferences(
                        email_enabled=False, digest_enabled=True, digest_hour=7
                    )
                )
            )
            assert prefs.preferences.digest_hour == 7
            shelter = net.shelter.organisation_id
            overdue = event(
                NotifyKind.NEW_REFERRAL,
                provider_organisation_id=shelter,
                deadline=clock() - timedelta(hours=2),
            )
            due = event(
                NotifyKind.NEW_REFERRAL,
                provider_organisation_id=shelter,
                deadline=clock() + timedelta(hours=3),
            )
            later = event(
                NotifyKind.NEW_REFERRAL,
                provider_organisation_id=shelter,
                deadline=clock() + timedelta(days=3),
            )
            decided = event(NotifyKind.NEW_REFERRAL, provider_organisation_id=shelter)
            for each in (overdue, due, later, decided):
                await notify(running, each)
            await notify(
                running,
                event(
                    NotifyKind.REFERRAL_DECIDED,
                    case_id=decided.case_id,
                    referral_id=decided.referral_id,
                    holding_organisation_id=net.association.organisation_id,
                ),
            )
            await asyncio.sleep(0.5)
            assert not [
                n for n in await inbox(net, arabic) if n.kind == pb.NOTIFICATION_KIND_DIGEST
            ]

            clock.set((morning + timedelta(hours=1)).astimezone(UTC))

            async def digests() -> list[pb.Notification]:
                return [
                    n for n in await inbox(net, arabic) if n.kind == pb.NOTIFICATION_KIND_DIGEST
                ]

            [digest] = await eventually(digests)
            items = [(i.case_id, i.overdue) for i in digest.digest_items]
            assert items == [(overdue.case_id, True), (due.case_id, False)]
            # She turned e-mails off: the digest stays in her inbox.
            await asyncio.sleep(0.5)
            assert smtp.to(arabic.email) == []
            # Once a day.
            await asyncio.sleep(0.5)
            assert len(await digests()) == 1
            # The French colleague did not ask for one.
            french = net.shelter_staff[1]
            assert not [
                n for n in await inbox(net, french) if n.kind == pb.NOTIFICATION_KIND_DIGEST
            ]
            everything = b"\n".join(smtp.raw)
            assert CANARY_ALIAS.encode() not in everything


async def test_digest_email_in_the_accounts_language(tmp_path, sqlite_url):
    morning = datetime.now(DIGEST_ZONE).replace(hour=8, minute=0, second=0, microsecond=0)
    clock = MovingClock(morning.astimezone(UTC))
    with smtp_server() as smtp:
        async with notify_service(
            tmp_path, sqlite_url, smtp_url=smtp.url, notify_clock=clock
        ) as running:
            net = await small_network(running)
            coordinator = net.coordinators[1]  # French
            await notify(running, event(NotifyKind.ESCALATION, deadline=clock() - timedelta(1)))
            await net.inbox_of(coordinator).SetNotificationPreferences(
                pb.SetNotificationPreferencesRequest(
                    preferences=pb.NotificationPreferences(
                        email_enabled=True, digest_enabled=True, digest_hour=7
                    )
                )
            )

            def digest_mails() -> list:
                return [m for m in smtp.to(coordinator.email) if "récapitulatif" in m["Subject"]]

            [mail] = await eventually(digest_mails)
            plain, rich = message_text(mail)
            assert "En retard" in plain and "En retard" in rich
            assert mail["Content-Language"] == "fr"


async def test_who_sets_webhooks_and_preferences(tmp_path, sqlite_url):
    async with notify_service(tmp_path, sqlite_url, smtp_url=None) as running:
        net = await small_network(running)
        other = stub_as(running, Role.SUPERVISOR, org="org-000000000000", region=FES)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await other.SetOrganisationWebhook(
                pb.SetOrganisationWebhookRequest(
                    organisation_id=net.shelter.organisation_id, url="https://gw.example/x"
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        coordinator = stub_as(running, Role.COORDINATOR, region=FES)
        first = await coordinator.SetOrganisationWebhook(
            pb.SetOrganisationWebhookRequest(
                organisation_id=net.shelter.organisation_id, url="https://gw.example/x"
            )
        )
        kept = await coordinator.SetOrganisationWebhook(
            pb.SetOrganisationWebhookRequest(
                organisation_id=net.shelter.organisation_id, url="https://gw.example/y"
            )
        )
        rotated = await coordinator.SetOrganisationWebhook(
            pb.SetOrganisationWebhookRequest(
                organisation_id=net.shelter.organisation_id,
                url="https://gw.example/y",
                rotate_secret=True,
            )
        )
        assert first.secret and kept.secret == "" and rotated.secret not in ("", first.secret)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await coordinator.SetOrganisationWebhook(
                pb.SetOrganisationWebhookRequest(
                    organisation_id=net.shelter.organisation_id, url="ftp://nope"
                )
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = net.inbox_of(net.officer)
        defaults = await stub.GetNotificationPreferences(pb.GetNotificationPreferencesRequest())
        assert defaults.preferences.email_enabled and not defaults.preferences.digest_enabled
        with pytest.raises(grpc.aio.AioRpcError) as hour:
            await stub.SetNotificationPreferences(
                pb.SetNotificationPreferencesRequest(
                    preferences=pb.NotificationPreferences(digest_enabled=True, digest_hour=24)
                )
            )
        assert hour.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A malformed event is refused, never retried.
        from temporalio.exceptions import ApplicationError

        with pytest.raises(ApplicationError) as malformed:
            await notify(running, event(NotifyKind.NEW_REFERRAL, region="atlantis"))
        assert malformed.value.non_retryable
