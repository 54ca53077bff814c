"""What the staff pages' forms are made of, shared by every sector
(console.pages.staff and console.pages.care): an enum's choices with their
labels, the person's choice checked against them, times typed in Morocco's
local time, idempotency keys, and the errors that name a field.

Nothing here calls a service: a form is checked, then turned into one RPC
(`Step`) that the page sends."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData

from console import i18n, labels
from console.web import text

N_ = i18n.N_

FORM_KEY = re.compile(r"^console-[0-9a-f]{24}$")

REQUIRED = N_("Choose one.")
UNKNOWN_CHOICE = N_("Choose one of the values offered.")
BAD_TIME = N_("Enter a date and a time.")
FUTURE_TIME = N_("This cannot be in the future.")
REFUSED_VALUE = N_("This value was refused.")


# --- choices: every enum shown to people -----------------------------------------------


@dataclass(frozen=True)
class Choice:
    """One value of an enum: its form code, its protobuf value, its label (a msgid)."""

    code: str
    value: int
    label: str


class Choices:
    """An enum's values in the order they are offered, with their labels."""

    def __init__(self, *items: Choice, unknown: str = labels.OTHER) -> None:
        self.items = items
        self.unknown = unknown
        self._by_code = {c.code: c for c in items}
        self._by_value = {c.value: c for c in items}

    def __iter__(self) -> Iterator[Choice]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def code(self, code: str) -> Choice | None:
        return self._by_code.get(code)

    def find(self, value: int) -> Choice | None:
        """The choice of a protobuf value, None when unset or unknown."""
        return self._by_value.get(value)

    def label(self, value: int) -> str:
        found = self._by_value.get(value)
        return found.label if found else self.unknown

    def code_for(self, value: int) -> str:
        found = self._by_value.get(value)
        return found.code if found else "unknown"

    def only(self, codes: Iterable[str]) -> Choices:
        wanted = set(codes)
        return Choices(*(c for c in self.items if c.code in wanted), unknown=self.unknown)

    def without(self, codes: Iterable[str]) -> Choices:
        unwanted = set(codes)
        return Choices(*(c for c in self.items if c.code not in unwanted), unknown=self.unknown)


def from_labels(table: Mapping[Any, str], enum: Any, prefix: str) -> Choices:
    """The console's shared labels (console.labels) of a protobuf enum, with
    the enum's names as form codes: the same words on every page."""
    return Choices(
        *(
            Choice(str(name).removeprefix(prefix).lower(), int(value), table[value])
            for name, value in enum.items()
            if value in table
        ),
        unknown=labels.OTHER,
    )


# --- checking a form -------------------------------------------------------------------


class FormErrors(Exception):
    """A form that cannot be sent as it is: field -> message (msgid)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__(", ".join(errors))
        self.errors = dict(errors)


def choose(form: FormData, name: str, choices: Choices) -> Choice:
    """The person's choice in `name`: required, one of `choices`."""
    code = text(form, name)
    if not code:
        raise FormErrors({name: REQUIRED})
    found = choices.code(code)
    if found is None:
        raise FormErrors({name: UNKNOWN_CHOICE})
    return found


def past_time(form: FormData, name: str, *, now: datetime | None = None) -> datetime:
    """A `datetime-local` field in Morocco's time, as UTC; empty means now."""
    moment = now or datetime.now(UTC)
    value = text(form, name)
    if not value:
        return moment
    parsed: datetime | None = None
    for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            parsed = datetime.strptime(value, pattern)
            break
        except ValueError:
            continue
    if parsed is None:
        raise FormErrors({name: BAD_TIME})
    at = parsed.replace(tzinfo=i18n.MOROCCO).astimezone(UTC)
    if at > moment + timedelta(minutes=1):
        raise FormErrors({name: FUTURE_TIME})
    return at


class Collected:
    """Checks a form field by field, keeping every error: a form comes back
    with all its problems named at once, never one at a time."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def choice(self, form: FormData, name: str, choices: Choices) -> Choice | None:
        try:
            return choose(form, name, choices)
        except FormErrors as problem:
            self.errors.update(problem.errors)
            return None

    def time(self, form: FormData, name: str) -> datetime | None:
        try:
            return past_time(form, name)
        except FormErrors as problem:
            self.errors.update(problem.errors)
            return None

    def check(self) -> None:
        if self.errors:
            raise FormErrors(self.errors)


# --- the RPC a form asks for -----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One RPC a form asks for, and what to say once it is done."""

    method: str
    message: Any
    done: str  # the flash (msgid)


def stamp(message: Any, name: str, at: datetime) -> None:
    """Set the Timestamp field `name` of `message` to `at` (UTC)."""
    getattr(message, name).FromDatetime(at.astimezone(UTC).replace(tzinfo=None))


def when_of(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, None when unset."""
    if not message.HasField(name):
        return None
    moment: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return moment


def new_key() -> str:
    """A form's idempotency key: sending the same form twice does it once."""
    return f"console-{secrets.token_hex(12)}"


def key_of(form: FormData) -> str:
    key = text(form, "key")
    return key if FORM_KEY.match(key) else new_key()
