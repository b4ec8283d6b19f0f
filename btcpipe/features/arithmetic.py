"""The one implementation of the schema-v1 feature arithmetic, pure numpy, shared by batch and stream.

Two stages:

1. Per-second bars (count, taker buy/sell base volume, notional, largest trade, last price and time).
   The batch builder calls ``aggregate_seconds`` for a whole day; the streaming engine keeps the same
   sums per second as trades arrive (``SecondAccumulator``). Both add a second's trades in arrival
   order starting from 0.0 — ``np.bincount`` with weights is a plain sequential loop — and IEEE
   addition and multiplication round the same in numpy and in Python, so a second's sums are the same
   floats either way.
2. ``compute_feature_columns``: a run of bars → feature rows, vectorised over rows. The batch builder
   passes a day's bars, the streaming engine the trailing ``WINDOW_BARS`` bars of its ring buffer and
   keeps the single row. Every window statistic is an explicit sequential sum over shifted slices (oldest
   bar first), never a cumsum difference, so each row's floats come out of the same operations in the
   same order whatever the length of the run: parity is exact, not approximate. Logs are taken with
   ``np.log`` on contiguous arrays in both paths (numpy's vector log need not round like libm's).

Bars the caller has no data for (before the history it was given) are all-NaN; a bar that is known but
had no trade has zero counts and volumes and carries the last price forward. NaN therefore marks
"cannot know yet" (warm-up) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.features.spec import BASE_FEATURE_NAMES, WINDOW_BARS, FeatureParams

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
_Arr = TypeVar("_Arr", bound=np.ndarray[Any, Any])

_MEDIAN_LO = WINDOW_BARS // 2 - 1
_MEDIAN_HI = WINDOW_BARS // 2
_LAST = WINDOW_BARS - 1  # index, within a row's look-back, of the row's own bar
_INT16_MAX = float(np.iinfo(np.int16).max)
_INT32_MAX = float(np.iinfo(np.int32).max)
_N_BASE = len(BASE_FEATURE_NAMES)
_FEW_ROWS = 64
_MEDIAN_BLOCK_ROWS = 8_192


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

    @classmethod
    def concatenate(cls, parts: tuple[SecondBars, ...] | list[SecondBars]) -> SecondBars:
        """Consecutive runs of bars as one run."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


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
    counts = np.bincount(sec_idx, minlength=n_bars)
    # One pass for both sides: bin 2s holds second s's taker buys, 2s + 1 its taker sells, each summed
    # in arrival order (the same floats as summing each side with zeros in place of the other side).
    side_idx = np.left_shift(sec_idx, 1)
    side_idx |= is_buyer_maker
    side_vol = np.bincount(side_idx, weights=qty, minlength=2 * n_bars).reshape(n_bars, 2)
    del side_idx
    notional = np.bincount(sec_idx, weights=price * qty, minlength=n_bars)
    max_qty = np.zeros(n_bars, dtype=np.float64)
    last_price = np.full(n_bars, np.nan)
    last_ts = np.full(n_bars, np.nan)
    if m:
        ends = np.cumsum(counts)
        nonempty = counts > 0
        max_qty[nonempty] = np.maximum.reduceat(qty, (ends - counts)[nonempty])
        last = ends[nonempty] - 1
        last_price[nonempty] = price[last]
        last_ts[nonempty] = ts_event[last]
    return SecondBars(
        counts.astype(np.float64), np.ascontiguousarray(side_vol[:, 0]), np.ascontiguousarray(side_vol[:, 1]),
        notional.astype(np.float64, copy=False), max_qty, last_price, last_ts,
    )


class SecondAccumulator:
    """One second's bar built trade by trade: the scalar twin of ``aggregate_seconds`` for one bar.

    The same sums in the same order from the same 0.0 (bit-identical for finite prices and quantities,
    see the module docstring); the streaming engine keeps one per second so adding a trade is O(1)
    Python work.
    """

    __slots__ = ("buy_vol", "last_price", "last_ts", "max_qty", "n", "notional", "sell_vol")

    def __init__(self) -> None:
        self.n = 0
        self.buy_vol = 0.0
        self.sell_vol = 0.0
        self.notional = 0.0
        self.max_qty = 0.0
        self.last_price = float("nan")
        self.last_ts = float("nan")

    def add(self, ts_event: int, price: float, qty: float, is_buyer_maker: bool) -> None:
        self.n += 1
        if is_buyer_maker:
            self.sell_vol += qty
        else:
            self.buy_vol += qty
        self.notional += price * qty
        if qty > self.max_qty or self.n == 1:
            self.max_qty = qty
        self.last_price = price
        self.last_ts = float(ts_event)


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
    bars are NaN in every field but ``ts_end``. ``price`` must be contiguous (it goes through ``np.log``).
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


def _lag(x: _Arr, k: int, n_rows: int) -> _Arr:
    """The value k bars before each row's own bar (row r's bar is ``r + WINDOW_BARS - 1``); leading axes kept."""
    start = _LAST - k
    return cast(_Arr, x[..., start : start + n_rows])


def _windows(x: _Arr, width: int, n_rows: int) -> _Arr:
    """Row r's ``width`` trailing values ``x[..., r : r + width]`` as a strided view, shape (..., n_rows, width).

    A cheap ``sliding_window_view`` (that one costs tens of µs of Python per call, which the streaming
    engine would pay every second).
    """
    step = x.strides[-1]
    shape = (*x.shape[:-1], n_rows, width)
    strides = (*x.strides[:-1], step, step)
    if x.shape[-1] < n_rows + width - 1:
        raise DataError(f"{x.shape[-1]} values cannot give {n_rows} windows of {width}")
    if x.flags.c_contiguous:
        return cast(_Arr, np.ndarray(shape, x.dtype, x, 0, strides))
    return cast(_Arr, np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False))


def _fold_oldest_first(windows: F64, ufunc: np.ufunc = np.add) -> F64:
    """Each window (last axis) folded strictly left to right, oldest bar first: a sum, or with
    ``np.maximum`` a maximum (NaN if any value is NaN: unknown stays unknown).

    Both ways below fold in exactly that order (``accumulate`` is sequential by definition, unlike
    ``sum``, whose pairwise order depends on length and layout), so they give the same floats: one
    ``accumulate`` call is cheapest for the streaming engine's single row, a loop over columns (fast
    contiguous calls) for a batch of many rows.
    """
    if windows.shape[-2] <= _FEW_ROWS:
        few: F64 = ufunc.accumulate(windows, axis=-1)[..., -1]
        return few
    acc: F64 = windows[..., 0].copy()
    for k in range(1, windows.shape[-1]):
        ufunc(acc, windows[..., k], out=acc)
    return acc


def _sum_sq_dev_oldest_first(windows: F64, mean: F64) -> F64:
    """``_fold_oldest_first((windows − mean)²)`` without the 2-D temporaries for a batch of many rows.

    Each term is the same subtraction then the same multiplication, added in the same order, so the
    floats equal the two-step form's.
    """
    if windows.shape[-2] <= _FEW_ROWS:
        dev = windows - mean[..., None]
        dev *= dev
        return _fold_oldest_first(dev)
    acc: F64 = windows[..., 0] - mean
    acc *= acc
    term = np.empty_like(acc)
    for k in range(1, windows.shape[-1]):
        np.subtract(windows[..., k], mean, out=term)
        term *= term
        acc += term
    return acc


def _imbalance(buy: F64, sell: F64) -> F64:
    total = buy + sell
    empty = total == 0.0
    out: F64 = (buy - sell) / np.where(empty, 1.0, total)
    out[empty] = 0.0
    return out


def _median_of_counts(n: F64, n_rows: int) -> F64:
    """Trailing ``WINDOW_BARS`` median of per-second counts; NaN where the window has an unknown bar.

    Counts are exact small integers, so the median is exact whatever the sorting algorithm: windows are
    sorted as the narrowest integer type that holds them (numpy's SIMD sort for 16/32-bit integers).
    """
    unknown = np.isnan(n)
    counts = np.where(unknown, 0.0, n)
    top = float(counts.max())
    dtype = np.int16 if top <= _INT16_MAX else np.int32 if top <= _INT32_MAX else np.int64
    narrow = counts.astype(dtype)
    out: F64 = np.empty(n_rows, dtype=np.float64)
    # Sorted a block of rows at a time: each block's sorted copy stays in cache instead of one
    # rows × window copy the size of the whole run.
    for r0 in range(0, n_rows, _MEDIAN_BLOCK_ROWS):
        r1 = min(n_rows, r0 + _MEDIAN_BLOCK_ROWS)
        ordered = np.sort(_windows(narrow[r0 : r1 + WINDOW_BARS - 1], WINDOW_BARS, r1 - r0), axis=-1)
        np.add(ordered[:, _MEDIAN_LO], ordered[:, _MEDIAN_HI], out=out[r0:r1], dtype=np.float64)
    out /= 2.0
    if unknown.any():
        # Unknown bars in each window, as an exact integer difference of running counts.
        seen = np.concatenate(([0], np.cumsum(unknown)))
        out[seen[WINDOW_BARS : WINDOW_BARS + n_rows] != seen[:n_rows]] = np.nan
    return out


def compute_feature_columns(bars: BarRun, params: FeatureParams) -> F64:
    """Feature values for every bar from index ``WINDOW_BARS − 1`` on: shape (n_features, n_rows).

    Row r is the bar ``r + WINDOW_BARS − 1``; the ``WINDOW_BARS − 1`` bars before it are its look-back.
    Columns are in ``params.names`` order.
    """
    n_rows = len(bars) - _LAST
    if n_rows <= 0:
        raise DataError(f"need at least {WINDOW_BARS} bars, got {len(bars)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return _compute(bars, params, n_rows)


def _compute(bars: BarRun, params: FeatureParams, n_rows: int) -> F64:
    out = np.empty((_N_BASE + params.with_spread, n_rows), dtype=np.float64)  # params.names order
    (ret_1s, ret_2s, ret_5s, vwap_dev, n_1s, n_5s, buy_1s, sell_1s, tvi_1s, buy_5s, sell_5s, tvi_5s, avg_size,
     vol_ret, burst, flag, since_ms, minus_1s, minus_5s) = out[:_N_BASE]
    price = bars.price
    logp = np.log(price)
    p0 = _lag(price, 0, n_rows)
    lp0 = _lag(logp, 0, n_rows)

    # Flow series stacked, so each step below is one call for all of them: row 0 the bar's own values,
    # row 1 the 5-bar sums (oldest first). Series: volume, notional, buy, sell, count.
    tail = bars.n.shape[0] - (_LAST - 4)  # the bars any row's 5-bar window can reach
    flows = np.concatenate((bars.buy_vol[-tail:] + bars.sell_vol[-tail:], bars.notional[-tail:],
                            bars.buy_vol[-tail:], bars.sell_vol[-tail:], bars.n[-tail:])).reshape(5, tail)
    own_and_5s = np.stack((flows[:, 4:], _fold_oldest_first(_windows(flows, 5, n_rows))))
    (vol0, _, buy0, sell0, n0), (vol5, notional5, buy5, sell5, n5) = own_and_5s
    np.log(p0 / (notional5 / vol5), out=vwap_dev)
    vwap_dev[vol5 == 0.0] = 0.0
    vwap_dev[np.isnan(p0)] = np.nan
    tvi_1s[:], tvi_5s[:] = _imbalance(own_and_5s[:, 2], own_and_5s[:, 3])
    no_trade = n0 == 0.0
    np.divide(vol0, np.where(no_trade, 1.0, n0), out=avg_size)
    avg_size[no_trade] = 0.0
    n_1s[:], buy_1s[:], sell_1s[:] = n0, buy0, sell0
    n_5s[:], buy_5s[:], sell_5s[:] = n5, buy5, sell5

    # Ten 1-s returns ending at the row, oldest first; sample std in two passes.
    rets = logp[1:] - logp[:-1]  # rets[i] is the return of bar i + 1
    ten = _windows(rets[_LAST - 10 :], 10, n_rows)
    mean = _fold_oldest_first(ten) / 10.0
    np.sqrt(_sum_sq_dev_oldest_first(ten, mean) / 9.0, out=vol_ret)
    np.subtract(lp0, _lag(logp, 1, n_rows), out=ret_1s)
    np.subtract(lp0, _lag(logp, 2, n_rows), out=ret_2s)
    np.subtract(lp0, _lag(logp, 5, n_rows), out=ret_5s)

    median_n = _median_of_counts(bars.n, n_rows)
    np.divide(n0, np.maximum(median_n, 1.0), out=burst)  # NaN median (warm-up) gives NaN

    max5 = _fold_oldest_first(_windows(bars.max_qty[_LAST - 4 :], 5, n_rows), np.maximum)
    np.greater(max5, params.trade_size_p95, out=flag)
    flag[np.isnan(max5)] = np.nan

    ts_end = _lag(bars.ts_end, 0, n_rows).astype(np.float64)
    np.divide(ts_end - _lag(bars.last_ts, 0, n_rows), 1000.0, out=since_ms)
    np.subtract(p0, _lag(price, 1, n_rows), out=minus_1s)
    np.subtract(p0, _lag(price, 5, n_rows), out=minus_5s)
    if params.with_spread:
        np.subtract(_lag(bars.ask, 0, n_rows), _lag(bars.bid, 0, n_rows), out=out[_N_BASE])
    return out
