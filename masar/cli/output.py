"""Output for people and for programs, and the CLI's one error type."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


class CliError(Exception):
    """A user-facing error: printed as one line on stderr."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    return value


class Output:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode

    def document(self, doc: Any) -> None:
        """The one JSON document of a --json run."""
        print(json.dumps(to_jsonable(doc), ensure_ascii=False, indent=2))

    def line(self, text: str = "") -> None:
        """Human output; silent in --json mode (stdout holds one document)."""
        if not self.json_mode:
            print(text)

    def note(self, text: str) -> None:
        """Progress for people; goes to stderr in --json mode."""
        if self.json_mode:
            print(text, file=sys.stderr)
        else:
            print(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.json_mode:
            return
        cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
        for row in cells:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_duration(text: str, *, flag: str) -> int:
    """ "90s", "15m", "2h", "7d" -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise CliError(f"{flag} must be a positive duration like 90s, 15m, 2h or 7d", exit_code=2)
    return int(text[:-1]) * units[text[-1]]
