"""Streaming feature engine: trades in as they arrive, one feature row out per closed second.

State is a ring buffer of the last ``WINDOW_BARS`` per-second bars (the same ``BarRun`` fields the
batch builder prepares for a whole day) plus the carried last price, last trade time and best bid/ask.
``close_second(t)`` aggregates the pending trades of ``[t − 1 s, t)`` with ``aggregate_seconds`` and
computes the row with ``compute_feature_columns`` on the ring's trailing window — the batch builder's
functions, so the row equals the batch row for the same trades to the last bit. Work per second is
bounded by the window and that second's trades.

Trades for seconds not yet closed may arrive early (they wait); a trade for a second already closed, or
one going back in time, cannot be counted any more: it is dropped and counted in ``late_trades`` for
the caller to log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.arithmetic import BarRun, aggregate_seconds, carry_forward, compute_feature_columns
from btcpipe.features.spec import WINDOW_BARS, FeatureParams, schema_hash

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_FIELDS = ("n", "buy_vol", "sell_vol", "notional", "max_qty", "price", "last_ts", "bid", "ask")
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One feature row: ``ts_sec`` (µs) describes ``[ts_sec − 1 s, ts_sec)``; values in schema order."""

    symbol: str
    ts_sec: int
    values: F64
    names: tuple[str, ...]
    n_trades: int  # trades aggregated into this row's own second

    def as_dict(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.names, self.values, strict=True)}

    def to_message(self, schema_hash_hex: str, ts_computed: int) -> FeatureVector1s:
        return FeatureVector1s(self.symbol, self.ts_sec, schema_hash_hex, tuple(self.values.tolist()), ts_computed)


class StreamingFeatureEngine:
    """Per-second features for one symbol; see the module docstring.

    ``start_us``: the first second whose trades the engine sees completely (a whole second). Trades
    before it only seed the carried last price; bars before it are unknown (NaN features during
    warm-up). Without it, the first ``close_second(t)`` takes ``t − 1 s``.
    """

    def __init__(self, symbol: str, params: FeatureParams, *, start_us: int | None = None) -> None:
        if start_us is not None and start_us % US_PER_SEC:
            raise DataError(f"start_us must be a whole second in µs, got {start_us}")
        self.symbol = symbol
        self.params = params
        self.names = params.names
        self.schema_hash = schema_hash(params)
        self._bar_start: int | None = start_us  # start of the next bar to close
        self._closed_any = False
        self._ring = np.full((len(_FIELDS), 2 * WINDOW_BARS), np.nan)
        self._ends = np.zeros(2 * WINDOW_BARS, dtype=np.int64)
        self._pos = WINDOW_BARS - 1  # slot of the newest bar
        if start_us is not None:
            self._ends[:] = self._window_ends(start_us)
        # Pending trades (not yet in a closed bar), in arrival order.
        self._ts: list[int] = []
        self._price: list[float] = []
        self._qty: list[float] = []
        self._ibm: list[bool] = []
        self._bbo: list[tuple[int, float, float]] = []
        # Carried state.
        self._last_price = _NAN
        self._last_trade_ts = _NAN
        self._bid = _NAN
        self._ask = _NAN
        self._last_bbo_ts = -1
        self._max_seen_ts = -1
        self.late_trades = 0
        self.late_bbo = 0
        self.bars_closed = 0

    @staticmethod
    def _window_ends(first_bar_start: int) -> I64:
        # Before any close, the ring holds unknown bars ending at first_bar_start − (W−1) s … first_bar_start.
        ends = first_bar_start - US_PER_SEC * np.arange(WINDOW_BARS - 1, -1, -1, dtype=np.int64)
        return np.concatenate((ends, ends))

    # --- input ---------------------------------------------------------------------------------------
    @property
    def closed_until(self) -> int | None:
        """End (µs) of the last closed second; trades before it are late."""
        return self._bar_start if self._closed_any else None

    def add_trade(self, ts_event: int, price: float, qty: float, is_buyer_maker: bool) -> bool:
        """Queue one trade; False (and counted in ``late_trades``) if it is too late to count."""
        if ts_event < self._max_seen_ts or (self._closed_any and ts_event < (self._bar_start or 0)):
            self.late_trades += 1
            return False
        self._max_seen_ts = ts_event
        self._ts.append(ts_event)
        self._price.append(price)
        self._qty.append(qty)
        self._ibm.append(is_buyer_maker)
        return True

    def add_trade_record(self, trade: Trade) -> bool:
        return self.add_trade(trade.ts_event, trade.price, trade.qty, trade.is_buyer_maker)

    def add_trades(self, ts_event: I64, price: F64, qty: F64, is_buyer_maker: Bools) -> int:
        """Queue trades in id order; returns how many were accepted (the rest are counted late)."""
        ts = np.asarray(ts_event, dtype=np.int64)
        if ts.shape[0] == 0:
            return 0
        floor = max(self._max_seen_ts, self._bar_start if (self._closed_any and self._bar_start) else -1)
        running = np.maximum.accumulate(np.concatenate(([floor], ts)))[:-1]
        ok = ts >= running
        # A trade is accepted iff it is not below every earlier accepted trade and the closed boundary;
        # with ok computed against the running max of all earlier trades this matches add_trade one by one.
        accepted = int(ok.sum())
        self.late_trades += ts.shape[0] - accepted
        if accepted:
            self._ts.extend(ts[ok].tolist())
            self._price.extend(np.asarray(price)[ok].tolist())
            self._qty.extend(np.asarray(qty)[ok].tolist())
            self._ibm.extend(np.asarray(is_buyer_maker)[ok].tolist())
            self._max_seen_ts = max(self._max_seen_ts, int(ts[ok][-1]))
        return accepted

    def add_bbo(self, ts_event: int, bid: float, ask: float) -> bool:
        """Queue a best bid/ask update; False (counted in ``late_bbo``) if older than one already applied."""
        last_pending = self._bbo[-1][0] if self._bbo else self._last_bbo_ts
        if ts_event < last_pending:
            self.late_bbo += 1
            return False
        self._bbo.append((ts_event, bid, ask))
        return True

    def add_book_ticker(self, bbo: BestBidAsk) -> bool:
        return self.add_bbo(bbo.ts_event, bbo.bid_price, bbo.ask_price)

    # --- closing seconds -----------------------------------------------------------------------------
    def close_second(self, ts_sec: int) -> FeatureRow:
        """Close every second up to ``[ts_sec − 1 s, ts_sec)`` and return the row stamped ``ts_sec``."""
        if ts_sec % US_PER_SEC:
            raise DataError(f"ts_sec must be a whole second in µs, got {ts_sec}")
        if self._bar_start is None:
            self._bar_start = ts_sec - US_PER_SEC
            self._ends[:] = self._window_ends(self._bar_start)
        if ts_sec <= self._bar_start:
            raise DataError(f"second ending {ts_sec} is already closed (closed until {self._bar_start})")
        ts, price, qty, ibm = self._take_pending(ts_sec)
        # Trades before the first known second only seed the carried price.
        cut = int(np.searchsorted(ts, self._bar_start, side="left"))
        self._seed(ts[:cut], price[:cut])
        ts, price, qty, ibm = ts[cut:], price[cut:], qty[cut:], ibm[cut:]
        n_bars = (ts_sec - self._bar_start) // US_PER_SEC
        if n_bars > WINDOW_BARS:
            # A long silence: bars older than the window only matter through the carried state.
            skip_to = ts_sec - WINDOW_BARS * US_PER_SEC
            cut = int(np.searchsorted(ts, skip_to, side="left"))
            self._seed(ts[:cut], price[:cut])
            self._apply_bbo(skip_to)
            ts, price, qty, ibm = ts[cut:], price[cut:], qty[cut:], ibm[cut:]
            self._bar_start, n_bars = skip_to, WINDOW_BARS
        agg = aggregate_seconds((ts - self._bar_start) // US_PER_SEC, ts, price, qty, ibm, n_bars=n_bars)
        prices = carry_forward(agg.last_price, self._last_price)
        last_ts = carry_forward(agg.last_ts, self._last_trade_ts)
        self._last_price, self._last_trade_ts = float(prices[-1]), float(last_ts[-1])
        for j in range(n_bars):
            end = self._bar_start + (j + 1) * US_PER_SEC
            self._apply_bbo(end)
            self._push(
                end,
                (agg.n[j], agg.buy_vol[j], agg.sell_vol[j], agg.notional[j], agg.max_qty[j],
                 prices[j], last_ts[j], self._bid, self._ask),
            )
        self._bar_start = ts_sec
        self._closed_any = True
        self.bars_closed += n_bars
        values = compute_feature_columns(self._window(), self.params)[:, 0]
        return FeatureRow(self.symbol, ts_sec, values, self.names, int(agg.n[-1]))

    def _take_pending(self, ts_sec: int) -> tuple[I64, F64, F64, Bools]:
        ts = np.array(self._ts, dtype=np.int64)
        cut = int(np.searchsorted(ts, ts_sec, side="left"))
        price = np.array(self._price[:cut], dtype=np.float64)
        qty = np.array(self._qty[:cut], dtype=np.float64)
        ibm = np.array(self._ibm[:cut], dtype=np.bool_)
        del self._ts[:cut], self._price[:cut], self._qty[:cut], self._ibm[:cut]
        return ts[:cut], price, qty, ibm

    def _seed(self, ts: I64, price: F64) -> None:
        if ts.shape[0]:
            self._last_price = float(price[-1])
            self._last_trade_ts = float(ts[-1])

    def _apply_bbo(self, before_us: int) -> None:
        k = 0
        while k < len(self._bbo) and self._bbo[k][0] < before_us:
            k += 1
        if k:
            self._last_bbo_ts, self._bid, self._ask = self._bbo[k - 1]
            del self._bbo[:k]

    def _push(self, end: int, values: tuple[float, ...]) -> None:
        self._pos = (self._pos + 1) % WINDOW_BARS
        for slot in (self._pos, self._pos + WINDOW_BARS):
            self._ring[:, slot] = values
            self._ends[slot] = end

    def _window(self) -> BarRun:
        lo = self._pos + 1
        ring = self._ring[:, lo : lo + WINDOW_BARS]
        return BarRun(self._ends[lo : lo + WINDOW_BARS], *(np.ascontiguousarray(r) for r in ring))
