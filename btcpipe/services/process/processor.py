"""The live processor: market events from the bus → one feature row per symbol per second.

Composition only (ports in, ports out):

- reads ``market-sbe-trade`` (and ``market-sbe-bestbidask`` when the schema has ``spread``) with a
  ``BusConsumer`` per stream over the shards of the symbols it owns;
- keeps a ``SymbolFeatureState`` per symbol (buffering, lateness, duplicates, the streaming engine);
- writes every closed row to the ``OnlineStore`` (``features:{symbol}:{ts_sec}`` with a TTL, and
  ``latest``), publishes it to ``features-1s`` (``FeatureVector1s`` Avro) and hands it to the live silver
  sink (batched Parquet in the lake).

**Input in columns.** The consumers hand over raw payloads; each poll is decoded at once
(``decode_trade_batches``: ``MarketTradeColumns`` through the numpy reader, older trade schemas through
fastavro; ``decode_best_bid_ask_batches`` likewise), and each symbol's trades go to its state as arrays
— duplicate and late filtering per batch (``processor_ids``), the engine's ``add_trades`` per second.
A payload that does not decode is counted (``undecodable_records``, ``skipped_payloads()``) and set
aside on the ``dead-letters`` stream with its position and reason (``dead_letters.DeadLetters``), and the
processor goes on past it. Consumer lag in records (``btcpipe_consumer_lag_records``) is sampled once per
``lag_interval_s`` (``processor_lag``).

**When a second closes.** The rule lives in ``SymbolFeatureState`` (shared with the inference
fallback): second ``t`` closes as soon as every input the schema needs has shown it is past ``t`` — a
trade at or after ``t + disorder`` (``disorder_ms``, 0: Binance's trade stream is ordered per symbol)
and, when the schema reads best bid/ask, a best bid/ask update that far too — or an ingestor heartbeat
on ``market-heartbeat`` at or past ``t`` (applied only once the event streams are read to their head,
``bus.heartbeats``). When every input is caught up (a poll came back short) wall time closes seconds as
well (``t + lateness <= now``), so a silent market without heartbeats still gets its rows; never further
than ``max_idle_s`` past the newest event, so a clock far ahead of replayed data cannot flood the grid.

**Restart.** After each cycle that emitted rows the processor stores, in the bus's ``PositionStore``
under its consumer name, the last row emitted and the start of its grid per symbol (pseudo-stream
``features-1s:emitted``, value ``"last_row,bars_from"``) and,
per input stream, a *rewound* position: the position before the first record whose events are at most
``rewind_s`` older than the oldest symbol's last row. A restarted processor resumes from there, re-reads
that trailing window (≥ the 60-s lookback, plus seed data for the carried price), rebuilds each
symbol's engine from ``last row + 1 s − 60 s`` and emits from ``last row + 1 s`` on: no hole and no
recomputed row. Delivery is at-least-once, so re-read events are simply de-duplicated.

**Scale-out.** ``partition_symbols(symbols, i, n)`` gives process ``i`` of ``n`` the symbols whose
crc32 hash lands on ``i``; each process reads only the shards holding its symbols and keeps its own
consumer name (``processor-i-of-n``) and positions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from btcpipe.bus.consumer import BusConsumer, Delivery, shards_for_keys
from btcpipe.bus.heartbeats import HeartbeatReader
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_FEATURES, STREAM_TRADES, Bus, PositionStore, hash_shard
from btcpipe.domain.errors import BusError, ConfigError, LakeError, StoreError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_MS, US_PER_SEC, Clock
from btcpipe.features.spec import WINDOW_BARS, FeatureParams, schema_hash
from btcpipe.features.symbol_state import SymbolFeatureState
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.tracing import NO_TRACING, Tracing
from btcpipe.services.process.dead_letters import DeadLetters
from btcpipe.services.process.lag import ConsumerLag
from btcpipe.services.process.rewind import Rewind
from btcpipe.services.process.silver import LiveSilverSink
from btcpipe.services.process.trace_links import SecondTraces
from btcpipe.store.port import DEFAULT_TTL_S, OnlineStore
from btcpipe.wire.best_bid_ask_columns import decode_best_bid_ask_batches
from btcpipe.wire.codec import decode_trade_batches, encode_feature_vector

log = logging.getLogger(__name__)

EMITTED_STREAM = f"{STREAM_FEATURES}:emitted"  # pseudo-stream in the PositionStore: {symbol: last ts_sec}


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    """The processor's close rule (disorder margin, lateness), row TTL, restart rewind, poll size and outputs."""

    lateness_ms: int = 200  # wall time closes second t at t + lateness when the inputs are quiet
    disorder_ms: int = 0  # event time closes t once the inputs are at t + disorder (0: ordered streams)
    ttl_s: int = DEFAULT_TTL_S
    rewind_s: int = 2 * WINDOW_BARS  # trailing window re-read after a restart (≥ the 60-s lookback)
    max_idle_s: int = 120  # the clock closes seconds at most this far past the newest event
    close_on_clock: bool = True  # False: event time only (replaying past data with no live clock)
    poll_max: int = 1000
    block_ms: int = 100
    heartbeat_poll_ms: int = 5  # while heartbeats come: the longest wait on the trade stream, so a beat is seen soon
    start: str = "earliest"  # where a consumer without stored positions starts: earliest | latest
    publish_features: bool = True
    lag_interval_s: float = 1.0  # how often consumer lag (records behind the head) is sampled for the metrics

    def __post_init__(self) -> None:
        if self.lateness_ms < 0 or self.disorder_ms < 0 or self.ttl_s <= 0 or self.poll_max < 1 or self.block_ms < 0:
            raise ConfigError(f"invalid processor settings: {self}")
        if self.rewind_s < WINDOW_BARS:
            raise ConfigError(f"rewind_s must cover the {WINDOW_BARS}-s lookback, got {self.rewind_s}")
        if self.start not in ("earliest", "latest"):
            raise ConfigError(f"start must be 'earliest' or 'latest', got {self.start!r}")


@dataclass(slots=True)
class ProcessorStats:
    """What the processor has done: cycles, records read, rows written, skips."""

    cycles: int = 0
    trade_records: int = 0
    best_bid_ask_records: int = 0
    trades: int = 0
    foreign_records: int = 0  # records of symbols another partition owns (shared shard)
    undecodable_records: int = 0  # payloads with a known header whose body did not decode (skipped)
    rows: int = 0
    store_errors: int = 0
    publish_errors: int = 0
    lake_errors: int = 0
    commit_errors: int = 0
    max_row_delay_us: int = 0  # ts_computed − (ts_sec + lateness), worst seen
    resumed_from: dict[str, int] = field(default_factory=dict)  # symbol → last row of the previous run


def parse_partition(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    head, sep, tail = text.partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError as exc:
        raise ConfigError(f"partition must look like 'i/n' (e.g. 0/2), got {text!r}") from exc
    if not sep or count < 1 or not 0 <= index < count:
        raise ConfigError(f"partition must be i/n with 0 <= i < n, got {text!r}")
    return index, count


def partition_symbols(symbols: Sequence[str], index: int, count: int) -> list[str]:
    """The symbols process ``index`` of ``count`` owns (stable crc32 hash, same in every process)."""
    return [s for s in symbols if hash_shard(s, count) == index]


def _raw(payload: bytes) -> bytes:
    """Consumers hand payloads over undecoded: a poll is decoded at once (decode_trade_batches,
    decode_best_bid_ask_batches), which reports unknown schemas and corrupt bodies per payload."""
    return payload


def _parse_emitted(value: str | None) -> tuple[int | None, int | None]:
    """``"last_row,bars_from"`` as stored by ``_commit`` → (last row, first known bar)."""
    if value is None:
        return None, None
    head, _, tail = value.partition(",")
    try:
        return int(head), int(tail) if tail else None
    except ValueError as exc:
        raise ConfigError(f"stored processor state {value!r} is not 'last_row,bars_from'") from exc


class Processor:
    """The live processor: bus → one symbol feature state per symbol → online store, ``features-1s`` and live silver."""

    def __init__(
        self,
        bus: Bus,
        store: OnlineStore,
        positions: PositionStore,
        params: FeatureParams,
        *,
        symbols: Sequence[str],
        clock: Clock,
        settings: ProcessorSettings | None = None,
        metrics: Metrics | None = None,
        silver: LiveSilverSink | None = None,
        name: str = "processor",
        on_rows: Callable[[list[FeatureVector1s]], None] | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        if not symbols:
            raise ConfigError("the processor needs at least one symbol")
        self.bus = bus
        self.store = store
        self.positions = positions
        self.params = params
        self.symbols = list(symbols)
        self.clock = clock
        self.settings = settings or ProcessorSettings()
        self.metrics = metrics
        self.silver = silver
        self.name = name
        self.on_rows = on_rows
        self.tracing = tracing
        self._traces = SecondTraces(tracing) if tracing.enabled else None
        self.schema_hash = schema_hash(params)
        self.stats = ProcessorStats()
        self.lateness_us = self.settings.lateness_ms * US_PER_MS
        self.use_best_bid_ask = params.with_spread
        emitted = positions.load(name, EMITTED_STREAM)
        self.states: dict[str, SymbolFeatureState] = {}
        for symbol in self.symbols:
            resume, bars_from = _parse_emitted(emitted.get(symbol))
            if resume is not None:
                self.stats.resumed_from[symbol] = resume
            self.states[symbol] = SymbolFeatureState(symbol, params, lateness_us=self.lateness_us,
                                                     disorder_us=self.settings.disorder_ms * US_PER_MS,
                                                     resume_after=resume, resume_bars_from=bars_from)
        start: Literal["earliest", "latest"] = "latest" if self.settings.start == "latest" else "earliest"
        # Payloads are decoded a whole poll at a time (decode_trade_batches), not by the consumer.
        self._trades: BusConsumer[bytes] = BusConsumer(
            bus, STREAM_TRADES, _raw, name=name, positions=positions,
            shards=shards_for_keys(bus, STREAM_TRADES, self.symbols), start=start,
        )
        self._trade_rewind = Rewind({s: p.after for s, p in self._trades.positions.items()})
        self._best_bid_ask: BusConsumer[bytes] | None = None
        self._best_bid_ask_rewind: Rewind | None = None
        if self.use_best_bid_ask:
            self._best_bid_ask = BusConsumer(
                bus, STREAM_BEST_BID_ASK, _raw, name=name, positions=positions,
                shards=shards_for_keys(bus, STREAM_BEST_BID_ASK, self.symbols), start=start,
            )
            self._best_bid_ask_rewind = Rewind({s: p.after for s, p in self._best_bid_ask.positions.items()})
        self.dead_letters = DeadLetters(bus, consumer=name, metrics=metrics, now_us=clock.now_us)
        self._heartbeats = HeartbeatReader(bus, self.symbols, name=name, max_records=self.settings.poll_max)
        self._reported = {s: (0, 0) for s in self.symbols}  # (late, duplicates) already in the metrics
        self._lag = ConsumerLag(bus, name, int(self.settings.lag_interval_s * US_PER_SEC))
        if self.stats.resumed_from:
            log.info("processor resuming", extra={"processor": name, "last_rows": self.stats.resumed_from,
                                                  "positions": {k: v.after for k, v in self._trades.positions.items()}})

    # --- one cycle -----------------------------------------------------------------------------------
    def step(self, block_ms: int | None = None) -> int:
        """Poll the inputs once, close what is due, emit and commit. Returns the records read."""
        block = self.settings.block_ms if block_ms is None else block_ms
        n_max = self.settings.poll_max
        self._heartbeats.poll()  # before the events it vouches for (bus.heartbeats)
        if self._heartbeats.live:
            block = min(block, self.settings.heartbeat_poll_ms)
        trade_deliveries = self._trades.poll(n_max, block)
        trades_caught_up = self._caught_up(trade_deliveries, n_max)
        self._apply_trades(trade_deliveries)
        best_bid_ask_caught_up = True
        n_best_bid_ask = 0
        if self._best_bid_ask is not None:
            best_bid_ask_deliveries = self._best_bid_ask.poll(n_max, 0)
            best_bid_ask_caught_up = self._caught_up(best_bid_ask_deliveries, n_max)
            self._apply_best_bid_ask(best_bid_ask_deliveries)
            n_best_bid_ask = len(best_bid_ask_deliveries)
        now = self.clock.now_us()
        vectors: list[FeatureVector1s] = []
        caught_up = trades_caught_up and best_bid_ask_caught_up
        for symbol, ts in self._heartbeats.release(caught_up).items():
            self.states[symbol].add_heartbeat(ts)
        on_clock = self.settings.close_on_clock and caught_up
        for state in self.states.values():
            rows = state.close_ready()
            if on_clock and state.next_close is not None:
                base = max(state.watermark, state.next_close - US_PER_SEC)
                rows += state.close_until(min(now, base + self.settings.max_idle_s * US_PER_SEC))
            if rows:
                ts_computed = self.clock.now_us()
                vectors.extend(r.to_message(self.schema_hash, ts_computed) for r in rows)
                delay = ts_computed - rows[-1].ts_sec - self.lateness_us
                self.stats.max_row_delay_us = max(self.stats.max_row_delay_us, delay)
        self.stats.cycles += 1
        if vectors:
            self._emit(vectors)
            self._commit()
        self._update_metrics(now, len(trade_deliveries), n_best_bid_ask)
        return len(trade_deliveries) + n_best_bid_ask

    @staticmethod
    def _caught_up(deliveries: Sequence[Delivery[Any]], n_max: int) -> bool:
        per_shard: dict[str, int] = {}
        for d in deliveries:
            per_shard[d.record.shard] = per_shard.get(d.record.shard, 0) + 1
        return all(n < n_max for n in per_shard.values())

    def _apply_trades(self, deliveries: list[Delivery[bytes]]) -> None:
        """Decode the poll's payloads at once and add each symbol's trades as columns (one call per symbol)."""
        self.stats.trade_records += len(deliveries)
        if not deliveries:
            return
        batches = decode_trade_batches([d.value for d in deliveries])
        if self._traces is not None:
            self._traces.see_trades(deliveries, batches)
        for i, exc in batches.errors.items():
            self.stats.undecodable_records += 1
            self.dead_letters.send(deliveries[i].record, exc)
        counts = batches.counts
        starts = batches.offsets[:-1]
        first_ts = np.full(len(deliveries), -1, dtype=np.int64)
        has = counts > 0
        first_ts[has] = batches.ts_event[starts[has]]
        self._trade_rewind.see_poll(deliveries, first_ts)
        symbols = batches.symbols
        owned = [s in self.states for s in symbols]
        self.stats.foreign_records += sum(1 for s, n, own in zip(symbols, counts.tolist(), owned, strict=True)
                                          if n and not own)
        distinct = set(symbols)
        for symbol in distinct:
            state = self.states.get(symbol)
            if state is None:
                continue
            if len(distinct) == 1:
                sel = None
            else:
                sel = np.repeat(np.array([s == symbol for s in symbols], dtype=np.bool_), counts)
            cols = (batches.id, batches.ts_event, batches.price, batches.qty, batches.is_buyer_maker)
            if sel is not None:
                cols = tuple(c[sel] for c in cols)  # type: ignore[assignment]
            state.add_trade_arrays(*cols)
            self.stats.trades += int(cols[0].shape[0])

    def _apply_best_bid_ask(self, deliveries: list[Delivery[bytes]]) -> None:
        assert self._best_bid_ask_rewind is not None
        self.stats.best_bid_ask_records += len(deliveries)
        if not deliveries:
            return
        batch = decode_best_bid_ask_batches([d.value for d in deliveries])
        for i, exc in batch.errors.items():
            self.stats.undecodable_records += 1
            self.dead_letters.send(deliveries[i].record, exc)
        self._best_bid_ask_rewind.see_poll(deliveries, np.where(batch.ok, batch.ts_event, -1))
        symbols = batch.symbols
        distinct = set(symbols) - {""}
        for symbol in distinct:
            state = self.states.get(symbol)
            sel = None if len(distinct) == 1 and not batch.errors else np.array([s == symbol for s in symbols])
            if state is None:
                self.stats.foreign_records += len(symbols) if sel is None else int(sel.sum())
                continue
            cols = (batch.ts_event, batch.update_id, batch.bid_price, batch.ask_price)
            if sel is not None:
                cols = tuple(c[sel] for c in cols)
            state.add_best_bid_ask_arrays(*cols)

    # --- outputs -------------------------------------------------------------------------------------
    def _emit(self, vectors: list[FeatureVector1s]) -> None:
        self.stats.rows += len(vectors)
        if self.metrics is not None:
            for v in vectors:
                self.metrics.processor_rows.labels(v.symbol).inc()
        traced = self._traces.open_rows(vectors) if self._traces is not None else None
        store_span = traced.child("store.write", rows=len(vectors)) if traced is not None else None
        try:
            self.store.put_many(vectors, self.settings.ttl_s)
        except StoreError as exc:
            # The rows still reach the bus and the lake; inference falls back to the bus on a miss.
            self.stats.store_errors += 1
            log.warning("online store write failed", extra={"rows": len(vectors), "error": str(exc)})
        if store_span is not None:
            store_span.end()
        if self.settings.publish_features:
            by_symbol: dict[str, list[bytes]] = {}
            for v in vectors:
                by_symbol.setdefault(v.symbol, []).append(encode_feature_vector(v))
            for symbol, payloads in by_symbol.items():
                try:
                    if traced is None:
                        self.bus.publish(STREAM_FEATURES, symbol, payloads)
                    else:
                        publish_span = traced.child("bus.publish", stream=STREAM_FEATURES, symbol=symbol)
                        self.bus.publish(STREAM_FEATURES, symbol, payloads,
                                         traced.traces([v for v in vectors if v.symbol == symbol]))
                        publish_span.end()
                except BusError as exc:
                    self.stats.publish_errors += 1
                    log.warning("publishing feature rows failed", extra={"symbol": symbol, "error": str(exc)})
        if self.silver is not None:
            try:
                self.silver.add(vectors)
            except LakeError as exc:
                # Rows stay buffered in the sink and are written with the next successful flush.
                self.stats.lake_errors += 1
                log.warning("live silver write failed", extra={"error": str(exc)})
        if self.on_rows is not None:
            self.on_rows(vectors)
        if traced is not None:
            traced.end()

    def _commit(self) -> None:
        last = {s: st.last_row for s, st in self.states.items() if st.last_row is not None}
        if not last:
            return
        emitted = {s: f"{t},{self.states[s].bars_from}" for s, t in last.items()}
        cutoff = min(last.values()) - self.settings.rewind_s * US_PER_SEC
        try:
            # Emitted rows first: a crash between the two saves only re-reads more, never less.
            self.positions.save(self.name, EMITTED_STREAM, emitted)
            self.positions.save(self.name, STREAM_TRADES, self._trade_rewind.positions(cutoff))
            if self._best_bid_ask_rewind is not None:
                self.positions.save(self.name, STREAM_BEST_BID_ASK, self._best_bid_ask_rewind.positions(cutoff))
        except BusError as exc:
            self.stats.commit_errors += 1
            log.warning("saving processor positions failed", extra={"processor": self.name, "error": str(exc)})

    def _update_metrics(self, now: int, n_trades: int, n_best_bid_ask: int) -> None:
        m = self.metrics
        if m is None:
            return
        if n_trades:
            m.processor_events.labels(STREAM_TRADES).inc(n_trades)
        if n_best_bid_ask:
            m.processor_events.labels(STREAM_BEST_BID_ASK).inc(n_best_bid_ask)
        for symbol, state in self.states.items():
            s = state.stats
            late, dup = s.late_trades + s.late_best_bid_ask, s.duplicate_trades + s.duplicate_best_bid_ask
            seen_late, seen_dup = self._reported[symbol]
            if late > seen_late:
                m.processor_late_events.labels(symbol).inc(late - seen_late)
            if dup > seen_dup:
                m.processor_duplicate_events.labels(symbol).inc(dup - seen_dup)
            self._reported[symbol] = (late, dup)
            if state.watermark >= 0:
                m.processor_lag.labels(symbol).set((now - state.watermark) / US_PER_SEC)
            if state.last_row is not None:
                m.feature_last_ts.labels(symbol).set(state.last_row / US_PER_SEC)
        consumers: list[BusConsumer[Any]] = [self._trades] if self._best_bid_ask is None else [self._trades,
                                                                                               self._best_bid_ask]
        for stream, behind in self._lag.sample(now, consumers).items():
            m.consumer_lag_records.labels(stream, self.name).set(behind)

    # --- lifecycle -----------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> ProcessorStats:
        """Cycle until ``should_stop()``; then flush the lake sink and commit."""
        try:
            while not should_stop():
                self.step()
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        if self.silver is not None:
            try:
                self.silver.flush()
            except LakeError as exc:
                self.stats.lake_errors += 1
                log.error("final live silver flush failed", extra={"error": str(exc)})
        self._commit()

    def last_row(self, symbol: str) -> int | None:
        return self.states[symbol].last_row

    def skipped_payloads(self) -> int:
        """Undecodable bus payloads passed over (counted and logged)."""
        best_bid_ask = self._best_bid_ask.skipped if self._best_bid_ask is not None else 0
        return self._trades.skipped + self.stats.undecodable_records + best_bid_ask

    def consumer_lag(self) -> dict[str, int]:
        """Records behind the head per input stream, as last sampled for the metrics."""
        return dict(self._lag.last)

    def late_events(self) -> int:
        return sum(s.stats.late_trades + s.stats.late_best_bid_ask for s in self.states.values())

    def duplicate_events(self) -> int:
        return sum(s.stats.duplicate_trades + s.stats.duplicate_best_bid_ask for s in self.states.values())
