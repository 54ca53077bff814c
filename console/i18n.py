"""The console's languages: gettext catalogs and Morocco's formats.

Catalogs live in `console/locale/<lang>/LC_MESSAGES/messages.po` and are
compiled in memory when the console starts (no build step). Arabic, French
and English are complete (a test reads them); Tamazight (Tifinagh) covers the
navigation and the statuses, marked as partial, and falls back to French.

Times are stored in UTC and shown in Morocco's local time
(`Africa/Casablanca`, whose offset changes around Ramadan); dates and numbers
follow `ar-MA` / `fr-MA` (Latin digits, as used in Morocco)."""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
MOROCCO = ZoneInfo("Africa/Casablanca")


@dataclass(frozen=True)
class Language:
    code: str  # the page's `lang`, the catalog's folder
    name: str  # in its own script, for the language switch
    babel: str  # the locale dates and numbers are formatted for
    rtl: bool = False
    partial: bool = False  # navigation and statuses only


LANGUAGES: dict[str, Language] = {
    "ar": Language("ar", "العربية", "ar_MA", rtl=True),
    "fr": Language("fr", "Français", "fr_MA"),
    "en": Language("en", "English", "en_GB"),
    "zgh": Language("zgh", "ⵜⴰⵎⴰⵣⵉⵖⵜ", "zgh_MA", partial=True),
}
COMPLETE = ("ar", "fr", "en")
DEFAULT_LANGUAGE = "fr"
# A partial catalog falls back to this one for what it lacks.
FALLBACK = {"zgh": "fr"}


def language(code: str | None) -> Language:
    return LANGUAGES.get(code or "", LANGUAGES[DEFAULT_LANGUAGE])


def catalog_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(code: str) -> gettext.NullTranslations:
    """The compiled catalog of `code` (with its fallback), read once."""
    path = catalog_path(code)
    if not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as fp:
        catalog = read_po(fp, locale=LANGUAGES[code].babel if code in LANGUAGES else None)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    compiled = gettext.GNUTranslations(buffer)
    if code in FALLBACK:
        compiled.add_fallback(translations(FALLBACK[code]))
    return compiled


Gettext = Callable[..., str]


def gettext_for(code: str) -> Gettext:
    """`_("text %(name)s", name=...)`: the translation, then `%`-formatted."""
    found = translations(language(code).code)

    def _(message: str, **values: Any) -> str:
        text = found.gettext(message)
        return text % values if values else text

    return _


def N_(message: str) -> str:
    """Marks a message for extraction where it is translated later."""
    return message


def local_time(moment: datetime | None, code: str, *, form: str = "medium") -> str:
    """`moment` in Morocco's local time, formatted for the language."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(format_datetime(moment, form, tzinfo=MOROCCO, locale=language(code).babel))


def time_left(due: datetime | None, code: str, *, now: datetime | None = None) -> str:
    """How long until `due` ("in 3 hours", "2 days ago"), in the language."""
    if due is None:
        return ""
    delta = due - (now or datetime.now(UTC))
    return str(
        format_timedelta(delta, add_direction=True, threshold=1.0, locale=language(code).babel)
    )


def number(value: float, code: str) -> str:
    return str(format_decimal(value, locale=language(code).babel))


def best_match(accept_language: str | None) -> str:
    """The first language of the browser's Accept-Language that we speak."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        for code in LANGUAGES:
            if tag == code or tag.startswith(code + "-"):
                return code
    return DEFAULT_LANGUAGE
