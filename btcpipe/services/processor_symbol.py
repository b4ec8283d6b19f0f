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

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC, ceil_sec
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import FeatureRow, StreamingFeatureEngine


@dataclass(slots=True)
class SymbolStats:
    trades: int = 0  # trades accepted into the buffer
    bbo: int = 0
    late_trades: int = 0
    late_bbo: int = 0
    duplicate_trades: int = 0
    duplicate_bbo: int = 0
    rows: int = 0  # rows closed (and returned to the caller)


class SymbolFeatureState:
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
        self.bbo_watermark = -1
        # Buffered trades (not yet in a closed second), column lists in arrival order.
        self._id: list[int] = []
        self._ts: list[int] = []
        self._price: list[float] = []
        self._qty: list[float] = []
        self._ibm: list[bool] = []
        self._bbo: list[tuple[int, int, float, float]] = []  # (ts, update id, bid, ask)
        # Trade ids seen: buffered ones and those of recently closed seconds (pruned by second).
        self._seen: set[int] = set()
        self._closed_ids: deque[tuple[int, list[int]]] = deque()
        self._max_bbo_id = -1

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
        closed = self.closed_until
        floor = -1 if closed is None else closed
        seen = self._seen
        accepted = late = dup = 0
        wm = self.watermark
        for t in trades:
            if t.id in seen:
                dup += 1
                continue
            ts = t.ts_event
            if ts < floor:
                late += 1
                continue
            seen.add(t.id)
            self._id.append(t.id)
            self._ts.append(ts)
            self._price.append(t.price)
            self._qty.append(t.qty)
            self._ibm.append(t.is_buyer_maker)
            wm = max(wm, ts)
            accepted += 1
        self.watermark = wm
        self.stats.trades += accepted
        self.stats.late_trades += late
        self.stats.duplicate_trades += dup
        if self.next_close is None and accepted:
            # The grid starts at the first second seen completely; earlier trades only seed the price.
            start = ceil_sec(min(self._ts))
            self._start(start, first_row=start + US_PER_SEC)
        return accepted

    def add_bbo(self, bbo: BestBidAsk) -> bool:
        """Buffer a best bid/ask update; False when it is late or a repeat of an update id already taken."""
        closed = self.closed_until
        if bbo.update_id <= self._max_bbo_id and any(b[1] == bbo.update_id for b in self._bbo):
            self.stats.duplicate_bbo += 1
            return False
        if closed is not None and bbo.ts_event < closed:
            if bbo.update_id <= self._max_bbo_id:
                self.stats.duplicate_bbo += 1
            else:
                self.stats.late_bbo += 1
            return False
        self._bbo.append((bbo.ts_event, bbo.update_id, bbo.bid_price, bbo.ask_price))
        self._max_bbo_id = max(self._max_bbo_id, bbo.update_id)
        self.bbo_watermark = max(self.bbo_watermark, bbo.ts_event)
        self.stats.bbo += 1
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
        ts, price, qty, ibm, ids = self._take_trades(last)
        bbo = self._take_bbo(last)
        rows: list[FeatureRow] = []
        lo = blo = 0
        engine = self.engine
        for k in range(n):
            t = self.next_close + k * US_PER_SEC
            hi = int(np.searchsorted(ts, t, side="left"))
            if hi > lo:
                engine.add_trades(ts[lo:hi], price[lo:hi], qty[lo:hi], ibm[lo:hi])
                self._remember_closed(t, ids[lo:hi])
                lo = hi
            while blo < len(bbo) and bbo[blo][0] < t:
                engine.add_bbo(bbo[blo][0], bbo[blo][2], bbo[blo][3])
                blo += 1
            rows.append(engine.close_second(t))
        self.next_close = last + US_PER_SEC
        self.stats.rows += n
        self._prune_seen()
        return rows

    def _take_trades(self, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Buffered trades before ``last`` sorted by (time, id); the rest stay buffered."""
        ts_all = np.fromiter(self._ts, dtype=np.int64, count=len(self._ts))
        take = ts_all < last
        if not take.any():
            empty = np.zeros(0, dtype=np.int64)
            return empty, np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.bool_), empty
        ids_all = np.fromiter(self._id, dtype=np.int64, count=len(self._id))
        price_all = np.asarray(self._price, dtype=np.float64)
        qty_all = np.asarray(self._qty, dtype=np.float64)
        ibm_all = np.asarray(self._ibm, dtype=np.bool_)
        ts, ids = ts_all[take], ids_all[take]
        order = np.lexsort((ids, ts))
        keep = ~take
        if keep.any():
            self._id = ids_all[keep].tolist()
            self._ts = ts_all[keep].tolist()
            self._price = price_all[keep].tolist()
            self._qty = qty_all[keep].tolist()
            self._ibm = ibm_all[keep].tolist()
        else:
            self._id, self._ts, self._price, self._qty, self._ibm = [], [], [], [], []
        return ts[order], price_all[take][order], qty_all[take][order], ibm_all[take][order], ids[order]

    def _take_bbo(self, last: int) -> list[tuple[int, int, float, float]]:
        taken = sorted(b for b in self._bbo if b[0] < last)
        if taken:
            self._bbo = [b for b in self._bbo if b[0] >= last]
        return taken

    def _remember_closed(self, second: int, ids: np.ndarray) -> None:
        self._closed_ids.append((second, ids.tolist()))

    def _prune_seen(self) -> None:
        if self.next_close is None:
            return
        horizon = self.next_close - self.dedup_window_us
        while self._closed_ids and self._closed_ids[0][0] < horizon:
            _, ids = self._closed_ids.popleft()
            self._seen.difference_update(ids)

    @property
    def buffered(self) -> int:
        return len(self._ts)
