"""`masar inbox`: the signed-in person's notifications.

    masar inbox [--all] [--watch] [--json]   what journeys need of her
    masar inbox ack NOTIFICATION_ID [--json]  she has seen it

Calls masar.v1.NetworkService (ListNotifications, WatchNotifications,
AcknowledgeNotification) with the person's own token: her `masar login`
session, or MASAR_TOKEN. An inbox is a person's, so there is no development
shortcut here. Notifications hold ids and codes only (case, referral, sector,
rung, deadline, a link to the case in the console), never personal data.

`--watch` prints her notifications not acknowledged yet, then each new one as
it arrives, until Ctrl-C; with `--json`, one JSON document per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import grpc

from masar.cli import connect
from masar.cli.output import CliError, Output, to_jsonable, when
from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc

PAGE_SIZE = 100
MAX_PAGES = 20
# Unused (the person's own token is always presented): channel() wants one.
_NOBODY = connect.Identity(Role.COORDINATOR)
SIGN_IN = "the inbox is a person's: sign in with `masar login` (or set MASAR_TOKEN)"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    inbox = sub.add_parser(
        "inbox",
        help="your notifications (journeys that need you)",
        description="Your notifications, newest first: what journeys need of you.",
        parents=[common],
    )
    inbox.add_argument(
        "--all", action="store_true", help="also those already acknowledged (default: not yet)"
    )
    inbox.add_argument(
        "--watch", action="store_true", help="then show new ones as they come, until Ctrl-C"
    )
    inbox.set_defaults(handler=list_inbox)
    inbox_sub = inbox.add_subparsers(dest="inbox_command", metavar="ACTION")
    ack = inbox_sub.add_parser("ack", help="acknowledge a notification", parents=[common])
    ack.add_argument("notification_id", metavar="ID")
    ack.set_defaults(handler=acknowledge)


# --- documents -----------------------------------------------------------------------------


def _code(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value


def notification_doc(n: pb.Notification) -> dict[str, Any]:
    return {
        "notification_id": n.notification_id,
        "kind": _code(pb.NotificationKind, "NOTIFICATION_KIND_", n.kind),
        "case_id": n.case_id,
        "region": n.region,
        "referral_id": n.referral_id or None,
        "sector": n.sector or None,
        "provider_organisation_id": n.provider_organisation_id or None,
        "holding_organisation_id": n.holding_organisation_id or None,
        "transfer_id": n.transfer_id or None,
        "receiving_organisation_id": n.receiving_organisation_id or None,
        "rung": n.rung,
        "deadline": _time(n, "deadline"),
        "occurred_at": _time(n, "occurred_at"),
        "created_at": _time(n, "created_at"),
        "console_url": n.console_url or None,
        "state": _code(pb.NotificationState, "NOTIFICATION_STATE_", n.state),
        "acknowledged": n.acknowledged,
        "acknowledged_at": _time(n, "acknowledged_at"),
        "origin_notification_id": n.origin_notification_id or None,
    }


def _row(doc: dict[str, Any]) -> list[Any]:
    subject = doc["referral_id"] or doc["transfer_id"] or "-"
    return [
        doc["notification_id"],
        doc["kind"],
        doc["case_id"],
        subject,
        doc["sector"],
        doc["rung"] or "-",
        when(doc["deadline"]),
        "yes" if doc["acknowledged"] else "no",
    ]


HEADERS = ["id", "kind", "case", "referral/transfer", "sector", "rung", "deadline", "ack"]


# --- calls ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _stub() -> Any:
    source = connect.own_token()
    if source is None:
        raise CliError(SIGN_IN)
    async with connect.channel("network", _NOBODY, source=source) as chan:
        yield network_pb2_grpc.NetworkServiceStub(chan)


async def list_inbox(args: argparse.Namespace, out: Output) -> int:
    if args.watch:
        return await watch(args, out)
    docs: list[dict[str, Any]] = []
    async with _stub() as stub:
        token = ""
        for _ in range(MAX_PAGES):
            request = pb.ListNotificationsRequest(
                unacknowledged_only=not args.all, page_size=PAGE_SIZE, page_token=token
            )
            reply = await _list(stub, request)
            docs.extend(notification_doc(n) for n in reply.notifications)
            token = reply.next_page_token
            if not token:
                break
    if out.json_mode:
        out.document({"notifications": docs})
        return 0
    if not docs:
        out.line("No notifications." if args.all else "Nothing waiting for you.")
        return 0
    out.table(HEADERS, [_row(d) for d in docs])
    return 0


async def _list(stub: Any, request: pb.ListNotificationsRequest) -> Any:
    return await connect.rpc("network", lambda: stub.ListNotifications(request))


async def watch(args: argparse.Namespace, out: Output) -> int:
    """Until Ctrl-C (or the server ends the stream)."""
    async with _stub() as stub:
        stream = stub.WatchNotifications(pb.WatchNotificationsRequest(include_unacknowledged=True))
        if not out.json_mode:
            out.note("Watching your notifications (Ctrl-C to stop).")
            out.table(HEADERS, [])
        try:
            async for reply in stream:
                doc = notification_doc(reply.notification)
                if out.json_mode:
                    print(json.dumps(to_jsonable(doc), ensure_ascii=False), flush=True)
                else:
                    out.line("  ".join(str(c) if c is not None else "-" for c in _row(doc)))
        except grpc.aio.AioRpcError as exc:
            raise connect.rpc_error("network", exc) from None
        except asyncio.CancelledError:
            stream.cancel()
            raise
    return 0


async def acknowledge(args: argparse.Namespace, out: Output) -> int:
    request = pb.AcknowledgeNotificationRequest(notification_id=args.notification_id)
    async with _stub() as stub:
        reply = await connect.rpc("network", lambda: stub.AcknowledgeNotification(request))
    doc = notification_doc(reply.notification)
    if out.json_mode:
        out.document({"notification": doc, "already_acknowledged": reply.already_acknowledged})
        return 0
    if reply.already_acknowledged:
        out.line(f"{doc['notification_id']} was already acknowledged.")
    else:
        out.line(f"Acknowledged {doc['notification_id']} ({doc['kind']}, case {doc['case_id']}).")
    return 0
