"""One symbol's live feature state: de-duplication, buffering, the close rule, grid start, warm-up, late counts.

The one owner of a symbol's live features: the processor, the inference fallback and any stream engine
(through ``snapshot``/``restore``) run this class, so the same deliveries give the same rows everywhere.
It wraps the streaming feature engine (``btcpipe.features.streaming``) and adds what a live stream needs
that a sorted tape does not:

- **Buffering and order.** Trades and best bid/ask updates wait in a buffer until their second closes;
  when it does they are handed to the engine sorted by (time, trade id / update id).
- **De-duplication.** A trade id taken before (within ``dedup_window_s``; ids kept as ranges) is counted
  as a duplicate and ignored; likewise a repeated best bid/ask update id. A trade the stream skipped and
  a REST gap fill publishes later is *not* a duplicate: it counts if its second is still open and is
  late otherwise.
- **Grid start and warm-up.** The grid starts at the first whole second after the first trade seen
  (``ceil_sec``; earlier trades only seed the carried price); rows are NaN until the windows fill
  (``complete_from``).
- **Closing on event time** (``close_ready``). Second ``t`` (the row describing ``[t − 1 s, t)``) closes
  as soon as every input the schema needs has shown it is past ``t``: the trade stream (ordered per
  symbol) delivered an event at or after ``t + disorder``, and, when the schema has ``spread``, the best
  bid/ask stream too. A heartbeat (``add_heartbeat(t)``: the ingestor vouches that every event before
  ``t`` has been published) moves every input in a quiet market.
- **Closing on wall time** (``close_until(now)``): every ``t`` with ``t + lateness <= now``, the fallback
  for a silent market without heartbeats; the caller decides when wall time may close (the processor
  only when its inputs are caught up).
- **Late events.** An event for a second that has already closed is counted and not applied; the rows
  whose windows miss a late trade are ``tainted_until`` (a consumer that must be exact can skip them).
- **Resume.** ``resume_after=L`` (the last row already emitted by a previous run) makes the state start
  its bars at ``L + 1 s − WINDOW_BARS s`` (not before ``resume_bars_from``, where the previous run's
  grid began) and emit from ``L + 1 s`` on: the caller re-reads the trailing window of events and the
  rows continue exactly where they stopped, warm-up rows included.
- **Snapshot.** ``snapshot()`` is the whole state as versioned plain data (JSON-serialisable, no pickle);
  ``SymbolFeatureState.restore`` rebuilds it so the rows after a restore are bit-identical.

Pure: no IO, no wall clock (times come in as arguments).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC, ceil_sec
from btcpipe.features import plain
from btcpipe.features.id_ranges import IdRanges, accept_mask
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import FeatureRow, StreamingFeatureEngine

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
TradeChunk = tuple[I64, I64, F64, F64, Bools]  # id, ts_event, price, qty, is_buyer_maker
SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class SymbolStats:
    """What a symbol's state took, dropped and emitted (counts since it started, kept across restores)."""

    trades: int = 0  # trades accepted into the buffer
    best_bid_ask: int = 0
    late_trades: int = 0
    late_best_bid_ask: int = 0
    duplicate_trades: int = 0
    duplicate_best_bid_ask: int = 0
    rows: int = 0  # rows closed (and returned to the caller)


class SymbolFeatureState:
    """One symbol's live feature state (see the module docstring).

    ``lateness_us``: how long after its end wall time closes a second (``close_until``).
    ``disorder_us``: how far past ``t`` an input's event time must be before ``close_ready`` closes ``t``
    (0 for Binance's per-symbol ordered trade stream; more only for a feed known to deliver out of order).
    ``needs_best_bid_ask``: whether event-time closing waits for the best bid/ask stream too (default:
    the schema has ``spread``).
    """

    def __init__(
        self,
        symbol: str,
        params: FeatureParams,
        *,
        lateness_us: int,
        disorder_us: int = 0,
        needs_best_bid_ask: bool | None = None,
        resume_after: int | None = None,
        resume_bars_from: int | None = None,
        dedup_window_s: int = 2 * WINDOW_BARS,
    ) -> None:
        if lateness_us < 0:
            raise ConfigError(f"lateness must be >= 0 µs, got {lateness_us}")
        if disorder_us < 0:
            raise ConfigError(f"disorder must be >= 0 µs, got {disorder_us}")
        if resume_after is not None and resume_after % US_PER_SEC:
            raise ConfigError(f"resume_after must be a whole second in µs, got {resume_after}")
        self.symbol = symbol
        self.params = params
        self.lateness_us = lateness_us
        self.disorder_us = disorder_us
        self.needs_best_bid_ask = params.with_spread if needs_best_bid_ask is None else needs_best_bid_ask
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
        self.heartbeat = -1  # newest time before which every event has been published (ingestor heartbeat)
        self.tainted_until = -1  # rows up to this second may miss a late trade
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
        if late and closed is not None:
            # a late trade sits at most in the bar just closed; it leaves the longest window after WINDOW_BARS
            self.tainted_until = max(self.tainted_until, closed + WINDOW_BARS * US_PER_SEC)
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

    def add_heartbeat(self, ts_us: int) -> None:
        """The ingestor vouches that every event of this symbol before ``ts_us`` has been published."""
        self.heartbeat = max(self.heartbeat, ts_us)

    # --- closing -------------------------------------------------------------------------------------
    @property
    def event_time(self) -> int:
        """How far every input the schema needs has shown it is (-1: not yet)."""
        trades = max(self.watermark, self.heartbeat)
        if not self.needs_best_bid_ask:
            return trades
        return min(trades, max(self.best_bid_ask_watermark, self.heartbeat))

    def _due(self, until_us: int, margin_us: int) -> int:
        if self.next_close is None or until_us < self.next_close + margin_us:
            return 0
        return (until_us - margin_us - self.next_close) // US_PER_SEC + 1

    def due(self, until_us: int) -> int:
        """How many seconds ``close_until(until_us)`` would close."""
        return self._due(until_us, self.lateness_us)

    def ready(self) -> int:
        """How many seconds ``close_ready()`` would close."""
        return self._due(self.event_time, self.disorder_us)

    def close_ready(self, max_rows: int | None = None) -> list[FeatureRow]:
        """Close every second the inputs have shown to be past (event time, module docstring), in order."""
        return self._close(self.ready(), max_rows)

    def close_until(self, until_us: int, max_rows: int | None = None, *, seen_past: bool = False) -> list[FeatureRow]:
        """Close every second ``t`` with ``t + lateness <= until_us`` (at most ``max_rows``), in order.

        ``seen_past``: only seconds some input (any stream or a heartbeat) has shown to be past — wall time
        for a caller that cannot tell a quiet stream from a stalled bus (the inference fallback).
        """
        n = self.due(until_us)
        if seen_past:
            n = min(n, self._due(max(self.watermark, self.best_bid_ask_watermark, self.heartbeat), 0))
        return self._close(n, max_rows)

    def _close(self, n: int, max_rows: int | None) -> list[FeatureRow]:
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

    # --- snapshot ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole state as versioned plain data: JSON-serialisable, exact (``btcpipe.features.plain``)."""
        if self._chunks:
            ids, ts, price, qty, ibm = (np.concatenate([c[k] for c in self._chunks]) for k in range(5))
        else:
            ids = ts = np.zeros(0, dtype=np.int64)
            price = qty = np.zeros(0)
            ibm = np.zeros(0, dtype=np.bool_)
        bba = self._best_bid_ask
        return {
            "kind": "symbol-feature-state", "version": SNAPSHOT_VERSION,
            "symbol": self.symbol, "params": self.params.to_json(),
            "lateness_us": self.lateness_us, "disorder_us": self.disorder_us,
            "needs_best_bid_ask": self.needs_best_bid_ask, "dedup_window_us": self.dedup_window_us,
            "stats": asdict(self.stats),
            "engine": None if self.engine is None else self.engine.snapshot(),
            "next_close": self.next_close, "first_row": self.first_row, "bars_from": self.bars_from,
            "watermark": self.watermark, "best_bid_ask_watermark": self.best_bid_ask_watermark,
            "heartbeat": self.heartbeat, "tainted_until": self.tainted_until,
            "trades": {"id": plain.pack_i64(ids), "ts": plain.pack_i64(ts), "price": plain.pack_f64(price),
                       "qty": plain.pack_f64(qty), "is_buyer_maker": plain.pack_bool(ibm)},
            "best_bid_ask": {"ts": plain.pack_i64([b[0] for b in bba]),
                             "update_id": plain.pack_i64([b[1] for b in bba]),
                             "bid": plain.pack_f64([b[2] for b in bba]), "ask": plain.pack_f64([b[3] for b in bba])},
            "taken": {"lo": plain.pack_i64(self._taken.lo), "hi": plain.pack_i64(self._taken.hi)},
            "closed_ids": [[t, low] for t, low in self._closed_ids],
            "max_best_bid_ask_id": self._max_best_bid_ask_id,
        }

    @classmethod
    def restore(cls, doc: object) -> SymbolFeatureState:
        """The state ``snapshot()`` described; ``DataError`` for an unknown version or malformed data."""
        d = plain.check_version(doc, "symbol-feature-state", SNAPSHOT_VERSION)
        try:
            params = FeatureParams.from_json(plain.field(d, "params", dict))
        except ConfigError as exc:
            raise DataError(f"snapshot params are invalid: {exc}") from exc
        dedup_us = int(plain.field(d, "dedup_window_us", int))
        state = cls(str(plain.field(d, "symbol", str)), params, lateness_us=int(plain.field(d, "lateness_us", int)),
                    disorder_us=int(plain.field(d, "disorder_us", int)),
                    needs_best_bid_ask=bool(plain.field(d, "needs_best_bid_ask", bool)))
        state.dedup_window_us = dedup_us
        stats = plain.field(d, "stats", dict)
        names = {f.name for f in fields(SymbolStats)}
        if set(stats) != names or not all(isinstance(v, int) for v in stats.values()):
            raise DataError(f"snapshot stats must be the integer counts {sorted(names)}")
        state.stats = SymbolStats(**stats)
        engine = d.get("engine")
        state.engine = None if engine is None else StreamingFeatureEngine.restore(state.symbol, params, engine)
        state.next_close = plain.optional_int(d, "next_close")
        state.first_row = plain.optional_int(d, "first_row")
        state.bars_from = plain.optional_int(d, "bars_from")
        if (state.engine is None) != (state.next_close is None):
            raise DataError("snapshot has an engine without a grid (or a grid without an engine)")
        state.watermark = int(plain.field(d, "watermark", int))
        state.best_bid_ask_watermark = int(plain.field(d, "best_bid_ask_watermark", int))
        state.heartbeat = int(plain.field(d, "heartbeat", int))
        state.tainted_until = int(plain.field(d, "tainted_until", int))
        state._max_best_bid_ask_id = int(plain.field(d, "max_best_bid_ask_id", int))
        t = plain.field(d, "trades", dict)
        chunk: TradeChunk = (plain.unpack_i64(t.get("id"), "trades.id"), plain.unpack_i64(t.get("ts"), "trades.ts"),
                             plain.unpack_f64(t.get("price"), "trades.price"),
                             plain.unpack_f64(t.get("qty"), "trades.qty"),
                             plain.unpack_bool(t.get("is_buyer_maker"), "trades.is_buyer_maker"))
        if len({c.shape[0] for c in chunk}) != 1:
            raise DataError("snapshot trade columns differ in length")
        if chunk[0].shape[0]:
            state._chunks, state._n_buffered = [chunk], int(chunk[0].shape[0])
        b = plain.field(d, "best_bid_ask", dict)
        cols = (plain.unpack_i64(b.get("ts"), "best_bid_ask.ts").tolist(),
                plain.unpack_i64(b.get("update_id"), "best_bid_ask.update_id").tolist(),
                plain.unpack_f64(b.get("bid"), "best_bid_ask.bid").tolist(),
                plain.unpack_f64(b.get("ask"), "best_bid_ask.ask").tolist())
        if len({len(c) for c in cols}) != 1:
            raise DataError("snapshot best bid/ask columns differ in length")
        state._best_bid_ask = list(zip(*cols, strict=True))
        taken = plain.field(d, "taken", dict)
        state._taken.lo = plain.unpack_i64(taken.get("lo"), "taken.lo")
        state._taken.hi = plain.unpack_i64(taken.get("hi"), "taken.hi")
        if state._taken.lo.shape != state._taken.hi.shape:
            raise DataError("snapshot id ranges differ in length")
        state._closed_ids = deque((int(t), int(low)) for t, low in plain.field(d, "closed_ids", list))
        return state
