"""Time rules: every timestamp is int64 microseconds since the epoch, UTC, exchange time.

REST and dump values in milliseconds are converted on the way in; nothing here reads the wall clock
(``Clock`` is a port; the system clock lives with the adapters).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

US_PER_MS = 1_000
US_PER_SEC = 1_000_000
US_PER_DAY = 86_400 * US_PER_SEC

# Binance spot dumps switched from ms to µs on this day; the first trade of 2025-01-01 is 1735689600010866.
DUMPS_MICROSECONDS_FROM = dt.date(2025, 1, 1)
# Any epoch value below this is taken as milliseconds: 1e14 µs is 1973, 1e14 ms is year 5138.
_MS_US_THRESHOLD = 100_000_000_000_000


class Clock(Protocol):
    """Source of 'now' in µs. Services take one so tests can drive time."""

    def now_us(self) -> int: ...


def to_us(value: int) -> int:
    """Normalise an epoch timestamp that is either in ms or in µs to µs, by its magnitude."""
    return value * US_PER_MS if value < _MS_US_THRESHOLD else value


def is_microseconds(value: int) -> bool:
    return value >= _MS_US_THRESHOLD


def floor_sec(ts_us: int) -> int:
    """The start of the second containing ``ts_us``, in µs."""
    return ts_us - ts_us % US_PER_SEC


def ceil_sec(ts_us: int) -> int:
    return -(-ts_us // US_PER_SEC) * US_PER_SEC


def day_start_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * US_PER_SEC


def day_of(ts_us: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_us // US_PER_SEC, tz=dt.UTC).date()


def iso(ts_us: int) -> str:
    """ISO-8601 UTC with µs, for messages and reports."""
    return dt.datetime.fromtimestamp(ts_us / US_PER_SEC, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """Parse a user-given time (ISO date or datetime, or epoch ms/µs digits) to µs UTC."""
    text = text.strip()
    if text.isdigit():
        return to_us(int(text))
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp()) * US_PER_SEC + value.microsecond
