"""Binance's paging rules as index ranges over a sorted column (ids or times). Pure.

Every list endpoint of the local exchange (trades, aggTrades, klines) answers one of three ways: the most
recent ``limit`` rows, ``limit`` rows from an id on, or the rows of a time window — the first ``limit``
from its start when a start is given, else the last ``limit`` up to its end. ``visible`` is how many rows
(from the first) exist at the exchange's now; nothing at or past it is ever returned.
"""

from __future__ import annotations

import numpy as np

from btcpipe.domain.tape import I64


def most_recent(limit: int, visible: int) -> tuple[int, int]:
    return max(0, visible - limit), visible


def from_key(keys: I64, key: int, limit: int, visible: int) -> tuple[int, int]:
    """``limit`` rows from the first whose key is ``>= key`` (inclusive)."""
    start = min(int(np.searchsorted(keys, key, side="left")), visible)
    return start, min(start + limit, visible)


def in_window(keys: I64, start: int | None, end: int | None, limit: int, visible: int) -> tuple[int, int]:
    """Rows with ``start <= key <= end`` (either bound may be open): the first ``limit`` from the start when
    a start is given, else the last ``limit`` up to the end."""
    lo = 0 if start is None else int(np.searchsorted(keys, start, side="left"))
    hi = visible if end is None else int(np.searchsorted(keys, end, side="right"))
    hi = min(hi, visible)
    lo = min(lo, hi)
    if start is None:
        return max(lo, hi - limit), hi
    return lo, min(lo + limit, hi)


def half_open(keys: I64, start: int, end: int) -> tuple[int, int]:
    """Rows with ``start <= key < end``, whatever the exchange's now (a day's dump, built after the day)."""
    return int(np.searchsorted(keys, start, side="left")), int(np.searchsorted(keys, end, side="left"))
