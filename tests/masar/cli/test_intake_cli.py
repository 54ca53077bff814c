"""`masar case open --incident-at` as people give it: any ISO 8601 time,
read as Morocco's local time (Africa/Casablanca, checked with zoneinfo rather
than assumed) when it has no offset, kept to the hour it fell in, and the
officer told when minutes were dropped. tests/integration/test_cli.py opens a
case with such a time on a running stack and reads the hour back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from masar.cli.intake import incident_time
from masar.cli.output import CliError

CASABLANCA = ZoneInfo("Africa/Casablanca")


NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def test_an_incident_time_with_minutes_is_kept_to_the_hour() -> None:
    kept = incident_time("2026-11-28T13:21:55Z", now=NOW)
    assert (kept.at, kept.floored, kept.shown) == (
        datetime(2026, 11, 28, 13, tzinfo=UTC),
        True,
        "13:00",
    )
    on_the_hour = incident_time("2026-11-28T13:00:00+00:00", now=NOW)
    assert (on_the_hour.at, on_the_hour.floored) == (datetime(2026, 11, 28, 13, tzinfo=UTC), False)
    # An offset given is kept, and the hour shown in it.
    offset = incident_time("2026-11-28T14:21+01:00", now=NOW)
    assert (offset.at, offset.shown) == (datetime(2026, 11, 28, 13, tzinfo=UTC), "14:00")
    # None given: the current hour.
    assert incident_time(None, now=NOW + timedelta(minutes=7)).at == NOW


@pytest.mark.parametrize(
    ("given", "local"),
    [
        # During Ramadan 2026 Morocco is on UTC+0; otherwise UTC+1.
        ("2026-03-01T10:30", datetime(2026, 3, 1, 10, tzinfo=CASABLANCA)),
        ("2026-11-28T14:21:55", datetime(2026, 11, 28, 14, tzinfo=CASABLANCA)),
    ],
)
def test_a_time_without_an_offset_is_moroccos_local_time(given: str, local: datetime) -> None:
    kept = incident_time(given, now=NOW)
    assert kept.at == local.astimezone(UTC)
    assert kept.at.tzinfo == UTC and kept.floored and kept.shown == local.strftime("%H:%M")


def test_the_two_offsets_of_2026_as_zoneinfo_has_them() -> None:
    """What the parametrised cases above rely on, checked rather than assumed."""
    assert datetime(2026, 3, 1, 10, tzinfo=CASABLANCA).utcoffset() == timedelta(0)
    assert datetime(2026, 11, 28, 14, tzinfo=CASABLANCA).utcoffset() == timedelta(hours=1)
    assert incident_time("2026-03-01T10:30", now=NOW).at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert incident_time("2026-11-28T14:21:55", now=NOW).at == datetime(
        2026, 11, 28, 13, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("yesterday evening", "--incident-at must be ISO 8601"),
        ("2026-12-01T16:10Z", "--incident-at must not be in the future"),
    ],
)
def test_an_incident_time_that_cannot_be_kept(given: str, says: str) -> None:
    with pytest.raises(CliError) as err:
        incident_time(given, now=NOW)
    assert err.value.exit_code == 2 and says in str(err.value)
