"""Test support for notifications: a real SMTP server (aiosmtpd) and a
webhook receiver on free local ports, the network service with short
delivery delays, and a small network of organisations and accounts."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import functools
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from masar.contract.notify import NotifyEvent, NotifyKind, NotifyResult
from masar.platform.identity import Role
from masar.platform.settings import NotifySettings
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc
from services.network.app import MIGRATIONS_DIR, build_components
from services.network.audience import DeliveryPolicy
from services.network.webhooks import verify_signature
from tests.conftest import free_port
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.services.network.conftest import CHEAP_PASSWORDS, NO_THROTTLE
from tests.services.network.helpers import admin, create_org, stub_as

FES = "fes-meknes"
CONSOLE = "https://console.masar.test"
SENDER = "Masar <alerts@masar.test>"
# A survivor's alias and contact: the network never receives them, and no
# message nor the network's database may ever hold them.
CANARY_ALIAS = "Canary-Zineb-7f3a9"
CANARY_CONTACT = "+212600990077"
STAFF_NAME = "Samira Staffname"
FAST = DeliveryPolicy(
    base=timedelta(milliseconds=200),
    cap=timedelta(seconds=1),
    lease=timedelta(seconds=5),
    undelivered_after=timedelta(minutes=10),
    poll=timedelta(milliseconds=100),
)


# --- a real SMTP server ------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 Message accepted for delivery"


@dataclass
class SmtpReceiver:
    port: int
    inbox: _Inbox = field(default_factory=_Inbox)
    controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def raw(self) -> list[bytes]:
        return [data for _, data in self.inbox.messages]

    def parsed(self) -> list[EmailMessage]:
        return [email.message_from_bytes(data, policy=email.policy.default) for data in self.raw]

    def to(self, address: str) -> list[EmailMessage]:
        return [
            email.message_from_bytes(data, policy=email.policy.default)
            for rcpts, data in self.inbox.messages
            if address in rcpts
        ]


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(port or free_port())
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def message_text(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


# --- a webhook receiver ------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    secret: str = ""
    status: int = 200
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/masar"


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            receiver.posts.append((headers, body))
            receiver.verified.append(verify_signature(receiver.secret, body, headers))
            self.send_response(receiver.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


# --- the service ------------------------------------------------------------------------


class MovingClock:
    """Real time, moved forward by hand (digests at a chosen hour)."""

    def __init__(self, at: datetime | None = None) -> None:
        self.offset = timedelta(0) if at is None else at - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, at: datetime) -> None:
        self.offset = at - datetime.now(UTC)


@asynccontextmanager
async def notify_service(
    tmp_path: Path,
    database_url: str,
    *,
    smtp_url: str | None,
    delivery: DeliveryPolicy = FAST,
    notify_clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[RunningSector]:
    settings = sector_settings("network", tmp_path, database_url)
    settings = dataclasses.replace(
        settings, notify=NotifySettings(smtp_url=smtp_url, smtp_from=SENDER, console_url=CONSOLE)
    )
    options: dict[str, Any] = {
        "policy": NO_THROTTLE,
        "passwords": CHEAP_PASSWORDS,
        "delivery": delivery,
    }
    if notify_clock is not None:
        options["notify_clock"] = notify_clock
    factory = functools.partial(build_components, **options)
    async with running_sector(settings, factory, MIGRATIONS_DIR) as running:
        yield running


async def notify(running: RunningSector, event: NotifyEvent) -> NotifyResult:
    """The activity network.notify, called as the worker would."""
    activity = running.process.components.activities[0]
    result: NotifyResult = await activity(event)
    return result


def event(kind: NotifyKind, *, key: str | None = None, **fields: Any) -> NotifyEvent:
    values: dict[str, Any] = {
        "case_id": f"case-{secrets.token_hex(6)}",
        "region": FES,
        "referral_id": f"ref-{secrets.token_hex(6)}",
        "sector": "shelter",
        "rung": 0,
        "deadline": datetime.now(UTC) + timedelta(hours=4),
    }
    values.update(fields)
    return NotifyEvent(kind=kind, idempotency_key=key or f"evt-{secrets.token_hex(8)}", **values)


# --- a small network ---------------------------------------------------------------------


@dataclass
class Staff:
    account: pb.Account
    email: str

    @property
    def account_id(self) -> str:
        return self.account.account_id


@dataclass
class Network:
    running: RunningSector
    association: pb.Organisation
    shelter: pb.Organisation
    empty_shelter: pb.Organisation
    shelter_staff: list[Staff]
    coordinators: list[Staff]
    supervisor: Staff
    officer: Staff
    disabled: Staff

    def inbox_of(self, staff: Staff) -> network_pb2_grpc.NetworkServiceStub:
        account = staff.account
        role = Role(pb.AccountRole.Name(account.role).removeprefix("ACCOUNT_ROLE_").lower())
        return stub_as(
            self.running, role, account.organisation_id, account.region, subject=account.account_id
        )

    @property
    def everyone(self) -> list[Staff]:
        return [*self.shelter_staff, *self.coordinators, self.supervisor, self.officer]


async def add_staff(stub: Any, org: pb.Organisation, role: Any, language: Any) -> Staff:
    username = f"staff.{secrets.token_hex(4)}"
    address = f"{username}@staff.masar.test"
    reply = await stub.CreateAccount(
        pb.CreateAccountRequest(
            username=username,
            display_name=STAFF_NAME,
            role=role,
            organisation_id=org.organisation_id,
            email=address,
            mobile="+212611223344",
            language=language,
            idempotency_key=secrets.token_hex(8),
        )
    )
    return Staff(reply.account, address)


async def small_network(running: RunningSector) -> Network:
    root = admin(running)
    coordinator_stub = stub_as(running, Role.COORDINATOR, region=FES)
    association = await create_org(root, region=FES)
    shelter = await create_org(
        root,
        region=FES,
        kind=pb.ORGANISATION_KIND_SHELTER_OPERATOR,
        sectors=(pb.SERVED_SECTOR_SHELTER,),
        name="Dar Amane",
    )
    empty_shelter = await create_org(
        root,
        region=FES,
        kind=pb.ORGANISATION_KIND_SHELTER_OPERATOR,
        sectors=(pb.SERVED_SECTOR_SHELTER,),
        name="Dar Salam",
    )
    staff = [
        await add_staff(coordinator_stub, shelter, pb.ACCOUNT_ROLE_SHELTER_STAFF, language)
        for language in (pb.PREFERRED_LANGUAGE_AR, pb.PREFERRED_LANGUAGE_FR)
    ]
    coordinators = [
        await add_staff(root, association, pb.ACCOUNT_ROLE_COORDINATOR, pb.PREFERRED_LANGUAGE_EN),
        await add_staff(root, association, pb.ACCOUNT_ROLE_COORDINATOR, pb.PREFERRED_LANGUAGE_FR),
    ]
    supervisor = await add_staff(
        coordinator_stub, association, pb.ACCOUNT_ROLE_SUPERVISOR, pb.PREFERRED_LANGUAGE_AR
    )
    officer = await add_staff(
        coordinator_stub, association, pb.ACCOUNT_ROLE_INTAKE_OFFICER, pb.PREFERRED_LANGUAGE_EN
    )
    # The empty shelter's only staff member has left.
    disabled = await add_staff(
        coordinator_stub, empty_shelter, pb.ACCOUNT_ROLE_SHELTER_STAFF, pb.PREFERRED_LANGUAGE_FR
    )
    await coordinator_stub.DisableAccount(
        pb.DisableAccountRequest(
            account_id=disabled.account_id, reason=pb.DISABLE_REASON_LEFT_ORGANISATION
        )
    )
    return Network(
        running=running,
        association=association,
        shelter=shelter,
        empty_shelter=empty_shelter,
        shelter_staff=staff,
        coordinators=coordinators,
        supervisor=supervisor,
        officer=officer,
        disabled=disabled,
    )


async def eventually(check: Callable[[], Any], *, within: float = 10.0, every: float = 0.05) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(every)


def database_bytes(running: RunningSector) -> bytes:
    """Everything the network's database holds, as text (every table, every row)."""
    from sqlalchemy import inspect, text

    engine = running.process.database.engine
    chunks: list[str] = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks).encode()
