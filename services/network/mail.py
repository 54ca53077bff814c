"""E-mail: a notification as a MIME message (plain text and HTML, in the
recipient's language), sent over SMTP (MASAR_SMTP_URL: smtp://host:port, or
smtps://user:pass@host:port with TLS from the first byte) from
MASAR_SMTP_FROM — or, with no SMTP URL (the local stack), written as an
.eml file under $MASAR_DATA_DIR/mail/ (0600) for a newcomer to read.

The Message-ID is made of the delivery id: a message sent again after a crash
between the server's acceptance and the commit is recognisably the same one.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from masar.platform.crypto import create_private_file, private_dir
from services.network.texts import Rendered

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class MailOutcome:
    sent: bool
    error: str | None = None
    # A refusal that will not change by retrying (5xx).
    permanent: bool = False


@dataclass(frozen=True)
class SmtpTarget:
    tls: bool
    host: str
    port: int
    username: str = ""
    password: str = ""


def parse_smtp_url(url: str) -> SmtpTarget:
    """smtp://host[:port] (default 25) or smtps://[user:pass@]host[:port]
    (default 465); also smtp://user:pass@host:port (AUTH without TLS, for a
    relay on the same host). ValueError names what is wrong, never the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("the scheme must be smtp or smtps")
    if not parts.hostname:
        raise ValueError("a host is required")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is malformed") from None
    tls = parts.scheme == "smtps"
    return SmtpTarget(
        tls=tls,
        host=parts.hostname,
        port=port or (465 if tls else 25),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def message_id(delivery_id: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "masar.localhost"
    return f"<{delivery_id}@{domain}>"


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    to: str,
    delivery_id: str,
    notification_id: str,
    created_at: datetime,
) -> EmailMessage:
    """The same bytes at every attempt for a delivery: its headers come from
    the stored delivery and notification, not from the clock."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(created_at)
    message["Message-ID"] = message_id(delivery_id, sender)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Masar-Notification"] = notification_id
    message["X-Masar-Delivery"] = delivery_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    # After the bodies: setting content clears the Content-* headers.
    message["Content-Language"] = rendered.language
    return message


class Mailer(Protocol):
    def send(self, message: EmailMessage, *, delivery_id: str) -> MailOutcome:
        """Blocking: called in a worker thread."""
        ...


class SmtpMailer:
    def __init__(self, target: SmtpTarget, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.target = target
        self.timeout = timeout

    def send(self, message: EmailMessage, *, delivery_id: str) -> MailOutcome:
        target = self.target
        try:
            client: smtplib.SMTP
            if target.tls:
                client = smtplib.SMTP_SSL(
                    target.host,
                    target.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException):
            return MailOutcome(sent=False, error="smtp_connect")
        try:
            client.ehlo_or_helo_if_needed()
            if target.username:
                client.login(target.username, target.password)
            client.send_message(message)
        except smtplib.SMTPAuthenticationError:
            return MailOutcome(sent=False, error="smtp_auth")
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return MailOutcome(
                sent=False, error="smtp_refused", permanent=all(c >= 500 for c in codes)
            )
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            return MailOutcome(sent=False, error=f"smtp_{code}", permanent=code >= 500)
        except (OSError, smtplib.SMTPException):
            return MailOutcome(sent=False, error="smtp_error")
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
        return MailOutcome(sent=True)


class FileMailer:
    """The local stack's stand-in: one .eml file per delivery, written whole
    (0600, its folder 0700); the same delivery again rewrites nothing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: EmailMessage, delivery_id: str) -> Path:
        return self.directory / f"{delivery_id}.eml"

    def send(self, message: EmailMessage, *, delivery_id: str) -> MailOutcome:
        try:
            private_dir(self.directory)
            create_private_file(self.path_for(message, delivery_id), message.as_string())
        except OSError:
            return MailOutcome(sent=False, error="mail_file")
        return MailOutcome(sent=True)
