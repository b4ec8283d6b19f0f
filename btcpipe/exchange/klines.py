"""Klines (candles) computed from raw trades, as Binance's ``/api/v3/klines`` returns them.

Pure and columnar. A ``KlineTable`` groups a tape's trades by interval once (the first trade index and
open time of each non-empty interval); a query picks a range of groups and aggregates only their trades.
Intervals without a trade have no kline (the exchange derives candles from trades; it has nothing to
carry forward from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import I64, TradeTape
from btcpipe.domain.time import US_PER_DAY, US_PER_SEC
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.pages import in_window

_MIN = 60 * US_PER_SEC
_HOUR = 60 * _MIN
FIXED_INTERVALS_US: dict[str, int] = {
    "1s": US_PER_SEC,
    "1m": _MIN,
    "3m": 3 * _MIN,
    "5m": 5 * _MIN,
    "15m": 15 * _MIN,
    "30m": 30 * _MIN,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": US_PER_DAY,
    "3d": 3 * US_PER_DAY,
}
# Weeks open on Monday 00:00 UTC; the epoch (1970-01-01) was a Thursday, so Mondays sit 4 days later.
_WEEK = 7 * US_PER_DAY
_WEEK_ORIGIN = 4 * US_PER_DAY
INTERVALS: tuple[str, ...] = (*FIXED_INTERVALS_US, "1w", "1M")


def open_times(ts_us: I64, interval: str) -> I64:
    """The open time (µs) of the interval that contains each timestamp."""
    if interval in FIXED_INTERVALS_US:
        step = FIXED_INTERVALS_US[interval]
        out: I64 = ts_us - ts_us % step
        return out
    if interval == "1w":
        shifted = ts_us - _WEEK_ORIGIN
        week: I64 = shifted - shifted % _WEEK + _WEEK_ORIGIN
        return week
    if interval == "1M":
        months = ts_us.astype("datetime64[us]").astype("datetime64[M]")
        month: I64 = months.astype("datetime64[us]").astype(np.int64)
        return month
    raise DataError(f"unknown kline interval {interval!r}")


def next_open_times(opens_us: I64, interval: str) -> I64:
    """The open time of the interval after each given open time (a kline closes 1 unit before it)."""
    if interval in FIXED_INTERVALS_US:
        fixed: I64 = opens_us + FIXED_INTERVALS_US[interval]
        return fixed
    if interval == "1w":
        weekly: I64 = opens_us + _WEEK
        return weekly
    if interval == "1M":
        months = opens_us.astype("datetime64[us]").astype("datetime64[M]") + np.timedelta64(1, "M")
        monthly: I64 = months.astype("datetime64[us]").astype(np.int64)
        return monthly
    raise DataError(f"unknown kline interval {interval!r}")


@dataclass(frozen=True, slots=True)
class KlineTable:
    """The non-empty intervals of a tape: open time and first trade index of each.

    ``offset_us`` is the time zone the intervals are aligned in (``timeZone``); open times stay UTC µs.
    """

    interval: str
    open_time: I64
    first_trade: I64
    offset_us: int = 0

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    def select(
        self, start_us: int | None, end_us: int | None, limit: int, visible_trades: int
    ) -> tuple[int, int]:
        """Kline indices ``[g0, g1)`` with ``start_us <= openTime <= end_us`` among visible trades: the first
        ``limit`` of them when a start is given, else the last ``limit``."""
        visible_groups = int(np.searchsorted(self.first_trade, visible_trades, side="left"))
        return in_window(self.open_time, start_us, end_us, limit, visible_groups)


def kline_table(ts_us: I64, interval: str, offset_us: int = 0) -> KlineTable:
    """Group trade times into klines; ``offset_us`` aligns the intervals in that time zone (UTC+offset)."""
    opens: I64 = open_times(ts_us + offset_us, interval) - offset_us
    if opens.shape[0] == 0:
        return KlineTable(interval, opens, np.zeros(0, dtype=np.int64), offset_us)
    starts = np.flatnonzero(np.concatenate(([True], opens[1:] != opens[:-1]))).astype(np.int64)
    return KlineTable(interval, opens[starts], starts, offset_us)


@dataclass(frozen=True, slots=True)
class KlineColumns:
    """Aggregated klines; prices and volumes are 8-decimal mantissas, times µs."""

    open_time: I64
    next_open_time: I64  # closeTime is 1 ms (or 1 µs) before it
    open: I64
    high: I64
    low: I64
    close: I64
    volume: I64
    quote_volume: I64
    n_trades: I64
    taker_buy_base: I64
    taker_buy_quote: I64

    def __len__(self) -> int:
        return int(self.open_time.shape[0])


def aggregate_klines(trades: TradeTape, table: KlineTable, g0: int, g1: int, visible_trades: int) -> KlineColumns:
    """Aggregate klines ``g0..g1-1`` of ``table`` from ``trades[:visible_trades]``."""
    if g1 <= g0:
        empty = np.zeros(0, dtype=np.int64)
        return KlineColumns(*([empty] * 11))
    first = int(table.first_trade[g0])
    end = int(table.first_trade[g1]) if g1 < len(table) else len(trades)
    end = min(end, visible_trades)
    rel = table.first_trade[g0:g1] - first
    price = trades.price[first:end]
    qty = trades.qty[first:end]
    quote = quote_mantissas(price, qty)
    taker_buy = ~trades.is_buyer_maker[first:end]
    bounds = np.append(rel, end - first)
    opens = table.open_time[g0:g1]
    return KlineColumns(
        open_time=opens,
        next_open_time=next_open_times(opens + table.offset_us, table.interval) - table.offset_us,
        open=price[rel],
        high=np.maximum.reduceat(price, rel),
        low=np.minimum.reduceat(price, rel),
        close=price[bounds[1:] - 1],
        volume=np.add.reduceat(qty, rel),
        quote_volume=np.add.reduceat(quote, rel),
        n_trades=np.diff(bounds),
        taker_buy_base=np.add.reduceat(np.where(taker_buy, qty, 0), rel),
        taker_buy_quote=np.add.reduceat(np.where(taker_buy, quote, 0), rel),
    )
