"""The console's gettext catalogs: up to date with the code, complete for
Arabic, French and English, and Tamazight covering the navigation and the
statuses (it is marked partial); placeholders kept in every translation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from console import i18n, labels, web
from scripts.console_messages import LANGUAGES, extracted, path_of, updated

PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


@pytest.fixture(scope="module")
def messages() -> dict[str, list[tuple[str, int]]]:
    return extracted()


def catalog(code: str) -> Catalog:
    with path_of(code).open("rb") as fp:
        return read_po(fp, locale=LANGUAGES[code])


def translated(found: Catalog, msgid: str) -> bool:
    message = found.get(msgid)
    return message is not None and bool(message.string)


def test_the_catalogs_are_up_to_date_with_the_code(messages) -> None:
    for code in LANGUAGES:
        assert path_of(code).read_bytes() == updated(code, messages), (
            f"{code}: run python scripts/console_messages.py"
        )


@pytest.mark.parametrize("code", i18n.COMPLETE)
def test_arabic_french_and_english_translate_every_message(code: str, messages) -> None:
    found = catalog(code)
    missing = [m for m in messages if not translated(found, m)]
    assert not missing, f"{code}: {len(missing)} untranslated, e.g. {missing[:5]}"
    fuzzy = [m.id for m in found if m.id and m.fuzzy]
    assert not fuzzy, f"{code}: fuzzy entries {fuzzy[:5]}"
    for message in found:
        if message.id and message.string:
            assert set(PLACEHOLDER.findall(str(message.id))) == set(
                PLACEHOLDER.findall(str(message.string))
            ), f"{code}: placeholders differ in {message.id!r}"


def test_tamazight_covers_the_navigation_and_the_statuses() -> None:
    found = catalog("zgh")
    needed = [item.label for item in web.NAV]
    for table in (labels.STAGES, labels.REFERRAL_STATUSES, labels.RISKS):
        needed += list(table.values())
    missing = [m for m in needed if not translated(found, m)]
    assert not missing, f"zgh: {missing}"
    assert i18n.LANGUAGES["zgh"].partial


def test_every_label_is_a_message(messages) -> None:
    tables: list[Mapping[Any, str]] = [
        labels.SECTORS,
        labels.RISKS,
        labels.STAGES,
        labels.REFERRAL_STATUSES,
        labels.ESCALATION_LEVELS,
        labels.CLINICAL_ITEMS,
        labels.CLINICAL_STATUSES,
        labels.TRANSFER_STATUSES,
        labels.DECLINE_REASONS,
        labels.NOTIFICATION_KINDS,
        labels.TIMELINE,
        labels.CARE_SERVICES,
        labels.PEP_OUTCOMES,
        labels.CONTRACEPTION_OUTCOMES,
        labels.FORENSIC_OUTCOMES,
        labels.FOLLOW_UP_VISITS,
        labels.CARE_OUTCOMES,
        labels.SUPPORT_KINDS,
        labels.ATTENDANCE,
        labels.SUPPORT_GOALS,
        labels.GOAL_PROGRESS,
        labels.SUPPORT_OUTCOMES,
    ]
    for table in tables:
        for label in table.values():
            assert label in messages
