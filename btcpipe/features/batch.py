"""Batch feature builder: a whole span of trades to feature rows at once, vectorised.

It prepares the same ``BarRun`` the streaming engine keeps in its ring buffer — per-second bars from
``aggregate_seconds``, prices and bid/ask carried forward, bars before the known history all-NaN — and
hands it to ``compute_feature_columns``. Rows are stamped ``ts_sec = t`` for the whole seconds
``start_us <= t < end_us``; row t describes ``[t − 1 s, t)``.

``history_start_us`` is where the caller's trades become complete: bars from there on are known (a
second without trades there is a real quiet second), bars before it are unknown. Trades before it only
seed the carried-forward last price and time. Building a day with ``history_start_us`` one window before
midnight and the previous day's trades gives exactly the rows of building both days together.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.arithmetic import (
    BarRun,
    SecondBars,
    aggregate_seconds,
    carry_forward,
    compute_feature_columns,
)
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.threads import run_beside

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_MIN_SPLIT_BARS = 1_800  # below half an hour of bars per half, a thread hand-off costs more than it saves


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """Feature rows: ``ts_sec`` (µs, whole seconds) and ``columns`` shaped (n_features, n_rows)."""

    ts_sec: I64
    columns: F64
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ts_sec.shape[0])

    def column(self, name: str) -> F64:
        col: F64 = self.columns[self.names.index(name)]
        return col

    def row(self, i: int) -> F64:
        return self.columns[:, i].copy()

    def take(self, mask_or_slice: npt.NDArray[np.bool_] | slice) -> FeatureFrame:
        return FeatureFrame(self.ts_sec[mask_or_slice], self.columns[:, mask_or_slice], self.names)


def _check_second(name: str, value: int) -> None:
    if value % US_PER_SEC:
        raise ConfigError(f"{name} must be a whole second in µs, got {value}")


def best_bid_ask_asof_before(best_bid_ask: BestBidAskArrays, ts: I64) -> tuple[F64, F64]:
    """Bid and ask of the last update strictly before each ``ts`` (NaN before the first)."""
    idx = np.searchsorted(best_bid_ask.ts_event, ts, side="left") - 1
    ok = idx >= 0
    bid = np.full(ts.shape[0], np.nan)
    ask = np.full(ts.shape[0], np.nan)
    bid[ok] = best_bid_ask.bid[idx[ok]]
    ask[ok] = best_bid_ask.ask[idx[ok]]
    return bid, ask


def _aggregate_bars(trades: TradeArrays, first_us: int, n_bars: int, executor: Executor | None) -> SecondBars:
    """``aggregate_seconds`` of the ``n_bars`` one-second bars from ``first_us``.

    Each bar's sums involve only its own trades, so the bars can be aggregated in two halves: with an
    executor the first half runs on it while this thread does the second (bincount releases the GIL).
    """

    def bars(b0: int, b1: int) -> SecondBars:
        start = first_us + b0 * US_PER_SEC
        lo, hi = (int(i) for i in np.searchsorted(trades.ts_event, [start, first_us + b1 * US_PER_SEC]))
        ts = trades.ts_event[lo:hi]
        sec_idx = ts - start
        sec_idx //= US_PER_SEC
        return aggregate_seconds(
            sec_idx, ts, trades.price[lo:hi], trades.qty[lo:hi], trades.is_buyer_maker[lo:hi], n_bars=b1 - b0
        )

    if executor is None or n_bars < 2 * _MIN_SPLIT_BARS:
        return bars(0, n_bars)
    half = n_bars // 2
    first = run_beside(executor, bars, 0, half)
    second = bars(half, n_bars)
    return SecondBars.concatenate((first(), second))


def bar_run(
    trades: TradeArrays,
    *,
    first_bar_us: int,
    n_bars: int,
    history_start_us: int,
    best_bid_ask: BestBidAskArrays | None = None,
    executor: Executor | None = None,
) -> BarRun:
    """``n_bars`` consecutive one-second bars starting at ``first_bar_us``, as stage 2 reads them."""
    ends = first_bar_us + US_PER_SEC * np.arange(1, n_bars + 1, dtype=np.int64)
    known_from = max(history_start_us, first_bar_us)
    k0 = min(n_bars, max(0, (known_from - first_bar_us) // US_PER_SEC))
    fields = {k: np.full(n_bars, np.nan) for k in ("n", "buy_vol", "sell_vol", "notional", "max_qty", "price", "ts")}
    if k0 < n_bars:
        lo = int(np.searchsorted(trades.ts_event, known_from, side="left"))
        agg = _aggregate_bars(trades, known_from, n_bars - k0, executor)
        seed_price = float(trades.price[lo - 1]) if lo > 0 else float("nan")
        seed_ts = float(trades.ts_event[lo - 1]) if lo > 0 else float("nan")
        fields["n"][k0:] = agg.n
        fields["buy_vol"][k0:] = agg.buy_vol
        fields["sell_vol"][k0:] = agg.sell_vol
        fields["notional"][k0:] = agg.notional
        fields["max_qty"][k0:] = agg.max_qty
        fields["price"][k0:] = carry_forward(agg.last_price, seed_price)
        fields["ts"][k0:] = carry_forward(agg.last_ts, seed_ts)
    bid = np.full(n_bars, np.nan)
    ask = np.full(n_bars, np.nan)
    if best_bid_ask is not None and k0 < n_bars:
        bid[k0:], ask[k0:] = best_bid_ask_asof_before(best_bid_ask, ends[k0:])
    return BarRun(
        ts_end=ends,
        n=fields["n"],
        buy_vol=fields["buy_vol"],
        sell_vol=fields["sell_vol"],
        notional=fields["notional"],
        max_qty=fields["max_qty"],
        price=fields["price"],
        last_ts=fields["ts"],
        bid=bid,
        ask=ask,
    )


def build_features(
    trades: TradeArrays,
    params: FeatureParams,
    *,
    start_us: int,
    end_us: int,
    history_start_us: int | None = None,
    best_bid_ask: BestBidAskArrays | None = None,
    executor: Executor | None = None,
) -> FeatureFrame:
    """Feature rows for ``ts_sec`` in ``[start_us, end_us)`` (whole seconds).

    ``history_start_us`` defaults to ``start_us − 1 s`` (only the first row's own second is known
    before the first row). Trades and best bid/ask must be in time order. ``executor`` (threads) shares
    the per-second aggregation; the rows are the same without it.
    """
    _check_second("start_us", start_us)
    _check_second("end_us", end_us)
    hist = start_us - US_PER_SEC if history_start_us is None else history_start_us
    _check_second("history_start_us", hist)
    if end_us < start_us:
        raise ConfigError(f"end {end_us} is before start {start_us}")
    if params.with_spread and best_bid_ask is None:
        raise ConfigError("the schema has 'spread' but no best bid/ask history was given")
    trades.check_time_order()
    if best_bid_ask is not None:
        best_bid_ask.check_time_order()
    n_rows = (end_us - start_us) // US_PER_SEC
    if n_rows == 0:
        return FeatureFrame(np.zeros(0, dtype=np.int64), np.zeros((len(params.names), 0)), params.names)
    run = bar_run(
        trades,
        first_bar_us=start_us - WINDOW_BARS * US_PER_SEC,
        n_bars=n_rows + WINDOW_BARS - 1,
        history_start_us=hist,
        best_bid_ask=best_bid_ask,
        executor=executor,
    )
    columns = compute_feature_columns(run, params)
    ts_sec = start_us + US_PER_SEC * np.arange(n_rows, dtype=np.int64)
    if columns.shape[1] != n_rows:  # pragma: no cover - guards the index arithmetic above
        raise DataError("feature rows do not line up with the requested seconds")
    return FeatureFrame(ts_sec, columns, params.names)


def fit_params(qty: F64, *, with_spread: bool = False) -> FeatureParams:
    """Fit the schema's parameters on training trades: the 95th percentile of trade quantity (linear)."""
    if qty.shape[0] == 0:
        raise DataError("cannot fit feature parameters on zero trades")
    return FeatureParams(float(np.percentile(qty, 95.0)), with_spread)
