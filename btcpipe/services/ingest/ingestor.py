"""The ingestor service: market streams → gap checks, order books → the bus (Avro) and bronze.

Composition only. Ports: a ``MarketSource`` (``btcpipe.binance.ws_client.MarketStreamClient``, or any
async source of normalized records), a ``Bus``, a ``MarketRest`` (``BinanceRestClient``: gap fill and depth
snapshots) and a ``BronzeSink`` (``Lake``). Entry point::

    ingestor = Ingestor(source, bus, symbols=["BTCUSDT"], rest=rest, lake=lake, metrics=metrics)
    stats = await ingestor.run(until=lambda ing: ing.last_trade_id("BTCUSDT") >= 42, duration_s=60)
    ingestor.stop()  # from any thread or task; run() then flushes the bus and bronze and returns

What it does with each record:
- trades (one ``MarketTradeBatch`` per stream event on ``market-sbe-trade``, key = symbol): a trade-id gap
  becomes a ``TradeGap``, is filled from REST ``historicalTrades`` from the first missing id, and the filled
  trades are published in id order BEFORE the trades that revealed the gap (so the bus stays in id order);
  in bronze they are marked by their source (``rest-gapfill``, the REST page kept as raw), and every gap is
  kept in ``ingestor.gaps`` with ``filled``. A fill that fails is retried in the background (then published
  late, after newer trades), counted by outcome.
- best bid/ask → ``market-sbe-bestbidask``; depth diffs → ``market-sbe-depth`` and the symbol's
  ``BookSynchronizer`` (snapshot + buffered diffs; a missed diff → resync from a new REST snapshot, counted).
- all three appended to bronze in batches (trades, bookTicker, depth).
- ``heartbeat_margin_ms`` after each whole second ``t``, a ``Heartbeat(symbol, t)`` on ``market-heartbeat``
  (``services.ingest.heartbeat``): consumers close ``t`` in a quiet market without waiting for wall time.

Stopping is bounded: REST calls run on daemon threads and are given up the moment ``stop()`` is called (a
gap fill in progress is abandoned and its gap counted ``abandoned``, a pending depth snapshot is dropped), so
``run`` goes straight to publishing what it accepted and flushing bronze; the bus gets at most
``stop_flush_s`` for what is still queued, and whatever it did not take is counted in ``stats.unpublished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa
from prometheus_client import Counter, Gauge

from btcpipe.binance.json_messages import parse_depth_snapshot
from btcpipe.binance.order_book import BookSynchronizer, OrderBook, SnapshotOutcome
from btcpipe.binance.rest_parsing import rest_trades, trade_records
from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_messages import MarketEvent, event_kind
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_HEARTBEAT, STREAM_TRADES, Bus
from btcpipe.domain.errors import ConfigError, DataError, ExchangeError, RequestCancelledError
from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade, TradeGap
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.shutdown import in_daemon_thread
from btcpipe.infra.tracing import NO_TRACING, TraceSpan, Tracing
from btcpipe.lake.ports import BronzeSink
from btcpipe.services.ingest.bronze import BronzeWriter
from btcpipe.services.ingest.heartbeat import TransitWindow, heartbeat_loop
from btcpipe.services.ingest.publish import BusPublisher
from btcpipe.services.ingest.trades import TradeSequencer
from btcpipe.wire.codec import encode_best_bid_ask, encode_depth_delta, encode_heartbeat, encode_trades

log = logging.getLogger(__name__)

Sink = Callable[[MarketEvent], Awaitable[None]]
GAP_FILL_SOURCE = "rest-gapfill"


class MarketSource(Protocol):
    """A source of live market events (the WebSocket stream client)."""

    async def run(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...


class RestPage(Protocol):
    """One REST answer as the ingestor reads it."""

    @property
    def body(self) -> Any: ...  # the parsed JSON

    @property
    def raw(self) -> bytes: ...  # the bytes that arrived

    @property
    def table(self) -> Any: ...  # the bronze table (pyarrow) when the client builds one, else None


class MarketRest(Protocol):
    """What the ingestor asks of REST (``btcpipe.binance.rest.BinanceRestClient``; blocking, run in a thread)."""

    def historical_trades(self, symbol: str, from_id: int | None = None, limit: int = 1000) -> RestPage: ...

    def depth(self, symbol: str, limit: int = 100) -> RestPage: ...


def _page_trades(page: RestPage, symbol: str, ts_recv: int) -> list[Trade]:
    """The page's trades in id order, from the bronze table the REST client already parsed when it has one."""
    if isinstance(page.table, pa.Table):
        return trade_records(page.table, symbol, ts_recv=ts_recv)
    return rest_trades(page.body, symbol, ts_recv=ts_recv)


@dataclass(frozen=True)
class IngestSettings:
    """The ingestor's snapshot and gap-fill sizes and retries, staleness bound, bronze flush and bus back-pressure."""

    snapshot_limit: int = 5000
    gap_fill_page: int = 1000
    gap_fill_attempts: int = 3  # inline tries before a gap is left to the background retry
    gap_retry_s: float = 2.0
    gap_max_retries: int = 30  # background tries before a gap is reported as unfillable
    snapshot_retry_s: float = 0.25
    stale_after_s: float = 30.0  # health turns bad when nothing arrived for this long
    bronze_max_rows: int = 20_000
    bronze_max_age_s: float = 10.0
    publish_max_pending: int = 200_000
    # Heartbeat on market-heartbeat this long after each second, on top of the slowest recent transit
    # (services.ingest.heartbeat); None: none.
    heartbeat_margin_ms: float | None = 5.0
    heartbeat_tolerance_ms: float = 500.0  # no heartbeat while events' transit is beyond this (clocks disagree)
    housekeeping_s: float = 0.1
    stop_flush_s: float = 3.0  # after stop(): at most this long for the bus to take what is queued


@dataclass(slots=True)
class IngestStats:
    """What the ingestor has done: events by kind, trades published, gaps found and filled, resyncs, snapshots."""

    events: dict[str, int] = field(default_factory=dict)  # by kind
    trades_published: int = 0  # from the stream
    heartbeats: int = 0  # published on market-heartbeat
    gaps: int = 0
    gap_ids: int = 0
    gap_trades_filled: int = 0
    gap_fills: dict[str, int] = field(default_factory=dict)  # by outcome: filled, deferred, unfillable, abandoned
    resyncs: int = 0
    snapshots: int = 0
    snapshots_stale: int = 0
    rest_errors: int = 0
    abandoned: dict[str, int] = field(default_factory=dict)  # REST work given up at stop: gap_fill, depth_snapshot
    unpublished: int = 0  # payloads the bus had not taken when the stop's flush time ran out


@dataclass(slots=True)
class _OpenGap:
    gap: TradeGap
    tries: int = 0


class Ingestor:
    """The live ingestor: stream events → gap checks and REST fills, order book → bronze and bus."""

    def __init__(
        self,
        source: MarketSource,
        bus: Bus,
        *,
        symbols: Sequence[str],
        rest: MarketRest | None = None,
        lake: BronzeSink | None = None,
        metrics: Metrics | None = None,
        settings: IngestSettings | None = None,
        now_us: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        if not symbols:
            raise ConfigError("the ingestor needs at least one symbol")
        self.tracing = tracing
        self.source = source
        self.bus = bus
        self.symbols = tuple(s.upper() for s in symbols)
        self.rest = rest
        self.metrics = metrics
        self.settings = settings or IngestSettings()
        self.stats = IngestStats()
        self.books = {s: BookSynchronizer(s) for s in self.symbols}
        self.sequencers = {s: TradeSequencer(s) for s in self.symbols}
        self.transit = {s: TransitWindow() for s in self.symbols}  # receive − exchange time, for the heartbeat
        self.gaps: list[TradeGap] = []  # every gap seen, ``filled`` updated when it is
        self._now_us = now_us or (lambda: time.time_ns() // 1000)
        self._monotonic = monotonic
        s = self.settings
        from btcpipe.bus.memory import InProcessBus

        # The in-process bus never blocks: a thread hop per batch would cost more than the publish.
        self.publisher = BusPublisher(bus, metrics=metrics, max_pending=s.publish_max_pending, now_us=self._now_us,
                                      in_thread=not isinstance(bus, InProcessBus))
        self.bronze = (
            None if lake is None
            else BronzeWriter(lake, max_rows=s.bronze_max_rows, max_age_s=s.bronze_max_age_s, monotonic=monotonic)
        )
        self._open_gaps: list[_OpenGap] = []
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._message_counters: dict[tuple[str, str], tuple[Counter, Gauge]] = {}
        self._last_event_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False
        self._running = False
        self._until: Callable[[Ingestor], bool] | None = None
        self._filling = 0  # gap fills in flight (no heartbeat meanwhile)

    # --- public ----------------------------------------------------------------------------------------
    def last_trade_id(self, symbol: str) -> int:
        """The newest trade id received on the stream for ``symbol`` (-1 before the first)."""
        last = self.sequencers[symbol.upper()].last_id
        return -1 if last is None else last

    def book(self, symbol: str) -> OrderBook | None:
        """The live order book of ``symbol``, or None while it (re)synchronizes."""
        return self.books[symbol.upper()].book

    @property
    def open_gaps(self) -> list[TradeGap]:
        return [g.gap for g in self._open_gaps]

    def stop(self) -> None:
        """Ask ``run`` to finish (safe from any thread, and before ``run``)."""
        self._stop_requested = True
        loop, event = self._loop, self._stop_event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def health(self) -> tuple[bool, dict[str, object]]:
        """For ``serve_metrics(..., health=ingestor.health)``: ok while running, connected and fresh."""
        age = None if self._last_event_at is None else round(self._monotonic() - self._last_event_at, 3)
        connected = bool(getattr(self.source, "connected", True))
        fresh = age is None or age < self.settings.stale_after_s
        ok = self._running and connected and fresh and not self.publisher.failing
        detail: dict[str, object] = {
            "running": self._running,
            "connected": connected,
            "mode": getattr(self.source, "mode", None),
            "last_event_age_s": age,
            "books_synced": {s: b.synced for s, b in self.books.items()},
            "open_gaps": len(self._open_gaps),
            "publish_pending": self.publisher.pending,
            "bus_failing": self.publisher.failing,
            "bronze_pending": 0 if self.bronze is None else self.bronze.pending_rows,
        }
        return ok, detail

    async def run(
        self, until: Callable[[Ingestor], bool] | None = None, *, duration_s: float | None = None
    ) -> IngestStats:
        """Ingest until ``stop()``, ``until(self)`` is true (checked after every record), ``duration_s`` passes,
        or the source ends. Then the bus queue and bronze are flushed. Errors of the source propagate."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._until = until
        if self._stop_requested:
            return self.stats
        self._running = True
        self.publisher.start()
        deadline = None if duration_s is None else self._monotonic() + duration_s
        source_task = asyncio.create_task(self.source.run(self._on_event), name="ingest-source")
        house = asyncio.create_task(self._housekeeping(deadline), name="ingest-housekeeping")
        margin = self.settings.heartbeat_margin_ms
        beats = asyncio.create_task(
            heartbeat_loop(self.symbols, margin_us=int(margin * 1000),
                           tolerance_us=int(self.settings.heartbeat_tolerance_ms * 1000),
                           transit=self.transit.__getitem__, now_us=self._now_us, ready=self._heartbeat_ready,
                           publish=self._publish_heartbeat)
            if margin is not None else asyncio.sleep(0), name="ingest-heartbeat")
        stopped = asyncio.create_task(self._stop_event.wait(), name="ingest-stop")
        try:
            await asyncio.wait({source_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            self.source.stop()
            await source_task
        finally:
            self._running = False
            self.source.stop()
            for symbol in self._snapshot_tasks:
                self._abandon("depth_snapshot", symbol)
            for task in (house, beats, stopped, *self._snapshot_tasks.values()):
                task.cancel()
            await asyncio.gather(house, beats, stopped, *self._snapshot_tasks.values(), return_exceptions=True)
            if not source_task.done():
                source_task.cancel()
                await asyncio.gather(source_task, return_exceptions=True)
            self.stats.unpublished = await self.publisher.close(self.settings.stop_flush_s)
            if self.bronze is not None:
                await self.bronze.flush()
            log.info("ingestor stopped", extra={"events": self.stats.events, "gaps": self.stats.gaps,
                                                "resyncs": self.stats.resyncs, "abandoned": self.stats.abandoned,
                                                "unpublished": self.stats.unpublished,
                                                "open_gaps": len(self._open_gaps)})
        return self.stats

    # --- REST, given up at stop ----------------------------------------------------------------------------
    async def _rest_call(self, fn: Callable[..., RestPage], *args: Any) -> RestPage:
        """``fn(*args)`` on a daemon thread; raises ``RequestCancelledError`` as soon as ``stop()`` is called,
        so neither a slow server nor a weight-window wait can hold up the stop."""
        assert self._stop_event is not None
        call = asyncio.ensure_future(in_daemon_thread(fn, *args))
        stopped = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not call.done():
            call.cancel()
            raise RequestCancelledError(f"{getattr(fn, '__name__', 'REST call')}: given up, the ingestor is stopping")
        return call.result()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless (or until) ``stop()`` is called."""
        if self._stop_event is not None and not self._stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), seconds)

    def _abandon(self, what: str, symbol: str) -> None:
        self.stats.abandoned[what] = self.stats.abandoned.get(what, 0) + 1
        log.warning("REST work given up at stop", extra={"what": what, "symbol": symbol})

    # --- per record --------------------------------------------------------------------------------------
    def _count(self, kind: str, symbol: str) -> None:
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1
        if self.metrics is not None:
            children = self._message_counters.get((kind, symbol))
            if children is None:
                children = self._message_counters[(kind, symbol)] = (
                    self.metrics.ingest_messages.labels(kind, symbol), self.metrics.ingest_last_message.labels(kind)
                )
            children[0].inc()
            children[1].set(time.time())

    async def _on_event(self, event: MarketEvent) -> None:
        symbol = event.symbol
        if symbol not in self.books:
            return  # a stream we did not ask for
        self._last_event_at = self._monotonic()
        self._count(event_kind(event), symbol)
        if isinstance(event, TradesEvent):
            if event.trades:  # transit by the heartbeat's clock (the ingestor's), not the stream client's
                self.transit[symbol].observe(self._now_us(), event.trades[-1].ts_event)
            await self._on_trades(symbol, event)
        elif isinstance(event, BestBidAsk):
            self.transit[symbol].observe(self._now_us(), event.ts_event)
            await self.publisher.add(STREAM_BEST_BID_ASK, symbol, encode_best_bid_ask(event), event.ts_recv)
            if self.bronze is not None:
                self.bronze.add([event], "ws")
        elif isinstance(event, DepthDiff):
            await self.publisher.add(STREAM_DEPTH, symbol, encode_depth_delta(event), event.ts_recv)
            if self.bronze is not None:
                self.bronze.add([event], "ws")
            self._on_diff(symbol, event)
        if self._until is not None and self._until(self):
            self.stop()

    async def _on_trades(self, symbol: str, event: TradesEvent) -> None:
        fresh, gaps = self.sequencers[symbol].accept(event.trades, self._now_us())
        for gap in gaps:
            await self._on_gap(gap)
        if fresh:
            span = self._trace_trades(symbol, fresh, event.ts_recv) if self.tracing.enabled else None
            await self.publisher.add(STREAM_TRADES, symbol, encode_trades(fresh), event.ts_recv, span)
            self.stats.trades_published += len(fresh)
            if self.bronze is not None:
                self.bronze.add(fresh, "ws")

    def _trace_trades(self, symbol: str, trades: Sequence[Trade], ts_recv: int) -> TraceSpan | None:
        """A sampled frame: its receive/decode span (from ts_recv until now) and the open publish span under it."""
        if not self.tracing.sample():
            return None
        attributes: dict[str, str | int] = {"symbol": symbol, "trades": len(trades), "first_id": trades[0].id,
                                           "last_id": trades[-1].id}
        receive = self.tracing.start("ingest.receive", attributes=attributes,
                                     start_ns=ts_recv * 1000 if ts_recv else None)
        receive.end()
        return self.tracing.start("bus.publish", parent=receive.traceparent,
                                  attributes={"stream": STREAM_TRADES, "symbol": symbol})

    # --- trade gaps --------------------------------------------------------------------------------------
    def _fill_outcome(self, symbol: str, outcome: str) -> None:
        self.stats.gap_fills[outcome] = self.stats.gap_fills.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.ingest_gap_fills.labels(symbol, outcome).inc()

    def _heartbeat_ready(self, symbol: str) -> bool:
        """Whether a heartbeat may vouch for ``symbol``'s streams (see ``services.ingest.heartbeat``)."""
        return (self._running and not self._filling and not self._open_gaps and not self.publisher.failing
                and bool(getattr(self.source, "connected", True)) and self.sequencers[symbol].last_id is not None)

    async def _publish_heartbeat(self, heartbeat: Heartbeat) -> None:
        await self.publisher.add(STREAM_HEARTBEAT, heartbeat.symbol, encode_heartbeat(heartbeat), 0)
        self.stats.heartbeats += 1

    async def _on_gap(self, gap: TradeGap) -> None:
        self._filling += 1
        try:
            await self._fill_gap(gap)
        finally:
            self._filling -= 1

    async def _fill_gap(self, gap: TradeGap) -> None:
        n = gap.last_missing - gap.first_missing + 1
        self.stats.gaps += 1
        self.stats.gap_ids += n
        self.gaps.append(gap)
        if self.metrics is not None:
            self.metrics.ingest_trade_gaps.labels(gap.symbol).inc()
            self.metrics.ingest_trade_gap_ids.labels(gap.symbol).inc(n)
        log.warning("trade-id gap on the stream; filling from REST",
                    extra={"symbol": gap.symbol, "first_missing": gap.first_missing,
                           "last_missing": gap.last_missing, "missing": n})
        open_gap = _OpenGap(gap)
        for attempt in range(max(self.settings.gap_fill_attempts, 1)):
            if await self._try_fill(open_gap):
                return
            if self._stop_requested:
                # The trades that revealed the gap are published next; the gap stays open, said so.
                self._fill_outcome(gap.symbol, "abandoned")
                self._abandon("gap_fill", gap.symbol)
                return
            await self._pause(min(0.05 * 2**attempt, 1.0))
        self._fill_outcome(gap.symbol, "deferred")
        self._open_gaps.append(open_gap)

    async def _try_fill(self, open_gap: _OpenGap) -> bool:
        """Fetch and publish what is still missing of ``open_gap``; True once all of it is filled."""
        if self.rest is None:
            return False
        gap = open_gap.gap
        open_gap.tries += 1
        symbol, from_id = gap.symbol, gap.first_missing
        while from_id <= gap.last_missing:
            limit = min(self.settings.gap_fill_page, gap.last_missing - from_id + 1)
            try:
                page = await self._rest_call(self.rest.historical_trades, symbol, from_id, limit)
                trades = [t for t in _page_trades(page, symbol, self._now_us()) if from_id <= t.id <= gap.last_missing]
            except RequestCancelledError:
                return False
            except (ExchangeError, DataError) as exc:
                self.stats.rest_errors += 1
                log.warning("gap fill request failed", extra={"symbol": symbol, "from_id": from_id, "error": str(exc)})
                return False
            if not trades:
                log.warning("REST has no trades for the gap yet", extra={"symbol": symbol, "from_id": from_id})
                return False
            await self._publish_filled(symbol, trades, page)
            from_id = trades[-1].id + 1
            open_gap.gap = gap = replace(gap, first_missing=from_id)
        self._mark_filled(open_gap)
        return True

    async def _publish_filled(self, symbol: str, trades: list[Trade], page: RestPage) -> None:
        await self.publisher.add(STREAM_TRADES, symbol, encode_trades(trades), 0)
        self.stats.gap_trades_filled += len(trades)
        if self.bronze is not None:
            table = page.table
            if table is not None and table.num_rows == len(page.body):
                ids = {t.id for t in trades}
                mask = pa.array([i in ids for i in table.column("id").to_pylist()])
                self.bronze.add_table("trades", symbol, table.filter(mask), raw=page.raw, raw_format="json",
                                      source=GAP_FILL_SOURCE)
            else:
                self.bronze.add(trades, GAP_FILL_SOURCE)

    def _mark_filled(self, open_gap: _OpenGap) -> None:
        symbol = open_gap.gap.symbol
        for i in range(len(self.gaps) - 1, -1, -1):
            g = self.gaps[i]
            if g.symbol == symbol and g.last_missing == open_gap.gap.last_missing and not g.filled:
                self.gaps[i] = replace(g, filled=True)
                log.info("trade gap filled from REST", extra={"symbol": symbol, "first_missing": g.first_missing,
                                                             "last_missing": g.last_missing})
                break
        self._fill_outcome(symbol, "filled")

    async def _retry_gaps(self) -> None:
        closed: list[_OpenGap] = []
        for open_gap in list(self._open_gaps):  # the sink may add gaps while this awaits
            if await self._try_fill(open_gap):
                closed.append(open_gap)
            elif open_gap.tries >= self.settings.gap_max_retries:
                closed.append(open_gap)
                self._fill_outcome(open_gap.gap.symbol, "unfillable")
                log.error("trade gap could not be filled from REST; giving up",
                          extra={"symbol": open_gap.gap.symbol, "first_missing": open_gap.gap.first_missing,
                                 "last_missing": open_gap.gap.last_missing, "tries": open_gap.tries})
        self._open_gaps = [g for g in self._open_gaps if all(g is not c for c in closed)]

    # --- order books -------------------------------------------------------------------------------------
    def _note_resyncs(self, symbol: str, before: int) -> None:
        after = self.books[symbol].counters.resyncs
        if after > before:
            self.stats.resyncs += after - before
            if self.metrics is not None:
                self.metrics.ingest_book_resyncs.labels(symbol).inc(after - before)
            log.warning("depth diff missed: order book discarded, resynchronizing", extra={"symbol": symbol})

    def _on_diff(self, symbol: str, diff: DepthDiff) -> None:
        if self.rest is None:
            return
        sync = self.books[symbol]
        before = sync.counters.resyncs
        sync.on_diff(diff)
        self._note_resyncs(symbol, before)
        if sync.needs_snapshot and symbol not in self._snapshot_tasks and self._running:
            self._snapshot_tasks[symbol] = asyncio.create_task(self._synchronize(symbol), name=f"snapshot-{symbol}")

    async def _synchronize(self, symbol: str) -> None:
        """Fetch REST snapshots until the book is live (a stale one is fetched again, a gap restarts)."""
        assert self.rest is not None
        sync = self.books[symbol]
        failures = 0
        try:
            while sync.needs_snapshot:
                try:
                    page = await self._rest_call(self.rest.depth, symbol, self.settings.snapshot_limit)
                    snapshot = parse_depth_snapshot(page.body, symbol, ts_recv=self._now_us())
                except RequestCancelledError:
                    self._abandon("depth_snapshot", symbol)
                    return
                except (ExchangeError, DataError) as exc:
                    failures += 1
                    self.stats.rest_errors += 1
                    log.warning("depth snapshot request failed", extra={"symbol": symbol, "error": str(exc)})
                    await asyncio.sleep(min(self.settings.snapshot_retry_s * 2**failures, 10.0))
                    continue
                self.stats.snapshots += 1
                before = sync.counters.resyncs
                outcome = sync.on_snapshot(snapshot)
                self._note_resyncs(symbol, before)
                if outcome is SnapshotOutcome.SYNCED:
                    log.info("order book synchronized", extra={"symbol": symbol,
                                                               "last_update_id": snapshot.last_update_id})
                elif outcome is SnapshotOutcome.STALE:
                    self.stats.snapshots_stale += 1
                    await asyncio.sleep(self.settings.snapshot_retry_s)
        finally:
            self._snapshot_tasks.pop(symbol, None)

    # --- background ----------------------------------------------------------------------------------------
    async def _housekeeping(self, deadline: float | None) -> None:
        next_gap_retry = 0.0
        while True:
            await asyncio.sleep(self.settings.housekeeping_s)
            now = self._monotonic()
            if deadline is not None and now >= deadline:
                self.stop()
            if self._until is not None and self._until(self):
                self.stop()
            if self.bronze is not None and self.bronze.due():
                await self.bronze.flush()
            if self._open_gaps and now >= next_gap_retry:
                await self._retry_gaps()
                next_gap_retry = self._monotonic() + self.settings.gap_retry_s
