"""Inference's own view of the market: the trade/best-bid-ask streams and a fallback feature engine.

When the online store has no usable row for a second (Redis down, processor dead or behind), inference
computes the row itself with ``StreamingFeatureEngine`` — the processor's engine and the batch builder's
arithmetic, so a fallback row equals the processor's row for the same trades. The engine is fed every
tick, not only when needed, because its windows need up to 60 s of history.

An engine starts at the first whole second after the first trade it sees (earlier trades only seed the
carried price), so its rows are NaN until its windows fill (``warming_up``) and exact after that.

Second ``t`` is closed only on evidence that the streams have passed it — an event (trade or best
bid/ask) at or after ``t`` — and once wall time passes ``t`` by the lateness. There is deliberately no
wall-clock close: a bus that stalls looks like a silent market, and closing on partial data would make
every row of the next minute wrong. (For BTCUSDT best bid/ask moves many times a second, so a silent
stream means lag.) If trades still arrive after their second was closed (disorder beyond the
lateness), the engine counts them late and its rows are ``tainted`` — not served — until the dropped
trades have left every window. Trade ids at or below the newest seen are dropped as duplicates
(at-least-once delivery).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_TRADES, Bus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC, floor_sec
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import FeatureRow, StreamingFeatureEngine
from btcpipe.wire.codec import decode_best_bid_ask, decode_trades

log = logging.getLogger(__name__)

FallbackReason = Literal["ok", "no_data", "warming_up", "stale", "not_closed", "incomplete", "tainted"]
_KEEP_ROWS = 8


@dataclass(slots=True)
class MarketBatch:
    """Trades and best bid/ask updates read from the bus in one poll."""

    trades: list[Trade] = field(default_factory=list)
    best_bid_asks: list[BestBidAsk] = field(default_factory=list)


class MarketTap:
    """Reads new trades (and best bid/ask) of ``symbols`` from the bus; positions are in memory only.

    Inference starts at the head of the streams (``start="latest"``): it needs the recent market, not
    its history, and a restart simply warms up again.
    """

    def __init__(
        self,
        bus: Bus,
        symbols: Sequence[str],
        *,
        with_best_bid_ask: bool = True,
        name: str = "inference",
        start: Literal["earliest", "latest"] = "latest",
        max_records: int = 1000,
        max_polls: int = 50,
    ) -> None:
        self.symbols = frozenset(symbols)
        positions = InMemoryPositionStore()
        self._trades = BusConsumer(bus, STREAM_TRADES, decode_trades, name=name, positions=positions,
                                   shards=shards_for_keys(bus, STREAM_TRADES, symbols), start=start)
        self._best_bid_ask = (
            BusConsumer(bus, STREAM_BEST_BID_ASK, decode_best_bid_ask, name=name, positions=positions,
                        shards=shards_for_keys(bus, STREAM_BEST_BID_ASK, symbols), start=start)
            if with_best_bid_ask else None
        )
        self.max_records = max_records
        self.max_polls = max_polls

    @property
    def with_best_bid_ask(self) -> bool:
        return self._best_bid_ask is not None

    @property
    def skipped(self) -> int:
        """Undecodable payloads passed over."""
        return self._trades.skipped + (self._best_bid_ask.skipped if self._best_bid_ask else 0)

    def pump(self) -> MarketBatch:
        """Everything new on the streams (bounded by ``max_polls`` reads per stream). Raises ``BusError``."""
        out = MarketBatch()
        for _ in range(self.max_polls):
            got = self._trades.poll(self.max_records)
            for d in got:
                out.trades.extend(t for t in d.value if t.symbol in self.symbols)
            if len(got) < self.max_records:
                break
        if self._best_bid_ask is not None:
            for _ in range(self.max_polls):
                got_best_bid_ask = self._best_bid_ask.poll(self.max_records)
                out.best_bid_asks.extend(d.value for d in got_best_bid_ask if d.value.symbol in self.symbols)
                if len(got_best_bid_ask) < self.max_records:
                    break
        return out


@dataclass(frozen=True, slots=True)
class FallbackResult:
    """A fallback feature row (or none) and why."""

    row: FeatureRow | None
    reason: FallbackReason


class _SymbolEngine:
    def __init__(self, symbol: str, params: FeatureParams, first_trade_ts: int) -> None:
        self.start_us = floor_sec(first_trade_ts) + US_PER_SEC
        self.engine = StreamingFeatureEngine(symbol, params, start_us=self.start_us)
        self.max_id = -1
        self.duplicates = 0
        self.rows: deque[FeatureRow] = deque(maxlen=_KEEP_ROWS)
        self.tainted_until = 0  # rows up to this second may lack late trades


class FallbackFeatures:
    """One streaming engine per symbol, fed from a ``MarketTap`` (see the module docstring)."""

    def __init__(self, params: FeatureParams, *, lateness_us: int, stale_after_us: int) -> None:
        self.params = params
        self.lateness_us = lateness_us
        self.stale_after_us = stale_after_us
        self._engines: dict[str, _SymbolEngine] = {}
        self._last_event: dict[str, int] = {}

    def reset(self, params: FeatureParams) -> None:
        """Start over with other feature parameters (a newly served model); engines warm up again."""
        if params != self.params:
            self.params = params
            self._engines.clear()

    @property
    def late_trades(self) -> int:
        return sum(e.engine.late_trades for e in self._engines.values())

    @property
    def duplicates(self) -> int:
        return sum(e.duplicates for e in self._engines.values())

    def last_event_us(self, symbol: str) -> int | None:
        return self._last_event.get(symbol)

    def add(self, batch: MarketBatch) -> None:
        self.add_trades(batch.trades)
        self.add_best_bid_asks(batch.best_bid_asks)

    def add_trades(self, trades: Iterable[Trade]) -> None:
        for trade in trades:
            state = self._engines.get(trade.symbol)
            if state is None:
                state = self._engines[trade.symbol] = _SymbolEngine(trade.symbol, self.params, trade.ts_event)
            if trade.id <= state.max_id:
                state.duplicates += 1
                continue
            state.max_id = trade.id
            if not state.engine.add_trade_record(trade):
                closed = state.engine.closed_until or 0
                # the dropped trade sits in the bar just closed; it leaves the longest window after WINDOW_BARS
                state.tainted_until = max(state.tainted_until, closed + WINDOW_BARS * US_PER_SEC)
            self._seen(trade.symbol, trade.ts_event)

    def add_best_bid_asks(self, best_bid_asks: Iterable[BestBidAsk]) -> None:
        for best_bid_ask in best_bid_asks:
            state = self._engines.get(best_bid_ask.symbol)
            if state is not None:
                state.engine.add_best_bid_ask_record(best_bid_ask)
            self._seen(best_bid_ask.symbol, best_bid_ask.ts_event)

    def _seen(self, symbol: str, ts: int) -> None:
        if ts > self._last_event.get(symbol, -1):
            self._last_event[symbol] = ts

    def is_stale(self, symbol: str, now_us: int) -> bool:
        last = self._last_event.get(symbol)
        return last is None or now_us - last > self.stale_after_us

    def close_until(self, ts_sec: int, now_us: int) -> None:
        """Close every engine's seconds up to ``ts_sec`` where the rules allow it (module docstring)."""
        for symbol in self._engines:
            self._close(symbol, ts_sec, now_us)

    def _close(self, symbol: str, ts_sec: int, now_us: int) -> None:
        state = self._engines[symbol]
        closed = state.engine.closed_until
        if ts_sec <= (closed if closed is not None else state.start_us):
            return  # before the engine's first whole second, or already closed
        if now_us < ts_sec + self.lateness_us or self._last_event.get(symbol, -1) < ts_sec:
            return  # not yet past the lateness, or no evidence the streams have passed ts_sec
        state.rows.append(state.engine.close_second(ts_sec))

    def row(self, symbol: str, ts_sec: int, now_us: int) -> FallbackResult:
        """The engine's row stamped ``ts_sec`` (closing it now if due), or why there is none."""
        state = self._engines.get(symbol)
        if state is None:
            return FallbackResult(None, "no_data")
        self._close(symbol, ts_sec, now_us)
        for row in reversed(state.rows):
            if row.ts_sec == ts_sec:
                if ts_sec <= state.tainted_until:
                    return FallbackResult(row, "tainted")
                if not bool(np.all(np.isfinite(row.values))):
                    warming = ts_sec < state.start_us + WINDOW_BARS * US_PER_SEC
                    return FallbackResult(row, "warming_up" if warming else "incomplete")
                return FallbackResult(row, "ok")
        if self.is_stale(symbol, now_us):
            return FallbackResult(None, "stale")
        if ts_sec <= state.start_us:
            return FallbackResult(None, "warming_up")
        return FallbackResult(None, "not_closed")
