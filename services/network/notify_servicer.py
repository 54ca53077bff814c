"""masar.v1.NetworkService's notification methods (a part of NetworkServicer):
protobuf <-> the notification desk, validation, nothing else.

Every staff account reads and acknowledges her own inbox and sets her own
preferences; a notification's recipients, acknowledgements and delivery
state are read by its recipients, the coordinators of its region and
operators; an organisation's webhook is set by a network administrator, a
coordinator of its region or its supervisor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import grpc

from masar.contract.notify import NotifyKind
from masar.platform.access import requires
from masar.platform.clock import as_utc
from masar.platform.errors import InvalidArgument, MasarError
from masar.platform.identity import Role, current_caller
from masar.platform.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from masar.platform.rpc import FIELD_METADATA_KEY, grpc_status
from masar.v1 import network_pb2
from services.network.audience import (
    Channel,
    DeliveryStatus,
    ReachState,
    check_digest_hour,
    check_webhook_url,
)
from services.network.dispatcher import digest_of
from services.network.domain import AccountRole, Manager, check_organisation_id
from services.network.models import DeliveryAttemptRow, DeliveryRow, NotificationRow
from services.network.notifications import (
    InboxEntry,
    NotificationDesk,
    NotificationDetail,
)
from services.network.notify_store import Preferences
from services.network.texts import case_link

pb = network_pb2
# Every staff role: each has an inbox.
INBOX_ROLES = tuple(Role(r.value) for r in AccountRole)
WEBHOOK_MANAGERS = (Role.NETWORK_ADMIN, Role.COORDINATOR, Role.SUPERVISOR)
_ID_PATTERN_PREFIX = "ntf-"


def _set(message: object, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(as_utc(value))


def kind_pb(kind: str) -> network_pb2.NotificationKind.ValueType:
    return pb.NotificationKind.Value("NOTIFICATION_KIND_" + NotifyKind(kind).name)


def notification_pb(
    row: NotificationRow, console_url: str, entry: InboxEntry | None = None
) -> network_pb2.Notification:
    message = pb.Notification(
        notification_id=row.notification_id,
        kind=kind_pb(row.kind),
        case_id=row.case_id,
        region=row.region,
        referral_id=row.referral_id,
        sector=row.sector,
        provider_organisation_id=row.provider_organisation_id,
        holding_organisation_id=row.holding_organisation_id,
        transfer_id=row.transfer_id,
        receiving_organisation_id=row.receiving_organisation_id,
        rung=row.rung,
        console_url=case_link(console_url, row.case_id) if row.case_id else "",
        state=pb.NotificationState.Value("NOTIFICATION_STATE_" + ReachState(row.state).name),
        origin_notification_id=row.origin_id or "",
    )
    _set(message, "deadline", row.deadline)
    _set(message, "occurred_at", row.occurred_at)
    _set(message, "created_at", row.created_at)
    if entry is not None and entry.copy.acknowledged_at is not None:
        message.acknowledged = True
        _set(message, "acknowledged_at", entry.copy.acknowledged_at)
    for item in digest_of(row):
        digest = message.digest_items.add(
            case_id=str(item["case_id"]),
            referral_id=str(item["referral_id"]),
            sector=str(item["sector"]),
            kind=kind_pb(str(item["kind"])),
            overdue=bool(item["overdue"]),
        )
        digest.deadline.FromDatetime(as_utc(datetime.fromisoformat(str(item["deadline"]))))
    return message


def delivery_pb(row: DeliveryRow, attempts: list[DeliveryAttemptRow]) -> network_pb2.Delivery:
    message = pb.Delivery(
        delivery_id=row.delivery_id,
        channel=pb.DeliveryChannel.Value("DELIVERY_CHANNEL_" + Channel(row.channel).name),
        status=pb.DeliveryStatus.Value("DELIVERY_STATUS_" + DeliveryStatus(row.status).name),
        attempts=row.attempts,
        last_error=row.last_error or "",
    )
    if row.status in (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value):
        _set(message, "next_attempt_at", row.next_attempt_at)
    _set(message, "last_attempt_at", row.last_attempt_at)
    _set(message, "sent_at", row.sent_at)
    for attempt in attempts:
        logged = message.attempt_log.add(
            attempt=attempt.attempt, sent=attempt.sent, error=attempt.error or ""
        )
        logged.at.FromDatetime(as_utc(attempt.at))
    return message


def detail_pb(detail: NotificationDetail, console_url: str) -> network_pb2.GetNotificationResponse:
    mine = InboxEntry(detail.notification, detail.mine) if detail.mine is not None else None
    reply = pb.GetNotificationResponse(
        notification=notification_pb(detail.notification, console_url, mine)
    )
    for state in detail.recipients:
        copy = state.copy
        recipient = reply.recipients.add(
            account_id=copy.account_id,
            role=pb.AccountRole.Value("ACCOUNT_ROLE_" + AccountRole(copy.role).name),
            organisation_id=copy.organisation_id,
            acknowledged_by=copy.acknowledged_by or "",
        )
        _set(recipient, "acknowledged_at", copy.acknowledged_at)
        for delivery in state.deliveries:
            recipient.deliveries.append(
                delivery_pb(delivery, state.attempts.get(delivery.delivery_id, []))
            )
    return reply


def preferences_pb(prefs: Preferences) -> network_pb2.NotificationPreferences:
    return pb.NotificationPreferences(
        email_enabled=prefs.email_enabled,
        digest_enabled=prefs.digest_enabled,
        digest_hour=prefs.digest_hour,
        webhook_url=prefs.webhook_url,
    )


def check_notification_id(value: str) -> str:
    if not value:
        raise InvalidArgument("notification_id", "is required")
    if not value.startswith(_ID_PATTERN_PREFIX) or len(value) != 20 or not value[4:].isalnum():
        raise InvalidArgument("notification_id", "is not a notification id")
    return value


def caller_manager() -> Manager:
    caller = current_caller()
    return Manager(
        subject=caller.subject, role=caller.role.value, org=caller.org, region=caller.region
    )


class NotificationEndpoints:
    """Mixed into NetworkServicer; `notifications` and `console_url` are set
    by its constructor."""

    notifications: NotificationDesk
    console_url: str

    @requires(*INBOX_ROLES)
    async def ListNotifications(
        self, request: network_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ListNotificationsResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        entries, token = await self.notifications.inbox(
            current_caller().subject,
            unacknowledged=request.unacknowledged_only,
            size=request.page_size or DEFAULT_PAGE_SIZE,
            token=request.page_token,
        )
        return pb.ListNotificationsResponse(
            notifications=[notification_pb(e.notification, self.console_url, e) for e in entries],
            next_page_token=token,
        )

    @requires(*INBOX_ROLES)
    async def GetNotification(
        self, request: network_pb2.GetNotificationRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.GetNotificationResponse:
        detail = await self.notifications.detail(
            caller_manager(), check_notification_id(request.notification_id)
        )
        return detail_pb(detail, self.console_url)

    @requires(*INBOX_ROLES)
    async def AcknowledgeNotification(
        self,
        request: network_pb2.AcknowledgeNotificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> network_pb2.AcknowledgeNotificationResponse:
        entry, already = await self.notifications.acknowledge(
            caller_manager(), check_notification_id(request.notification_id)
        )
        return pb.AcknowledgeNotificationResponse(
            notification=notification_pb(entry.notification, self.console_url, entry),
            already_acknowledged=already,
        )

    @requires(*INBOX_ROLES)
    async def WatchNotifications(
        self, request: network_pb2.WatchNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[network_pb2.WatchNotificationsResponse]:
        # The error-mapping interceptor maps unary calls only: streams map here.
        try:
            async for entry in self.notifications.watch(
                current_caller().subject, backlog=request.include_unacknowledged
            ):
                yield pb.WatchNotificationsResponse(
                    notification=notification_pb(entry.notification, self.console_url, entry)
                )
        except MasarError as exc:
            if isinstance(exc, InvalidArgument):
                context.set_trailing_metadata(((FIELD_METADATA_KEY, exc.field),))
            await context.abort(grpc_status(exc), exc.message)

    @requires(*INBOX_ROLES)
    async def GetNotificationPreferences(
        self,
        request: network_pb2.GetNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> network_pb2.GetNotificationPreferencesResponse:
        prefs = await self.notifications.preferences(current_caller().subject)
        return pb.GetNotificationPreferencesResponse(preferences=preferences_pb(prefs))

    @requires(*INBOX_ROLES)
    async def SetNotificationPreferences(
        self,
        request: network_pb2.SetNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> network_pb2.SetNotificationPreferencesResponse:
        given = request.preferences
        prefs = Preferences(
            email_enabled=given.email_enabled,
            digest_enabled=given.digest_enabled,
            digest_hour=check_digest_hour(given.digest_hour),
            webhook_url=check_webhook_url(given.webhook_url, "preferences.webhook_url"),
        )
        saved = await self.notifications.set_preferences(caller_manager(), prefs)
        return pb.SetNotificationPreferencesResponse(preferences=preferences_pb(saved))

    @requires(*WEBHOOK_MANAGERS)
    async def SetOrganisationWebhook(
        self,
        request: network_pb2.SetOrganisationWebhookRequest,
        context: grpc.aio.ServicerContext,
    ) -> network_pb2.SetOrganisationWebhookResponse:
        config = await self.notifications.set_webhook(
            caller_manager(),
            check_organisation_id(request.organisation_id),
            check_webhook_url(request.url, "url"),
            rotate=request.rotate_secret,
        )
        return pb.SetOrganisationWebhookResponse(
            organisation_id=config.organisation_id, url=config.url, secret=config.secret
        )
