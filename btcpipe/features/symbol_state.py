"""One symbol's live feature state: event-time buffering, de-duplication and second closing.

It wraps the streaming feature engine (``btcpipe.features.streaming``) and adds what a live stream
needs that a sorted tape does not:

- **Buffering and order.** Trades and best bid/ask updates wait in a buffer until their second closes;
  when it does they are handed to the engine sorted by (time, trade id / update id), so disorder that
  stays within the allowed lateness changes nothing.
- **Closing.** Second ``t`` (the row describing ``[t − 1 s, t)``) closes when an event at or after
  ``t + lateness`` has been seen (``close_until(watermark)``) or when the caller says time has passed
  (``close_until(now)``, the wall-clock path for a silent market). Every second closes in turn, so the
  grid has no hole: a second without trades is still a row.
- **Late and duplicate events.** An event for a second that has already closed is counted and not
  applied; a trade id seen before (within ``dedup_window_s``) is counted as a duplicate and ignored.
- **Resume.** ``resume_after=L`` (the last row already emitted by a previous run) makes the state start
  its bars at ``L + 1 s − WINDOW_BARS s`` (not before ``resume_bars_from``, where the previous run's
  grid began) and emit from ``L + 1 s`` on: the caller re-reads the trailing window of events and the
  rows continue exactly where they stopped, warm-up rows included.

Pure: no IO, no wall clock (times come in as arguments).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC, ceil_sec
from btcpipe.features.id_ranges import IdRanges, accept_mask
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import FeatureRow, StreamingFeatureEngine

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
TradeChunk = tuple[I64, I64, F64, F64, Bools]  # id, ts_event, price, qty, is_buyer_maker


@dataclass(slots=True)
class SymbolStats:
    """One symbol's live counts: events taken, late and duplicate events, rows closed."""

    trades: int = 0  # trades accepted into the buffer
    best_bid_ask: int = 0
    late_trades: int = 0
    late_best_bid_ask: int = 0
    duplicate_trades: int = 0
    duplicate_best_bid_ask: int = 0
    rows: int = 0  # rows closed (and returned to the caller)


class SymbolFeatureState:
    """One symbol's live feature state: buffers events, de-duplicates them, closes seconds into feature rows."""

    def __init__(
        self,
        symbol: str,
        params: FeatureParams,
        *,
        lateness_us: int,
        resume_after: int | None = None,
        resume_bars_from: int | None = None,
        dedup_window_s: int = 2 * WINDOW_BARS,
    ) -> None:
        if lateness_us < 0:
            raise ConfigError(f"lateness must be >= 0 µs, got {lateness_us}")
        if resume_after is not None and resume_after % US_PER_SEC:
            raise ConfigError(f"resume_after must be a whole second in µs, got {resume_after}")
        self.symbol = symbol
        self.params = params
        self.lateness_us = lateness_us
        self.dedup_window_us = dedup_window_s * US_PER_SEC
        self.stats = SymbolStats()
        self.engine: StreamingFeatureEngine | None = None
        # The next row to close (None until the first trade fixes where the grid starts).
        self.next_close: int | None = None
        self.first_row: int | None = None  # first row this state emits (complete lookback from +WINDOW)
        self.bars_from: int | None = None  # first bar whose trades this state sees completely
        if resume_after is not None:
            # Bars before the previous run's own start stay unknown, as they were to that run.
            window_start = resume_after + US_PER_SEC - WINDOW_BARS * US_PER_SEC
            bars_from = window_start if resume_bars_from is None else max(window_start, resume_bars_from)
            self._start(bars_from, first_row=resume_after + US_PER_SEC)
        self.watermark = -1  # newest trade time seen
        self.best_bid_ask_watermark = -1
        # Buffered trades (not yet in a closed second): column chunks in arrival order.
        self._chunks: list[TradeChunk] = []
        self._n_buffered = 0
        self._best_bid_ask: list[tuple[int, int, float, float]] = []  # (ts, update id, bid, ask)
        # Trade ids taken: buffered ones and those of recently closed seconds (pruned by second).
        self._taken = IdRanges()
        self._closed_ids: deque[tuple[int, int]] = deque()  # (second, smallest id applied in it)
        self._max_best_bid_ask_id = -1

    def _start(self, bars_from: int, *, first_row: int) -> None:
        self.bars_from = bars_from
        self.first_row = first_row
        self.next_close = first_row
        self.engine = StreamingFeatureEngine(self.symbol, self.params, start_us=bars_from)

    @property
    def closed_until(self) -> int | None:
        """End of the last closed second: events before it are late (None before the first close)."""
        if self.next_close is None or self.first_row is None or self.next_close == self.first_row:
            return None
        return self.next_close - US_PER_SEC

    @property
    def last_row(self) -> int | None:
        return self.closed_until

    @property
    def complete_from(self) -> int | None:
        """First row whose whole lookback (``WINDOW_BARS`` bars) this state has seen."""
        return None if self.bars_from is None else self.bars_from + WINDOW_BARS * US_PER_SEC

    # --- input ---------------------------------------------------------------------------------------
    def add_trades(self, trades: Sequence[Trade]) -> int:
        """Buffer trades; returns how many were accepted (late and duplicate ones are counted)."""
        if not trades:
            return 0
        return self.add_trade_arrays(
            np.array([t.id for t in trades], dtype=np.int64),
            np.array([t.ts_event for t in trades], dtype=np.int64),
            np.array([t.price for t in trades], dtype=np.float64),
            np.array([t.qty for t in trades], dtype=np.float64),
            np.array([t.is_buyer_maker for t in trades], dtype=np.bool_),
        )

    def add_trade_arrays(self, ids: I64, ts: I64, price: F64, qty: F64, is_buyer_maker: Bools) -> int:
        """Buffer trades given as columns in arrival order; returns how many were accepted.

        A trade whose id was taken before is a duplicate, one before the end of the last closed second is
        late; both are counted and dropped, the same rule as trade by trade (``accept_mask``).
        """
        n = int(ids.shape[0])
        if n == 0:
            return 0
        closed = self.closed_until
        take, late, dup = accept_mask(ids, ts, self._taken, -1 if closed is None else closed)
        accepted = n - late - dup
        if accepted:
            chunk: TradeChunk = (ids, ts, price, qty, is_buyer_maker)
            if accepted < n:
                chunk = (ids[take], ts[take], price[take], qty[take], is_buyer_maker[take])
            self._chunks.append(chunk)
            self._n_buffered += accepted
            self._taken.add(chunk[0])
            self.watermark = max(self.watermark, int(chunk[1].max()))
        self.stats.trades += accepted
        self.stats.late_trades += late
        self.stats.duplicate_trades += dup
        if self.next_close is None and accepted:
            # The grid starts at the first second seen completely; earlier trades only seed the price.
            start = ceil_sec(min(int(c[1].min()) for c in self._chunks))
            self._start(start, first_row=start + US_PER_SEC)
        return accepted

    def add_best_bid_ask(self, best_bid_ask: BestBidAsk) -> bool:
        """Buffer a best bid/ask update; False when it is late or a repeat of an update id already taken."""
        return self._add_best_bid_ask(best_bid_ask.ts_event, best_bid_ask.update_id, best_bid_ask.bid_price,
                                      best_bid_ask.ask_price)

    def add_best_bid_ask_arrays(self, ts: I64, update_id: I64, bid: F64, ask: F64) -> int:
        """Buffer best bid/ask updates given as columns in arrival order; returns how many were taken."""
        n = int(ts.shape[0])
        if n == 0:
            return 0
        closed = self.closed_until
        rising = n == 1 or bool((np.diff(update_id) > 0).all())
        if rising and int(update_id[0]) > self._max_best_bid_ask_id and (closed is None or int(ts.min()) >= closed):
            # The usual case: new ids in order, nothing late; the rule below would take every one.
            self._best_bid_ask.extend(zip(ts.tolist(), update_id.tolist(), bid.tolist(), ask.tolist(), strict=True))
            self._max_best_bid_ask_id = int(update_id[-1])
            self.best_bid_ask_watermark = max(self.best_bid_ask_watermark, int(ts.max()))
            self.stats.best_bid_ask += n
            return n
        add = self._add_best_bid_ask
        return sum(add(*row) for row in zip(ts.tolist(), update_id.tolist(), bid.tolist(), ask.tolist(), strict=True))

    def _add_best_bid_ask(self, ts: int, update_id: int, bid: float, ask: float) -> bool:
        closed = self.closed_until
        if update_id <= self._max_best_bid_ask_id and any(b[1] == update_id for b in self._best_bid_ask):
            self.stats.duplicate_best_bid_ask += 1
            return False
        if closed is not None and ts < closed:
            if update_id <= self._max_best_bid_ask_id:
                self.stats.duplicate_best_bid_ask += 1
            else:
                self.stats.late_best_bid_ask += 1
            return False
        self._best_bid_ask.append((ts, update_id, bid, ask))
        self._max_best_bid_ask_id = max(self._max_best_bid_ask_id, update_id)
        self.best_bid_ask_watermark = max(self.best_bid_ask_watermark, ts)
        self.stats.best_bid_ask += 1
        return True

    # --- closing -------------------------------------------------------------------------------------
    def due(self, until_us: int) -> int:
        """How many seconds ``close_until(until_us)`` would close."""
        if self.next_close is None or until_us < self.next_close + self.lateness_us:
            return 0
        return (until_us - self.lateness_us - self.next_close) // US_PER_SEC + 1

    def close_until(self, until_us: int, max_rows: int | None = None) -> list[FeatureRow]:
        """Close every second ``t`` with ``t + lateness <= until_us`` (at most ``max_rows``), in order."""
        n = self.due(until_us)
        if max_rows is not None:
            n = min(n, max_rows)
        if n == 0 or self.engine is None or self.next_close is None:
            return []
        last = self.next_close + (n - 1) * US_PER_SEC
        ids, ts, price, qty, ibm = self._take_trades(last)
        best_bid_ask = self._take_best_bid_ask(last)
        rows: list[FeatureRow] = []
        lo = blo = 0
        engine = self.engine
        seconds = self.next_close + US_PER_SEC * np.arange(n, dtype=np.int64)
        bounds = np.searchsorted(ts, seconds, side="left").tolist()
        filled: list[tuple[int, int]] = []  # (second, first trade index) of seconds with trades
        for k in range(n):
            t = self.next_close + k * US_PER_SEC
            hi = bounds[k]
            if hi > lo:
                engine.add_trades(ts[lo:hi], price[lo:hi], qty[lo:hi], ibm[lo:hi])
                filled.append((t, lo))
                lo = hi
            while blo < len(best_bid_ask) and best_bid_ask[blo][0] < t:
                engine.add_best_bid_ask(best_bid_ask[blo][0], best_bid_ask[blo][2], best_bid_ask[blo][3])
                blo += 1
            rows.append(engine.close_second(t))
        if filled:
            lows = np.minimum.reduceat(ids[:lo], [i for _, i in filled]).tolist()
            self._closed_ids.extend((t, low) for (t, _), low in zip(filled, lows, strict=True))
        self.next_close = last + US_PER_SEC
        self.stats.rows += n
        self._prune_seen()
        return rows

    def _take_trades(self, last: int) -> TradeChunk:
        """Buffered trades before ``last`` sorted by (time, id); the rest stay buffered."""
        chunks = self._chunks
        if not chunks:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.bool_)
        if len(chunks) == 1:
            ids, ts, price, qty, ibm = chunks[0]
        else:
            ids, ts, price, qty, ibm = (np.concatenate([c[k] for c in chunks]) for k in range(5))
        take = ts < last
        n_take = int(take.sum())
        if n_take == ts.shape[0]:
            self._chunks, self._n_buffered = [], 0
        else:
            keep = ~take
            self._chunks = [(ids[keep], ts[keep], price[keep], qty[keep], ibm[keep])]
            self._n_buffered = ts.shape[0] - n_take
            ids, ts, price, qty, ibm = ids[take], ts[take], price[take], qty[take], ibm[take]
        if ts.shape[0] > 1:
            dt = np.diff(ts)
            if not bool(((dt > 0) | ((dt == 0) & (np.diff(ids) > 0))).all()):
                order = np.lexsort((ids, ts))
                ids, ts, price, qty, ibm = ids[order], ts[order], price[order], qty[order], ibm[order]
        return ids, ts, price, qty, ibm

    def _take_best_bid_ask(self, last: int) -> list[tuple[int, int, float, float]]:
        taken = sorted(b for b in self._best_bid_ask if b[0] < last)
        if taken:
            self._best_bid_ask = [b for b in self._best_bid_ask if b[0] >= last]
        return taken

    def _prune_seen(self) -> None:
        """Forget ids of seconds older than the de-duplication window (kept: anything at or above the
        smallest id of a retained second or of the buffer, so disorder never forgets a newer id)."""
        if self.next_close is None:
            return
        horizon = self.next_close - self.dedup_window_us
        closed = self._closed_ids
        if not closed or closed[0][0] >= horizon:
            return
        while closed and closed[0][0] < horizon:
            closed.popleft()
        lows = [low for _, low in closed] + [int(c[0].min()) for c in self._chunks]
        if lows:
            self._taken.drop_below(min(lows))
        else:
            self._taken.clear()

    @property
    def buffered(self) -> int:
        return self._n_buffered
