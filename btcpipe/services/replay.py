"""Replay: recorded or bronze market events onto the bus, as the ingestor publishes them.

Events of every stream are merged in exchange time and published with the ingestor's messages:
trades as ``MarketTradeColumns`` (one batch per run of trades with the same time, like one SBE trades
frame, capped at ``max_batch``; cut straight from the tape's arrays, no per-trade objects), best
bid/ask as ``BestBidAsk``, depth diffs as ``DepthDelta``, each
keyed by the symbol. ``speed`` paces the publishing against a clock (``1.0`` real time, ``50`` fifty
times faster); ``None`` publishes as fast as the bus takes it.

A bus error (Redis restarting, a failover) does not end the replay: the chunk is published again after a
capped exponential backoff, for up to ``max_outage_s``; records a failed publish had already written come
twice, which consumers drop by event id (at-least-once, as everywhere on the bus).

Sources: ``tape_from_recording(paths)`` (a recording of Binance's JSON streams) or
``tape_from_lake(lake, symbol, start_us, end_us)`` (bronze ``trades`` and, when present, ``bookTicker``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_TRADES, Bus
from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import BusError, ConfigError, DataError
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade
from btcpipe.domain.tape import BestBidAskTape, DepthTape, MarketTape, TradeTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.wire.codec import TradeColumns, encode_best_bid_ask, encode_depth_delta, encode_trade_columns

if TYPE_CHECKING:
    from btcpipe.lake.lake import Lake

log = logging.getLogger(__name__)

ALL_KINDS = ("trade", "bestbidask", "depth")


@dataclass(slots=True)
class ReplayResult:
    """What a replay published: trades, batches, best bid/ask and depth records, and its time span."""

    trades: int = 0
    trade_messages: int = 0
    best_bid_ask: int = 0
    depth: int = 0
    first_us: int | None = None
    last_us: int | None = None
    wall_s: float = 0.0
    bus_errors: int = 0  # publishes that failed and were retried

    @property
    def messages(self) -> int:
        return self.trade_messages + self.best_bid_ask + self.depth


# --- tapes → records ---------------------------------------------------------------------------------
def trade_batches(symbol: str, tape: TradeTape, exponent: int, max_batch: int = 100) -> Iterator[list[Trade]]:
    """Trades in tape order, grouped into runs with the same time (at most ``max_batch`` each)."""
    n = len(tape)
    ids, ts, price, qty, ibm = (tape.id.tolist(), tape.ts_event.tolist(), tape.price.tolist(), tape.qty.tolist(),
                                tape.is_buyer_maker.tolist())
    recv = tape.ts_recv.tolist() if tape.ts_recv is not None else [0] * n
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < max_batch and ts[j] == ts[i]:
            j += 1
        yield [Trade(symbol, ids[k], ts[k], price[k], qty[k], bool(ibm[k]), exponent, exponent, recv[k])
               for k in range(i, j)]
        i = j


def trade_column_batches(symbol: str, tape: TradeTape, exponent: int, max_batch: int = 100) -> Iterator[TradeColumns]:
    """``trade_batches`` as column slices of the tape (the same runs)."""
    n = len(tape)
    if n == 0:
        return
    ts = tape.ts_event
    run_start = np.concatenate(([True], ts[1:] != ts[:-1]))
    run_first = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    cuts = [*np.flatnonzero((np.arange(n) - run_first) % max_batch == 0).tolist(), n]
    recv = tape.ts_recv if tape.ts_recv is not None else np.zeros(n, dtype=np.int64)
    ibm = tape.is_buyer_maker.astype(np.bool_, copy=False)
    for a, b in itertools.pairwise(cuts):
        yield TradeColumns(symbol, tape.id[a:b], ts[a:b], recv[a:b], tape.price[a:b], tape.qty[a:b], ibm[a:b],
                           exponent, exponent)


def best_bid_asks(symbol: str, tape: BestBidAskTape, exponent: int) -> Iterator[BestBidAsk]:
    recv = tape.ts_recv.tolist() if tape.ts_recv is not None else [0] * len(tape)
    for k, (ts, uid, bp, bq, ap, aq) in enumerate(zip(
        tape.ts_event.tolist(), tape.update_id.tolist(), tape.bid_price.tolist(), tape.bid_qty.tolist(),
        tape.ask_price.tolist(), tape.ask_qty.tolist(), strict=True,
    )):
        yield BestBidAsk(symbol, ts, uid, bp, bq, ap, aq, exponent, exponent, recv[k])


def depth_diffs(symbol: str, tape: DepthTape, exponent: int) -> Iterator[DepthDiff]:
    off = tape.offsets.tolist()
    is_ask, lp, lq = tape.level_is_ask.tolist(), tape.level_price.tolist(), tape.level_qty.tolist()
    recv = tape.ts_recv.tolist() if tape.ts_recv is not None else [0] * len(tape)
    for k, (ts, first, last) in enumerate(zip(tape.ts_event.tolist(), tape.first_update_id.tolist(),
                                              tape.last_update_id.tolist(), strict=True)):
        levels = range(off[k], off[k + 1])
        bids = tuple((lp[q], lq[q]) for q in levels if not is_ask[q])
        asks = tuple((lp[q], lq[q]) for q in levels if is_ask[q])
        yield DepthDiff(symbol, ts, first, last, bids, asks, exponent, exponent, recv[k])


Event = tuple[int, int, str, object]  # (ts_event, stream order, stream, record or trade batch)


def market_events(tape: MarketTape, kinds: Sequence[str] = ALL_KINDS, max_batch: int = 100) -> Iterator[Event]:
    """The tape's events of ``kinds`` merged in exchange time (ties: trades, then bid/ask, then depth)."""
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        raise ConfigError(f"unknown event kinds {sorted(unknown)}; expected some of {list(ALL_KINDS)}")
    sources: list[Iterator[Event]] = []
    if "trade" in kinds:
        sources.append((int(b.ts_event[0]), 0, STREAM_TRADES, b)
                       for b in trade_column_batches(tape.symbol, tape.trades, tape.exponent, max_batch))
    if "bestbidask" in kinds and tape.best_bid_asks is not None:
        sources.append((b.ts_event, 1, STREAM_BEST_BID_ASK, b)
                       for b in best_bid_asks(tape.symbol, tape.best_bid_asks, tape.exponent))
    if "depth" in kinds and tape.depth is not None:
        sources.append((d.ts_event, 2, STREAM_DEPTH, d) for d in depth_diffs(tape.symbol, tape.depth, tape.exponent))
    return heapq.merge(*sources, key=lambda e: (e[0], e[1]))


# --- publishing --------------------------------------------------------------------------------------
def _encode(stream: str, item: object) -> bytes:
    if stream == STREAM_TRADES:
        assert isinstance(item, TradeColumns)
        return encode_trade_columns(item)
    if stream == STREAM_BEST_BID_ASK:
        assert isinstance(item, BestBidAsk)
        return encode_best_bid_ask(item)
    assert isinstance(item, DepthDiff)
    return encode_depth_delta(item)


def replay(
    tapes: MarketTape | Iterable[MarketTape],
    bus: Bus,
    *,
    kinds: Sequence[str] = ALL_KINDS,
    speed: float | None = None,
    wall: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    chunk_us: int = 50_000,
    coalesce_trades: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    max_outage_s: float = 300.0,
    rng: random.Random | None = None,
) -> ReplayResult:
    """Publish the tapes' events in exchange time; paced at ``speed`` × real time when given.

    Events are published per ``chunk_us`` of exchange time (one ``publish`` per stream and symbol per
    chunk, the way a live ingestor batches a poll), so pacing costs one wait per chunk. ``coalesce_trades``
    puts a chunk's trades of a symbol in one ``MarketTradeColumns`` (an ingestor batching per poll) instead of
    one per same-time run (per SBE frame, as the ingestor publishes).
    """
    if speed is not None and speed <= 0:
        raise ConfigError(f"replay speed must be positive, got {speed}")
    tape_list = [tapes] if isinstance(tapes, MarketTape) else list(tapes)
    merged = heapq.merge(*(market_events(t, kinds) for t in tape_list), key=lambda e: (e[0], e[1]))
    result = ReplayResult()
    started = wall()
    pending: dict[tuple[str, str], list[bytes]] = {}
    chunk_end: int | None = None

    trade_runs: dict[str, list[TradeColumns]] = {}

    def flush() -> None:
        for symbol, runs in trade_runs.items():
            pending.setdefault((STREAM_TRADES, symbol), []).append(encode_trade_columns(_concat(runs)))
            result.trade_messages += 1
        trade_runs.clear()
        for (stream, symbol), payloads in pending.items():
            publish(stream, symbol, payloads)
        pending.clear()

    jitter = rng or random.Random()

    def publish(stream: str, symbol: str, payloads: list[bytes]) -> None:
        """Publish, riding out bus errors for up to ``max_outage_s`` (then the error is raised)."""
        attempt, failing_since = 0, None
        while True:
            try:
                bus.publish(stream, symbol, payloads)
                return
            except BusError as exc:
                attempt += 1
                result.bus_errors += 1
                now = wall()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= max_outage_s or should_stop():
                    raise
                delay = backoff_delay(attempt, 0.1, 5.0, jitter)
                log.warning("bus unreachable; publishing again", extra={
                    "stream": stream, "symbol": symbol, "attempt": attempt, "error": str(exc),
                    "retry_in_s": round(delay, 3)})
                sleep(delay)

    for ts, _, stream, item in merged:
        if chunk_end is None:
            chunk_end = ts - ts % chunk_us + chunk_us
            result.first_us = ts
        if ts >= chunk_end:
            flush()
            if should_stop():
                break
            chunk_end = ts - ts % chunk_us + chunk_us
            if speed is not None and result.first_us is not None:
                due = started + (ts - result.first_us) / US_PER_SEC / speed
                delay = due - wall()
                if delay > 0:
                    sleep(delay)
        symbol = getattr(item, "symbol")  # noqa: B009
        if coalesce_trades and isinstance(item, TradeColumns):
            trade_runs.setdefault(symbol, []).append(item)
        else:
            pending.setdefault((stream, symbol), []).append(_encode(stream, item))
        result.last_us = ts
        if stream == STREAM_TRADES:
            assert isinstance(item, TradeColumns)
            result.trades += len(item)
            result.trade_messages += 0 if coalesce_trades else 1
        elif stream == STREAM_BEST_BID_ASK:
            result.best_bid_ask += 1
        else:
            result.depth += 1
    flush()
    result.wall_s = wall() - started
    log.info("replay finished", extra={"trades": result.trades, "best_bid_ask": result.best_bid_ask,
                                       "depth": result.depth,
                                       "wall_s": round(result.wall_s, 3)})
    return result


def _concat(runs: list[TradeColumns]) -> TradeColumns:
    if len(runs) == 1:
        return runs[0]
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in runs])

    r0 = runs[0]
    return TradeColumns(r0.symbol, cat("id"), cat("ts_event"), cat("ts_recv"), cat("price_mantissa"),
                        cat("qty_mantissa"), cat("is_buyer_maker"), r0.price_exponent, r0.qty_exponent)


# --- sources -----------------------------------------------------------------------------------------
def tape_from_recording(paths: Sequence[str | Path]) -> MarketTape:
    from btcpipe.binance.recording import load_recording

    if not paths:
        raise ConfigError("no recording files given")
    return load_recording(paths).to_tape()


def tape_from_lake(lake: Lake, symbol: str, start_us: int, end_us: int) -> MarketTape:
    """Bronze trades (and bookTicker when bronze has it for the span) of ``[start_us, end_us)``."""
    from btcpipe.features.tables import book_tape_from_bronze, trade_tape_from_bronze

    if end_us <= start_us:
        raise ConfigError(f"replay span is empty: end {end_us} <= start {start_us}")
    trades = trade_tape_from_bronze(lake.read_bronze("trades", symbol, start_us, end_us))
    if not len(trades):
        raise DataError(f"bronze has no {symbol} trades in the span")
    book = None
    if lake.bronze_days("bookTicker", symbol):
        table = lake.read_bronze("bookTicker", symbol, start_us, end_us)
        book = book_tape_from_bronze(table) if table.num_rows else None
    return MarketTape(symbol, trades, book)
