"""Notifications: the person's inbox from the network service (new
referrals, reminders, escalations, decisions, transfers), refreshed live,
each acknowledged with one click — which the journey's timeline shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from console import i18n, labels
from console.sessions import Session
from console.web import Console, action, back, console_of, page, render, session_of, text
from masar.v1 import network_pb2

PAGE_SIZE = 100
ESCALATION_KINDS = frozenset(
    {
        network_pb2.NOTIFICATION_KIND_ESCALATION,
        network_pb2.NOTIFICATION_KIND_REGIONAL,
        network_pb2.NOTIFICATION_KIND_EXPIRED,
        network_pb2.NOTIFICATION_KIND_CLINICAL_WINDOW,
    }
)


@dataclass(frozen=True)
class Item:
    notification_id: str
    kind: str  # a label
    escalation: bool
    case_id: str
    referral_id: str
    sector: str  # a label, or ""
    rung: int
    deadline: datetime | None
    occurred_at: datetime | None
    acknowledged: bool
    undelivered: bool
    href: str


def _when(ts: object) -> datetime | None:
    if ts is None or not getattr(ts, "seconds", 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined, no-any-return]


def item_of(n: network_pb2.Notification, session: Session) -> Item:
    # Staff act on the referral; case holders and coordinators on the case.
    if n.referral_id and session.role in {"shelter_staff", "legal_aid", "employment_officer"}:
        href = f"/referrals/{n.referral_id}"
    else:
        href = f"/cases/{n.case_id}" if n.case_id else "/notifications"
    return Item(
        notification_id=n.notification_id,
        kind=labels.label(labels.NOTIFICATION_KINDS, n.kind),
        escalation=n.kind in ESCALATION_KINDS,
        case_id=n.case_id,
        referral_id=n.referral_id,
        sector=labels.SECTOR_SLUGS.get(n.sector, "") if n.sector else "",
        rung=n.rung,
        deadline=_when(n.deadline) if n.HasField("deadline") else None,
        occurred_at=_when(n.occurred_at) if n.HasField("occurred_at") else None,
        acknowledged=n.acknowledged,
        undelivered=n.state == network_pb2.NOTIFICATION_STATE_UNDELIVERED,
        href=href,
    )


async def fetch(console: Console, session: Session, *, unacknowledged_only: bool) -> list[Item]:
    reply = await console.backend.call(
        session,
        "network",
        console.backend.stubs.network.ListNotifications,
        network_pb2.ListNotificationsRequest(
            unacknowledged_only=unacknowledged_only, page_size=PAGE_SIZE
        ),
    )
    return [item_of(n, session) for n in reply.notifications]


async def inbox(request: Request) -> Response:
    items = await fetch(console_of(request), session_of(request), unacknowledged_only=False)
    return render(request, "notifications.html", items=items)


async def inbox_live(request: Request) -> Response:
    items = await fetch(console_of(request), session_of(request), unacknowledged_only=False)
    return render(request, "_notifications.html", items=items)


async def acknowledge(request: Request, form: FormData) -> Response:
    console = console_of(request)
    session = session_of(request)
    notification_id = str(request.path_params["notification_id"])
    await console.backend.call(
        session,
        "network",
        console.backend.stubs.network.AcknowledgeNotification,
        network_pb2.AcknowledgeNotificationRequest(notification_id=notification_id),
    )
    session.flash(i18n.N_("Acknowledged: the journey's timeline shows it."))
    target = text(form, "next")
    return back(
        target if target.startswith("/") and not target.startswith("//") else "/notifications"
    )


routes = [
    page("/notifications", inbox),
    page("/notifications/live", inbox_live),
    action("/notifications/{notification_id}/ack", acknowledge),
]
