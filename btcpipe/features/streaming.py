"""Streaming feature engine: trades in as they arrive, one feature row out per closed second.

A trade goes straight into its second's ``SecondAccumulator`` (O(1) Python work: the same sums, in the
same order, as the batch builder's ``aggregate_seconds``). State is a ring buffer of the last
``WINDOW_BARS`` per-second bars (the same ``BarRun`` fields the batch builder prepares for a whole day)
plus the carried last price, last trade time and best bid/ask. ``close_second(t)`` pushes the bars of
the seconds up to ``[t − 1 s, t)`` and computes the one row with ``compute_feature_columns`` on the
ring's trailing window — the batch builder's function, so the row equals the batch row for the same
trades to the last bit. Work per second is bounded by the window.

Trades for seconds not yet closed may arrive early (they wait); a trade for a second already closed, or
one going back in time, cannot be counted any more: it is dropped and counted in ``late_trades`` for
the caller to log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features import plain
from btcpipe.features.arithmetic import BarRun, SecondAccumulator, compute_feature_columns
from btcpipe.features.spec import WINDOW_BARS, FeatureParams, schema_hash

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_FIELDS = ("n", "buy_vol", "sell_vol", "notional", "max_qty", "price", "last_ts", "bid", "ask")
_NAN = float("nan")
_NO_SECOND = -(2**62)
_EMPTY_BAR = (0.0, 0.0, 0.0, 0.0, 0.0)
_ACC_FLOATS = ("buy_vol", "sell_vol", "notional", "max_qty", "last_price", "last_ts")
ENGINE_SNAPSHOT_VERSION = 1


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
        # Rows are fields, columns two copies of the ring, so the trailing window is one contiguous slice.
        self._ring = np.full((len(_FIELDS), 2 * WINDOW_BARS), np.nan)
        self._ends = np.zeros(2 * WINDOW_BARS, dtype=np.int64)
        self._pos = WINDOW_BARS - 1  # slot of the newest bar
        if start_us is not None:
            self._ends[:] = self._window_ends(start_us)
        # Bars of seconds not yet closed, oldest first (second index = ts // 1 s), and the newest of them.
        self._pending: deque[tuple[int, SecondAccumulator]] = deque()
        self._open_sec = _NO_SECOND
        self._open = SecondAccumulator()
        self._best_bid_ask: list[tuple[int, float, float]] = []
        # A trade is late when older than this: the newest accepted trade or the end of the closed seconds.
        self._floor_ts = _NO_SECOND
        # Carried state.
        self._last_price = _NAN
        self._last_trade_ts = _NAN
        self._bid = _NAN
        self._ask = _NAN
        self._last_best_bid_ask_ts = -1
        self.late_trades = 0
        self.late_best_bid_ask = 0
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
        if ts_event < self._floor_ts:
            self.late_trades += 1
            return False
        self._floor_ts = ts_event
        sec = ts_event // US_PER_SEC
        acc = self._open
        if sec != self._open_sec:  # times never go back, so a new second is a new bar
            acc = self._open = SecondAccumulator()
            self._open_sec = sec
            self._pending.append((sec, acc))
        acc.add(ts_event, price, qty, is_buyer_maker)
        return True

    def add_trade_record(self, trade: Trade) -> bool:
        return self.add_trade(trade.ts_event, trade.price, trade.qty, trade.is_buyer_maker)

    def add_trades(self, ts_event: I64, price: F64, qty: F64, is_buyer_maker: Bools) -> int:
        """Queue trades in id order; returns how many were accepted (the rest are counted late)."""
        add = self.add_trade
        accepted = 0
        for t, p, q, b in zip(
            np.asarray(ts_event, dtype=np.int64).tolist(), np.asarray(price, dtype=np.float64).tolist(),
            np.asarray(qty, dtype=np.float64).tolist(), np.asarray(is_buyer_maker, dtype=np.bool_).tolist(),
            strict=True,
        ):
            accepted += add(t, p, q, b)
        return accepted

    def add_best_bid_ask(self, ts_event: int, bid: float, ask: float) -> bool:
        """Queue a best bid/ask update; False (counted in ``late_bbo``) if older than one already applied."""
        last_pending = self._best_bid_ask[-1][0] if self._best_bid_ask else self._last_best_bid_ask_ts
        if ts_event < last_pending:
            self.late_best_bid_ask += 1
            return False
        self._best_bid_ask.append((ts_event, bid, ask))
        return True

    def add_best_bid_ask_record(self, best_bid_ask: BestBidAsk) -> bool:
        return self.add_best_bid_ask(best_bid_ask.ts_event, best_bid_ask.bid_price, best_bid_ask.ask_price)

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
        first = self._bar_start // US_PER_SEC
        end = ts_sec // US_PER_SEC
        if end - first > WINDOW_BARS:
            # A long silence: bars older than the window only matter through the carried state.
            first = end - WINDOW_BARS
            self._seed_before(first)
            self._apply_best_bid_ask(first * US_PER_SEC)
        else:
            self._seed_before(first)  # trades before the first known second only seed the carried price
        pending = self._pending
        n = 0.0
        for sec in range(first, end):
            if pending and pending[0][0] == sec:
                acc = pending.popleft()[1]
                self._last_price, self._last_trade_ts = acc.last_price, acc.last_ts
                n = float(acc.n)
                bar = (n, acc.buy_vol, acc.sell_vol, acc.notional, acc.max_qty)
            else:
                n = 0.0
                bar = _EMPTY_BAR
            bar_end = (sec + 1) * US_PER_SEC
            self._apply_best_bid_ask(bar_end)
            self._push(bar_end, (*bar, self._last_price, self._last_trade_ts, self._bid, self._ask))
        self.bars_closed += end - first
        self._bar_start = ts_sec
        self._closed_any = True
        self._floor_ts = max(self._floor_ts, ts_sec)
        if self._open_sec < end:
            self._open_sec = _NO_SECOND  # its bar is closed: a new trade starts a new one
        values = compute_feature_columns(self._window(), self.params)[:, 0]
        return FeatureRow(self.symbol, ts_sec, values, self.names, int(n))

    def _seed_before(self, sec: int) -> None:
        pending = self._pending
        while pending and pending[0][0] < sec:
            acc = pending.popleft()[1]
            self._last_price, self._last_trade_ts = acc.last_price, acc.last_ts

    def _apply_best_bid_ask(self, before_us: int) -> None:
        k = 0
        while k < len(self._best_bid_ask) and self._best_bid_ask[k][0] < before_us:
            k += 1
        if k:
            self._last_best_bid_ask_ts, self._bid, self._ask = self._best_bid_ask[k - 1]
            del self._best_bid_ask[:k]

    def _push(self, end: int, values: tuple[float, ...]) -> None:
        self._pos = pos = (self._pos + 1) % WINDOW_BARS
        self._ring[:, pos] = values
        self._ring[:, pos + WINDOW_BARS] = values
        self._ends[pos] = self._ends[pos + WINDOW_BARS] = end

    def _window(self) -> BarRun:
        lo = self._pos + 1
        return BarRun(self._ends[lo : lo + WINDOW_BARS], *self._ring[:, lo : lo + WINDOW_BARS])

    # --- snapshot ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """The engine's whole state as plain data (``btcpipe.features.plain``); ``restore`` rebuilds it exactly."""
        pending = [[sec, acc.n, *(plain.pack_float(getattr(acc, f)) for f in _ACC_FLOATS)]
                   for sec, acc in self._pending]
        open_is_pending = bool(self._pending) and self._pending[-1][1] is self._open
        return {
            "kind": "streaming-engine", "version": ENGINE_SNAPSHOT_VERSION,
            "bar_start": self._bar_start, "closed_any": self._closed_any,
            "ring": plain.pack_f64(self._ring.ravel()), "ends": plain.pack_i64(self._ends), "pos": self._pos,
            "pending": pending, "open_sec": self._open_sec, "open_is_pending": open_is_pending,
            "best_bid_ask": [[ts, plain.pack_float(b), plain.pack_float(a)] for ts, b, a in self._best_bid_ask],
            "floor_ts": self._floor_ts,
            "last_price": plain.pack_float(self._last_price), "last_trade_ts": plain.pack_float(self._last_trade_ts),
            "bid": plain.pack_float(self._bid), "ask": plain.pack_float(self._ask),
            "last_best_bid_ask_ts": self._last_best_bid_ask_ts,
            "late_trades": self.late_trades, "late_best_bid_ask": self.late_best_bid_ask,
            "bars_closed": self.bars_closed,
        }

    @classmethod
    def restore(cls, symbol: str, params: FeatureParams, doc: object) -> StreamingFeatureEngine:
        """An engine from ``snapshot()``'s data; ``DataError`` for another version or malformed data."""
        d = plain.check_version(doc, "streaming-engine", ENGINE_SNAPSHOT_VERSION)
        engine = cls(symbol, params)
        engine._bar_start = plain.optional_int(d, "bar_start")
        engine._closed_any = bool(plain.field(d, "closed_any", bool))
        ring = plain.unpack_f64(d.get("ring"), "ring")
        ends = plain.unpack_i64(d.get("ends"), "ends")
        if ring.shape[0] != engine._ring.size or ends.shape[0] != engine._ends.shape[0]:
            raise DataError("engine snapshot ring has the wrong size for this window")
        engine._ring = ring.reshape(engine._ring.shape).copy()
        engine._ends = ends.copy()
        engine._pos = int(plain.field(d, "pos", int))
        for item in plain.field(d, "pending", list):
            if not isinstance(item, list) or len(item) != 2 + len(_ACC_FLOATS):
                raise DataError(f"engine snapshot pending bar is malformed: {item!r}")
            acc = SecondAccumulator()
            acc.n = int(item[1])
            for name, text in zip(_ACC_FLOATS, item[2:], strict=True):
                setattr(acc, name, plain.unpack_float(text, f"pending.{name}"))
            engine._pending.append((int(item[0]), acc))
        engine._open_sec = int(plain.field(d, "open_sec", int))
        if plain.field(d, "open_is_pending", bool):
            if not engine._pending:
                raise DataError("engine snapshot says its open bar is pending but has no pending bar")
            engine._open = engine._pending[-1][1]
        engine._best_bid_ask = [(int(ts), plain.unpack_float(b, "bid"), plain.unpack_float(a, "ask"))
                                for ts, b, a in plain.field(d, "best_bid_ask", list)]
        engine._floor_ts = int(plain.field(d, "floor_ts", int))
        engine._last_price = plain.unpack_float(d.get("last_price"), "last_price")
        engine._last_trade_ts = plain.unpack_float(d.get("last_trade_ts"), "last_trade_ts")
        engine._bid = plain.unpack_float(d.get("bid"), "bid")
        engine._ask = plain.unpack_float(d.get("ask"), "ask")
        engine._last_best_bid_ask_ts = int(plain.field(d, "last_best_bid_ask_ts", int))
        engine.late_trades = int(plain.field(d, "late_trades", int))
        engine.late_best_bid_ask = int(plain.field(d, "late_best_bid_ask", int))
        engine.bars_closed = int(plain.field(d, "bars_closed", int))
        return engine
