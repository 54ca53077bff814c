"""The console's gettext catalogs: extract every message from console/
(`_()` in templates, `_()` / `N_()` in Python) and bring each language's
catalog (console/locale/<lang>/LC_MESSAGES/messages.po) up to date: new
messages are added untranslated (English gets the message itself), messages
no longer used are dropped, translations kept.

    python scripts/console_messages.py          # update the catalogs
    python scripts/console_messages.py --check  # exit 1 if any is out of date

tests/console/test_catalogs.py reads the same extraction: the Arabic,
French and English catalogs must translate every message; Tamazight the
navigation and the statuses (it is marked partial)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
LOCALES = CONSOLE / "locale"
LANGUAGES = {"ar": "ar_MA", "fr": "fr_MA", "en": "en", "zgh": "zgh_MA"}
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "N_": None}


def extracted() -> dict[str, list[tuple[str, int]]]:
    """Every message id of the console, with where it is used."""
    found: dict[str, list[tuple[str, int]]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        CONSOLE, method_map=METHODS, options_map=OPTIONS, keywords=KEYWORDS
    ):
        if isinstance(message, tuple):  # plural forms are not used
            message = message[0]
        if message:
            found.setdefault(message, []).append((filename, lineno))
    return found


def path_of(code: str) -> Path:
    return LOCALES / code / "LC_MESSAGES" / "messages.po"


def updated(code: str, messages: dict[str, list[tuple[str, int]]]) -> bytes:
    path = path_of(code)
    old: Catalog | None = None
    if path.is_file():
        with path.open("rb") as fp:
            old = read_po(fp, locale=LANGUAGES[code])
    catalog = Catalog(
        locale=LANGUAGES[code],
        project="Masar console",
        copyright_holder="the Masar project",
        fuzzy=False,
        charset="utf-8",
    )
    for msgid in sorted(messages):
        previous = old.get(msgid) if old is not None else None
        text = previous.string if previous is not None and previous.string else ""
        if code == "en" and not text:
            text = msgid
        catalog.add(msgid, text, locations=sorted(set(messages[msgid]))[:3])
    out = io.BytesIO()
    write_po(out, catalog, width=100, omit_header=False, sort_output=True, no_location=True)
    # The header's creation date changes every run: keep the file stable.
    lines = [
        line
        for line in out.getvalue().split(b"\n")
        if not line.startswith((b'"POT-Creation-Date', b'"PO-Revision-Date', b'"Generated-By'))
    ]
    return b"\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    messages = extracted()
    stale: list[str] = []
    for code in LANGUAGES:
        fresh = updated(code, messages)
        path = path_of(code)
        if path.is_file() and path.read_bytes() == fresh:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fresh)
        print(f"updated {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/console_messages.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
