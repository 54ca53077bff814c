"""What a notification says, in the recipient's language (ar, fr, en), from
the gettext catalogs under services/network/locale/ (domain `masar`, shared
with the console): a subject, a plain text body, an HTML body and a short
text for SMS gateways.

Only ids, codes, the rung, the deadline and a link to the case in the
console (MASAR_CONSOLE_URL + /cases/<case_id>) are ever written: a recipient
signs in to see more.
"""

from __future__ import annotations

import functools
import gettext
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from babel.dates import format_datetime

from masar.contract.notify import NotifyKind
from services.network.audience import DIGEST_ZONE, DigestLine

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "masar"
LANGUAGES = ("ar", "fr", "en")


def _(message: str) -> str:
    """Marks a message for extraction (pybabel extract); translated at render time."""
    return message


SUBJECTS: dict[NotifyKind, str] = {
    NotifyKind.NEW_REFERRAL: _("New referral for your organisation (%(sector)s)"),
    NotifyKind.REMINDER: _("Reminder: a referral is waiting for your answer (%(sector)s)"),
    NotifyKind.ESCALATION: _("Escalation: a referral is unanswered in your region"),
    NotifyKind.REROUTED: _("A referral was rerouted in your region"),
    NotifyKind.REGIONAL: _("Regional escalation: a referral is still unanswered"),
    NotifyKind.EXPIRED: _("A referral expired unanswered"),
    NotifyKind.CLINICAL_WINDOW: _("A clinical window is about to close"),
    NotifyKind.REFERRAL_DECIDED: _("A referral was decided"),
    NotifyKind.TRANSFER_REQUESTED: _("A case transfer was requested"),
    NotifyKind.TRANSFER_ANSWERED: _("A case transfer was answered"),
    NotifyKind.CLOSURE_REQUESTED: _("A case closure awaits a coordinator"),
    NotifyKind.BREACH: _("A protection order was breached: the case's risk was raised"),
    NotifyKind.RESOLVED: _("An item was resolved"),
    NotifyKind.UNDELIVERED: _("Undelivered: a notification reached nobody"),
    NotifyKind.DIGEST: _("Your Masar digest for %(date)s"),
}
SECTORS: dict[str, str] = {
    "shelter": _("shelter"),
    "legal": _("legal aid"),
    "employment": _("employment"),
    "health": _("health"),
    "psychosocial": _("psychosocial support"),
}
LABELS: dict[str, str] = {
    "case_id": _("Case"),
    "referral_id": _("Referral"),
    "sector": _("Sector"),
    "provider_organisation_id": _("Provider organisation"),
    "holding_organisation_id": _("Holding organisation"),
    "transfer_id": _("Transfer"),
    "receiving_organisation_id": _("Receiving organisation"),
    "rung": _("Escalation rung"),
    "deadline": _("Deadline"),
    "origin": _("Notification that reached nobody"),
}
OPEN_CASE = _("Open the case in the console")
FOOTER = _("Sign in to Masar to see more. This message carries no personal data.")
ACKNOWLEDGE = _("Acknowledge it in your Masar inbox.")
OVERDUE = _("Overdue")
DUE_TODAY = _("Due today")
NOTHING_DUE = _("Nothing is due today.")


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def translator(language: str) -> Callable[[str], str]:
    return translations(language if language in LANGUAGES else "en").gettext


def format_deadline(value: datetime, language: str) -> str:
    """Morocco's local time, in the recipient's language."""
    local = format_datetime(value, "yyyy-MM-dd HH:mm", tzinfo=DIGEST_ZONE, locale=language)
    return f"{local} ({DIGEST_ZONE.key})"


@dataclass(frozen=True, kw_only=True)
class NoticeView:
    """The safe fields of a notification, as rendered (ids and codes only)."""

    notification_id: str
    kind: NotifyKind
    case_id: str
    region: str
    referral_id: str = ""
    sector: str = ""
    provider_organisation_id: str = ""
    holding_organisation_id: str = ""
    transfer_id: str = ""
    receiving_organisation_id: str = ""
    rung: int = 0
    deadline: datetime | None = None
    origin_id: str = ""
    digest_date: str = ""
    digest: list[DigestLine] = field(default_factory=list)


@dataclass(frozen=True)
class Rendered:
    language: str
    subject: str
    text: str
    html: str
    short: str  # one line for SMS gateways
    link: str


def case_link(console_url: str, case_id: str) -> str:
    return f"{console_url.rstrip('/')}/cases/{case_id}" if case_id else console_url


def render(view: NoticeView, language: str, console_url: str) -> Rendered:
    language = language if language in LANGUAGES else "en"
    t = translator(language)
    sector = t(SECTORS[view.sector]) if view.sector in SECTORS else view.sector
    subject = t(SUBJECTS[view.kind]) % {"sector": sector, "date": view.digest_date}
    link = case_link(console_url, view.case_id)
    rows: list[tuple[str, str]] = []
    for name in (
        "case_id",
        "referral_id",
        "sector",
        "provider_organisation_id",
        "holding_organisation_id",
        "transfer_id",
        "receiving_organisation_id",
    ):
        value = getattr(view, name)
        if value:
            rows.append((t(LABELS[name]), sector if name == "sector" else value))
    if view.rung:
        rows.append((t(LABELS["rung"]), str(view.rung)))
    if view.deadline is not None:
        rows.append((t(LABELS["deadline"]), format_deadline(view.deadline, language)))
    if view.origin_id:
        rows.append((t(LABELS["origin"]), view.origin_id))
    lines = [subject, ""]
    lines += [f"{label}: {value}" for label, value in rows]
    digest_lines, digest_html = _digest(view, t, console_url, language)
    lines += digest_lines
    if view.case_id:
        lines += ["", f"{t(OPEN_CASE)}: {link}"]
    lines += ["", t(ACKNOWLEDGE), t(FOOTER), ""]
    direction = "rtl" if language == "ar" else "ltr"
    table = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    anchor = (
        f'<p><a href="{html.escape(link)}">{html.escape(t(OPEN_CASE))}</a></p>'
        if view.case_id
        else ""
    )
    body = (
        f'<!DOCTYPE html><html lang="{language}" dir="{direction}"><head>'
        f'<meta charset="utf-8"><title>{html.escape(subject)}</title></head><body>'
        f"<h1>{html.escape(subject)}</h1><table>{table}</table>{digest_html}{anchor}"
        f"<p>{html.escape(t(ACKNOWLEDGE))}</p><p><small>{html.escape(t(FOOTER))}</small></p>"
        "</body></html>\n"
    )
    short = f"{subject} {link}" if view.case_id else subject
    return Rendered(language, subject, "\n".join(lines), body, short, link)


def _digest(
    view: NoticeView, t: Callable[[str], str], console_url: str, language: str
) -> tuple[list[str], str]:
    if view.kind is not NotifyKind.DIGEST:
        return [], ""
    if not view.digest:
        return [t(NOTHING_DUE)], f"<p>{html.escape(t(NOTHING_DUE))}</p>"
    text: list[str] = []
    parts: list[str] = []
    for overdue, heading in ((True, t(OVERDUE)), (False, t(DUE_TODAY))):
        lines = [line for line in view.digest if line.overdue is overdue]
        if not lines:
            continue
        text += ["", heading]
        items = []
        for line in lines:
            sector = t(SECTORS[line.sector]) if line.sector in SECTORS else line.sector
            what = " ".join(x for x in (line.case_id, line.referral_id, sector) if x)
            when = format_deadline(line.deadline, language)
            link = case_link(console_url, line.case_id)
            text.append(f"- {what} — {t(LABELS['deadline'])}: {when} — {link}")
            items.append(
                f'<li><a href="{html.escape(link)}">{html.escape(what)}</a> — '
                f"{html.escape(t(LABELS['deadline']))}: {html.escape(when)}</li>"
            )
        parts.append(f"<h2>{html.escape(heading)}</h2><ul>{''.join(items)}</ul>")
    return text, "".join(parts)
