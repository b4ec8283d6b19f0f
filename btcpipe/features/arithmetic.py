"""The one implementation of the schema-v1 feature arithmetic, pure numpy, shared by batch and stream.

Two stages:

1. ``aggregate_seconds``: raw trades → per-second bars (count, taker buy/sell base volume, notional,
   largest trade, last price and time). The batch builder calls it once for a whole day, the streaming
   engine once per closed second; sums are ``np.bincount`` with weights, which adds in input order, so a
   second's sums are the same floats either way.
2. ``compute_feature_columns``: a run of bars → feature rows, vectorised over rows. The batch builder
   passes a day's bars, the streaming engine the trailing ``WINDOW_BARS`` bars of its ring buffer and
   keeps the single row. Every window statistic is an explicit sequential sum over shifted slices (oldest
   bar first), never a cumsum difference, so each row's floats come out of the same operations in the
   same order whatever the length of the run: parity is exact, not approximate.

Bars the caller has no data for (before the history it was given) are all-NaN; a bar that is known but
had no trade has zero counts and volumes and carries the last price forward. NaN therefore marks
"cannot know yet" (warm-up) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from btcpipe.domain.errors import DataError
from btcpipe.features.spec import WINDOW_BARS, FeatureParams

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_MEDIAN_LO = WINDOW_BARS // 2 - 1
_MEDIAN_HI = WINDOW_BARS // 2


@dataclass(frozen=True, slots=True)
class SecondBars:
    """Per-second trade aggregates; ``last_price``/``last_ts`` are NaN for a second without trades."""

    n: F64
    buy_vol: F64
    sell_vol: F64
    notional: F64
    max_qty: F64
    last_price: F64
    last_ts: F64

    def __len__(self) -> int:
        return int(self.n.shape[0])


def aggregate_seconds(
    sec_idx: I64, ts_event: I64, price: F64, qty: F64, is_buyer_maker: Bools, *, n_bars: int
) -> SecondBars:
    """Aggregate trades (in trade-id order) into ``n_bars`` one-second bars.

    ``sec_idx[i]`` is the bar of trade i and must be non-decreasing within ``[0, n_bars)``. "Buy" is the
    taker buying (``is_buyer_maker`` false), as on Binance.
    """
    m = int(sec_idx.shape[0])
    if m and (int(sec_idx[0]) < 0 or int(sec_idx[-1]) >= n_bars or bool(np.any(sec_idx[1:] < sec_idx[:-1]))):
        raise DataError("trades are not in time order within the bars being aggregated")
    n = np.bincount(sec_idx, minlength=n_bars).astype(np.float64)
    buy_w = np.where(is_buyer_maker, 0.0, qty)
    sell_w = np.where(is_buyer_maker, qty, 0.0)
    buy = np.bincount(sec_idx, weights=buy_w, minlength=n_bars).astype(np.float64, copy=False)
    sell = np.bincount(sec_idx, weights=sell_w, minlength=n_bars).astype(np.float64, copy=False)
    notional = np.bincount(sec_idx, weights=price * qty, minlength=n_bars).astype(np.float64, copy=False)
    max_qty = np.zeros(n_bars, dtype=np.float64)
    last_price = np.full(n_bars, np.nan)
    last_ts = np.full(n_bars, np.nan)
    if m:
        bars = np.arange(n_bars, dtype=np.int64)
        starts = np.searchsorted(sec_idx, bars, side="left")
        ends = np.searchsorted(sec_idx, bars, side="right")
        nonempty = ends > starts
        max_qty[nonempty] = np.maximum.reduceat(qty, starts[nonempty])
        last = ends[nonempty] - 1
        last_price[nonempty] = price[last]
        last_ts[nonempty] = ts_event[last].astype(np.float64)
    return SecondBars(n, buy, sell, notional, max_qty, last_price, last_ts)


def carry_forward(values: F64, seed: float) -> F64:
    """Each NaN replaced by the last non-NaN before it (``seed`` before the first)."""
    idx = np.where(np.isnan(values), -1, np.arange(values.shape[0]))
    np.maximum.accumulate(idx, out=idx)
    out: F64 = np.concatenate((np.array([seed], dtype=np.float64), values))[idx + 1]
    return out


@dataclass(frozen=True, slots=True)
class BarRun:
    """Consecutive one-second bars as stage 2 reads them (all float64, one value per bar).

    ``ts_end`` is each bar's end (µs) — the ``ts_sec`` of the row it completes. ``price``/``last_ts``
    are carried forward from the last trade, ``bid``/``ask`` are as of just before ``ts_end``. Unknown
    bars are NaN in every field but ``ts_end``.
    """

    ts_end: I64
    n: F64
    buy_vol: F64
    sell_vol: F64
    notional: F64
    max_qty: F64
    price: F64
    last_ts: F64
    bid: F64
    ask: F64

    def __len__(self) -> int:
        return int(self.ts_end.shape[0])


def _lag(x: F64, k: int, n_rows: int) -> F64:
    """The value k bars before each row's own bar (row r's bar is ``r + WINDOW_BARS - 1``)."""
    start = WINDOW_BARS - 1 - k
    return x[start : start + n_rows]


def _window_sum(x: F64, width: int, n_rows: int) -> F64:
    acc = _lag(x, width - 1, n_rows).copy()
    for k in range(width - 2, -1, -1):
        acc += _lag(x, k, n_rows)
    return acc


def _window_max(x: F64, width: int, n_rows: int) -> F64:
    acc = _lag(x, width - 1, n_rows).copy()
    for k in range(width - 2, -1, -1):
        np.maximum(acc, _lag(x, k, n_rows), out=acc)  # NaN propagates: unknown stays unknown
    return acc


def _imbalance(buy: F64, sell: F64) -> F64:
    total = buy + sell
    out = (buy - sell) / np.where(total == 0.0, 1.0, total)
    out[total == 0.0] = 0.0
    return out


def _median_of_counts(n: F64, n_rows: int) -> F64:
    """Trailing ``WINDOW_BARS`` median of per-second counts; NaN where the window has an unknown bar.

    Counts are exact small integers, so the median is exact whatever the sort: the cheapest integer
    type that holds them is sorted (radix for int16).
    """
    unknown = np.isnan(n)
    out = np.full(n_rows, np.nan)
    rows_ok = ~_window_max(unknown.astype(np.float64), WINDOW_BARS, n_rows).astype(np.bool_)
    if not rows_ok.any():
        return out
    top = float(np.nanmax(n)) if (~unknown).any() else 0.0
    dtype = np.int16 if top < np.iinfo(np.int16).max else np.int64
    counts = np.where(unknown, 0, n).astype(dtype)
    windows = sliding_window_view(counts, WINDOW_BARS)[:n_rows][rows_ok]
    ordered = np.sort(windows, axis=-1, kind="stable")
    out[rows_ok] = (ordered[:, _MEDIAN_LO].astype(np.float64) + ordered[:, _MEDIAN_HI].astype(np.float64)) / 2.0
    return out


def compute_feature_columns(bars: BarRun, params: FeatureParams) -> F64:
    """Feature values for every bar from index ``WINDOW_BARS − 1`` on: shape (n_features, n_rows).

    Row r is the bar ``r + WINDOW_BARS − 1``; the ``WINDOW_BARS − 1`` bars before it are its look-back.
    Columns are in ``params.names`` order.
    """
    n_rows = len(bars) - (WINDOW_BARS - 1)
    if n_rows <= 0:
        raise ValueError(f"need at least {WINDOW_BARS} bars, got {len(bars)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return _compute(bars, params, n_rows)


def _compute(bars: BarRun, params: FeatureParams, n_rows: int) -> F64:
    out = np.empty((len(params.names), n_rows), dtype=np.float64)
    logp = np.log(bars.price)
    p0 = _lag(bars.price, 0, n_rows)
    lp0 = _lag(logp, 0, n_rows)
    n0 = _lag(bars.n, 0, n_rows)
    buy0 = _lag(bars.buy_vol, 0, n_rows)
    sell0 = _lag(bars.sell_vol, 0, n_rows)

    vol = bars.buy_vol + bars.sell_vol
    vol5 = _window_sum(vol, 5, n_rows)
    notional5 = _window_sum(bars.notional, 5, n_rows)
    vwap_dev = np.log(p0 / (notional5 / vol5))
    vwap_dev[vol5 == 0.0] = 0.0
    vwap_dev[np.isnan(p0)] = np.nan

    buy5 = _window_sum(bars.buy_vol, 5, n_rows)
    sell5 = _window_sum(bars.sell_vol, 5, n_rows)
    vol0 = buy0 + sell0
    avg_size = vol0 / np.where(n0 == 0.0, 1.0, n0)
    avg_size[n0 == 0.0] = 0.0

    # Ten 1-s returns ending at the row, oldest first; sample std in two passes.
    rets = [_lag(logp, k, n_rows) - _lag(logp, k + 1, n_rows) for k in range(9, -1, -1)]
    mean = rets[0].copy()
    for r in rets[1:]:
        mean += r
    mean /= 10.0
    ss = (rets[0] - mean) * (rets[0] - mean)
    for r in rets[1:]:
        d = r - mean
        ss += d * d
    vol_ret = np.sqrt(ss / 9.0)

    median_n = _median_of_counts(bars.n, n_rows)
    burst = n0 / np.maximum(median_n, 1.0)
    burst[np.isnan(median_n)] = np.nan

    max5 = _window_max(bars.max_qty, 5, n_rows)
    flag = (max5 > params.trade_size_p95).astype(np.float64)
    flag[np.isnan(max5)] = np.nan

    ts_end = _lag(bars.ts_end.astype(np.float64), 0, n_rows)

    columns = (
        lp0 - _lag(logp, 1, n_rows),  # ret_1s
        lp0 - _lag(logp, 2, n_rows),  # ret_2s
        lp0 - _lag(logp, 5, n_rows),  # ret_5s
        vwap_dev,
        n0,
        _window_sum(bars.n, 5, n_rows),
        buy0,
        sell0,
        _imbalance(buy0, sell0),
        buy5,
        sell5,
        _imbalance(buy5, sell5),
        avg_size,
        vol_ret,
        burst,
        flag,
        (ts_end - _lag(bars.last_ts, 0, n_rows)) / 1000.0,
        p0 - _lag(bars.price, 1, n_rows),
        p0 - _lag(bars.price, 5, n_rows),
    )
    for j, col in enumerate(columns):
        out[j] = col
    if params.with_spread:
        out[len(columns)] = _lag(bars.ask, 0, n_rows) - _lag(bars.bid, 0, n_rows)
    return out
