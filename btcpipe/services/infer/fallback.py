"""Inference's own view of the market: the trade/best-bid-ask streams and a fallback feature state.

When the online store has no usable row for a second (Redis down, processor dead or behind), inference
computes the row itself with ``SymbolFeatureState`` — the very class the processor runs, with its
de-duplication, grid start, warm-up and close rule — so a fallback row equals the processor's row for the
same deliveries. The state is fed every tick, not only when needed, because its windows need up to 60 s
of history.

Second ``t`` is closed only on evidence that the streams have passed it: the state's event-time rule
(the trade stream, and best bid/ask when the schema has ``spread``, at or after ``t``, or an ingestor
heartbeat), or wall time past ``t + lateness`` once *some* input has passed ``t``. There is deliberately
no bare wall-clock close here: a bus that stalls looks like a silent market, and closing on partial data
would make every row of the next minute wrong. If trades still arrive after
their second was closed (a REST gap fill published late), the state counts them late and its rows are
``tainted`` — not served — until the dropped trades have left every window. Redelivered trade ids are
dropped as duplicates (at-least-once delivery).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.heartbeats import HeartbeatReader
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_TRADES, Bus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import FeatureParams
from btcpipe.features.streaming import FeatureRow
from btcpipe.features.symbol_state import SymbolFeatureState
from btcpipe.wire.codec import decode_best_bid_ask, decode_trades

log = logging.getLogger(__name__)

FallbackReason = Literal["ok", "no_data", "warming_up", "stale", "not_closed", "incomplete", "tainted"]
_KEEP_ROWS = 8


@dataclass(slots=True)
class MarketBatch:
    """Trades and best bid/ask updates read from the bus in one poll."""

    trades: list[Trade] = field(default_factory=list)
    best_bid_asks: list[BestBidAsk] = field(default_factory=list)
    heartbeats: dict[str, int] = field(default_factory=dict)  # symbol → newest heartbeat the events back up


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
        self._heartbeats = HeartbeatReader(bus, symbols, name=name, max_records=max_records)
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
        self._heartbeats.poll()  # before the events it vouches for (bus.heartbeats)
        caught_up = False
        for _ in range(self.max_polls):
            got = self._trades.poll(self.max_records)
            for d in got:
                out.trades.extend(t for t in d.value if t.symbol in self.symbols)
            if len(got) < self.max_records:
                caught_up = True
                break
        if self._best_bid_ask is not None:
            caught_up_best_bid_ask = False
            for _ in range(self.max_polls):
                got_best_bid_ask = self._best_bid_ask.poll(self.max_records)
                out.best_bid_asks.extend(d.value for d in got_best_bid_ask if d.value.symbol in self.symbols)
                if len(got_best_bid_ask) < self.max_records:
                    caught_up_best_bid_ask = True
                    break
            caught_up = caught_up and caught_up_best_bid_ask
        out.heartbeats = self._heartbeats.release(caught_up)
        return out


@dataclass(frozen=True, slots=True)
class FallbackResult:
    """The fallback's row for a second, or None, and why (``ok`` when the row may be served)."""

    row: FeatureRow | None
    reason: FallbackReason


@dataclass(slots=True)
class _Symbol:
    state: SymbolFeatureState
    rows: deque[FeatureRow] = field(default_factory=lambda: deque(maxlen=_KEEP_ROWS))


class FallbackFeatures:
    """One ``SymbolFeatureState`` per symbol, fed from a ``MarketTap`` (see the module docstring)."""

    def __init__(self, params: FeatureParams, *, lateness_us: int, stale_after_us: int,
                 with_best_bid_ask: bool = True) -> None:
        self.params = params
        self.lateness_us = lateness_us
        self.stale_after_us = stale_after_us
        self.with_best_bid_ask = with_best_bid_ask
        self._symbols: dict[str, _Symbol] = {}
        self._last_event: dict[str, int] = {}

    def reset(self, params: FeatureParams) -> None:
        """Start over with other feature parameters (a newly served model); states warm up again."""
        if params != self.params:
            self.params = params
            self._symbols.clear()

    def state(self, symbol: str) -> SymbolFeatureState | None:
        s = self._symbols.get(symbol)
        return None if s is None else s.state

    def recent_rows(self, symbol: str) -> list[FeatureRow]:
        """The last rows closed for ``symbol`` (a few seconds' worth), oldest first."""
        s = self._symbols.get(symbol)
        return [] if s is None else list(s.rows)

    @property
    def late_trades(self) -> int:
        return sum(s.state.stats.late_trades for s in self._symbols.values())

    @property
    def duplicates(self) -> int:
        return sum(s.state.stats.duplicate_trades + s.state.stats.duplicate_best_bid_ask
                   for s in self._symbols.values())

    def last_event_us(self, symbol: str) -> int | None:
        return self._last_event.get(symbol)

    def _get(self, symbol: str) -> _Symbol:
        s = self._symbols.get(symbol)
        if s is None:
            needs = self.params.with_spread and self.with_best_bid_ask
            s = self._symbols[symbol] = _Symbol(SymbolFeatureState(
                symbol, self.params, lateness_us=self.lateness_us, needs_best_bid_ask=needs))
        return s

    def add(self, batch: MarketBatch) -> None:
        self.add_trades(batch.trades)
        self.add_best_bid_asks(batch.best_bid_asks)
        for symbol, ts in batch.heartbeats.items():
            self._get(symbol).state.add_heartbeat(ts)

    def add_trades(self, trades: Iterable[Trade]) -> None:
        by_symbol: dict[str, list[Trade]] = {}
        for trade in trades:
            by_symbol.setdefault(trade.symbol, []).append(trade)
        for symbol, group in by_symbol.items():
            self._get(symbol).state.add_trades(group)
            self._seen(symbol, max(t.ts_event for t in group))

    def add_best_bid_asks(self, best_bid_asks: Iterable[BestBidAsk]) -> None:
        for best_bid_ask in best_bid_asks:
            self._get(best_bid_ask.symbol).state.add_best_bid_ask(best_bid_ask)
            self._seen(best_bid_ask.symbol, best_bid_ask.ts_event)

    def _seen(self, symbol: str, ts: int) -> None:
        if ts > self._last_event.get(symbol, -1):
            self._last_event[symbol] = ts

    def is_stale(self, symbol: str, now_us: int) -> bool:
        last = self._last_event.get(symbol)
        return last is None or now_us - last > self.stale_after_us

    def close_until(self, ts_sec: int, now_us: int) -> None:
        """Close every state's seconds up to ``ts_sec`` that the rules allow (module docstring)."""
        for symbol in self._symbols:
            self._close(symbol, ts_sec, now_us)

    def _close(self, symbol: str, ts_sec: int, now_us: int) -> None:
        s = self._symbols[symbol]
        state = s.state
        nxt = state.next_close
        if nxt is None or ts_sec < nxt:
            return  # no grid yet, or already closed
        s.rows.extend(state.close_ready(max_rows=(ts_sec - nxt) // US_PER_SEC + 1))
        nxt = state.next_close
        if nxt is not None and ts_sec >= nxt:
            s.rows.extend(state.close_until(now_us, max_rows=(ts_sec - nxt) // US_PER_SEC + 1, seen_past=True))

    def row(self, symbol: str, ts_sec: int, now_us: int) -> FallbackResult:
        """The state's row stamped ``ts_sec`` (closing it now if its inputs have passed it), or why there is none."""
        s = self._symbols.get(symbol)
        if s is None or s.state.engine is None:
            return FallbackResult(None, "no_data")
        self._close(symbol, ts_sec, now_us)
        state = s.state
        for row in reversed(s.rows):
            if row.ts_sec == ts_sec:
                if ts_sec <= state.tainted_until:
                    return FallbackResult(row, "tainted")
                if not bool(np.all(np.isfinite(row.values))):
                    complete = state.complete_from
                    warming = complete is not None and ts_sec < complete
                    return FallbackResult(row, "warming_up" if warming else "incomplete")
                return FallbackResult(row, "ok")
        if self.is_stale(symbol, now_us):
            return FallbackResult(None, "stale")
        if state.first_row is not None and ts_sec < state.first_row:
            return FallbackResult(None, "warming_up")
        return FallbackResult(None, "not_closed")
