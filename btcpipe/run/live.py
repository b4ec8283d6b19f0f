"""The live stage of ``btcpipe run``: ingestor → bus → processor → online store → inference, for a duration.

Composition only; the bus, the online store, the lake, the stream source and the REST client are ports the
CLI picks. The order of starting is what makes the feature grid whole from the first live second:

1. **Warm-up.** The last ``WARMUP_S`` seconds of the backfilled trades are published from bronze to the bus
   (``services.replay``), so the processor's 60-s windows are full when the live part begins.
2. **Ingestor.** Its trade sequencer starts at the last backfilled trade id, so the first stream trade shows
   the trades that happened while the offline stages ran as a gap, which the ingestor fills from REST and
   publishes *before* the live trades: the bus holds warm-up, gap fill and live trades in id order.
3. **Processor**, once the gap is filled (it reads the streams from the earliest record and catches up).
4. **Inference**, once the processor has caught up with the clock, ticking every second until the end;
   then, for up to ``REALIZE_WAIT_S``, shadow evaluation keeps reading the market so the last predictions'
   10-s outcomes are known.

Every service runs in its own thread (the ingestor on its own asyncio loop); a failure in any of them
stops the others and fails the stage, naming the service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.port import STREAM_TRADES, Bus, PositionStore
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.errors import BtcpipeError, StageError
from btcpipe.domain.time import US_PER_SEC, Clock, floor_sec
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.lake import Lake
from btcpipe.model.registry import ModelRegistry
from btcpipe.run.live_stats import LiveStats
from btcpipe.run.market import RunMarket
from btcpipe.run.orchestrator import ExchangeEndpoints, LiveResult
from btcpipe.run.view import LiveSnapshot
from btcpipe.services.infer.archive import PredictionArchive
from btcpipe.services.infer.arrivals import RowArrivals
from btcpipe.services.infer.fallback import MarketTap
from btcpipe.services.infer.inference import InferenceService, InferenceSettings, TickResult
from btcpipe.services.infer.model_loader import ModelWatcher
from btcpipe.services.infer.shadow import ShadowRow
from btcpipe.services.ingest.ingestor import Ingestor, IngestSettings, MarketRest, MarketSource
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.process.silver import LiveSilverSink
from btcpipe.services.replay import replay, tape_from_lake
from btcpipe.store.port import OnlineStore
from btcpipe.wire.codec import decode_trades

log = logging.getLogger(__name__)

STAGE = "live"
WARMUP_S = 120  # ≥ the 60-s feature lookback plus the seed of the carried price
REALIZE_WAIT_S = 12.0  # after the last tick: the label horizon (10 s) plus the lateness, at most
START_TIMEOUT_S = 30.0


class LiveView(Protocol):
    """What the live stage draws on (``live_view.LogRunView`` / ``RichRunView``)."""

    def live_started(self, duration_s: float) -> None: ...

    def live_update(self, snap: LiveSnapshot, *, force: bool = False) -> None: ...

    def live_finished(self, snap: LiveSnapshot) -> None: ...


@dataclass(frozen=True)
class LivePorts:
    """The adapters the live stage composes (chosen by the CLI)."""

    bus: Bus
    store: OnlineStore
    lake: Lake
    positions: PositionStore
    open_source: Callable[[ExchangeEndpoints, Sequence[str]], MarketSource]
    open_rest: Callable[[ExchangeEndpoints], AbstractContextManager[MarketRest]]
    clock: Clock


@dataclass(frozen=True)
class LiveSettings:
    """Settings of ``btcpipe run``'s live stage: the model served, processor and inference settings, view cadence."""

    model_name: str = "btcusdt-10s"
    model_alias: str = "production"
    ingest: IngestSettings = field(default_factory=IngestSettings)
    processor: ProcessorSettings = field(default_factory=ProcessorSettings)
    inference: InferenceSettings = field(default_factory=lambda: InferenceSettings(on_arrival=True))
    view_every_s: float = 0.5
    realize_wait_s: float = REALIZE_WAIT_S  # 0: do not wait for the last predictions' outcomes
    stop_timeout_s: float = 5.0  # at the end (or a stop): how long the services get, together, to finish


class _RecordingArchive(PredictionArchive):
    """The gold predictions archive that also hands each finished row to the run's statistics."""

    def __init__(self, lake: Lake, clock: Clock, stats: LiveStats) -> None:
        super().__init__(lake, clock, flush_every_s=30.0)
        self._stats = stats

    def add(self, rows: Iterable[ShadowRow]) -> None:
        finished = list(rows)
        self._stats.on_outcomes(finished)
        super().add(finished)


class _Worker:
    """A thread running one service; its exception (if any) is kept for the stage to report."""

    def __init__(self, name: str, target: Callable[[], object]) -> None:
        self.name = name
        self.error: BaseException | None = None
        self._target = target
        self.thread = threading.Thread(target=self._run, name=f"btcpipe-run-{name}", daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # reported by the stage; a thread must not die silently
            self.error = exc
            log.exception("live service failed", extra={"service": self.name})

    def start(self) -> _Worker:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)


class LivePipeline:
    """``pipeline_run.LiveStage``: runs the live services until ``until_us`` and returns what they did."""

    def __init__(self, ports: LivePorts, view: LiveView, settings: LiveSettings | None = None) -> None:
        self.ports = ports
        self.view = view
        self.settings = settings or LiveSettings()
        self.metrics = Metrics()

    def __call__(self, market: RunMarket, endpoints: ExchangeEndpoints, duration_s: int) -> LiveResult:
        with self.ports.open_rest(endpoints) as rest:
            return _LiveRun(self, market, endpoints, duration_s, rest).run()


class _LiveRun:
    def __init__(
        self, pipeline: LivePipeline, market: RunMarket, endpoints: ExchangeEndpoints, duration_s: int,
        rest: MarketRest,
    ) -> None:
        self.p = pipeline.ports
        self.s = pipeline.settings
        self.view = pipeline.view
        self.metrics = pipeline.metrics
        self.pipeline = pipeline
        self.market = market
        self.endpoints = endpoints
        self.duration_s = duration_s
        self.until_us = 0  # set when inference starts: the duration is how long it predicts
        self.rest = rest
        self.symbol = market.symbol
        self.clock = self.p.clock
        self.started_us = self.clock.now_us()
        self.stats = LiveStats(live_from_us=self.started_us)
        self.stop_event = threading.Event()
        self.workers: list[_Worker] = []
        self.warmup: dict[str, Any] = {}
        self.ingestor: Ingestor | None = None
        self.processor: Processor | None = None
        self.inference: InferenceService | None = None
        self.ingestor_started: float | None = None  # monotonic
        self.book_synced_after_s: float | None = None  # from the ingestor's start to its order book's first sync

    # --- the stage -------------------------------------------------------------------------------------------
    def run(self) -> LiveResult:
        registry = ModelRegistry(self.p.lake.store)
        watcher = ModelWatcher(registry, self.s.model_name, metrics=self.metrics, clock=self.clock,
                               alias=self.s.model_alias)
        served = self._guard("inference", watcher.load)
        self._warm_up()
        self.view.live_started(float(self.duration_s))
        try:
            self._start_ingestor()
            self._start_processor(served.params)
            self._start_inference(watcher)
            self._watch()
        finally:
            self._stop_all()
            self.view.live_finished(self._snapshot())
        self._raise_failures()
        return self._result()

    def _guard(self, service: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except BtcpipeError as exc:
            raise StageError(STAGE, f"{service}: {exc}") from exc

    def _warm_up(self) -> None:
        end = self.market.live_start_us
        start = max(self.market.history_start_us, end - WARMUP_S * US_PER_SEC)
        tape = self._guard("warm-up", lambda: tape_from_lake(self.p.lake, self.symbol, start, end))
        # One publish per second of trades: few round trips on a remote bus (Kinesis), same records.
        result = self._guard("warm-up", lambda: replay(tape, self.p.bus, kinds=("trade",), chunk_us=US_PER_SEC))
        self.warmup = {"trades": result.trades, "from": start, "to": end}
        log.info("warm-up trades published", extra={"trades": result.trades, "seconds": WARMUP_S})

    def _start_ingestor(self) -> None:
        source = self.p.open_source(self.endpoints, [self.symbol])
        ingestor = self.ingestor = Ingestor(source, self.p.bus, symbols=[self.symbol], rest=self.rest,
                                            lake=self.p.lake, metrics=self.metrics,
                                            settings=self.s.ingest, now_us=self.clock.now_us)
        last_backfilled = self.p.lake.bronze_max_id("trades", self.symbol)
        if last_backfilled is None:
            raise StageError(STAGE, f"bronze holds no {self.symbol} trades to continue from")
        # The trades since the backfill ended come as a gap at the first stream trade, filled from REST.
        ingestor.sequencers[self.symbol].last_id = last_backfilled
        self.ingestor_started = time.monotonic()
        self.workers.append(_Worker("ingestor", lambda: asyncio.run(ingestor.run())).start())
        # The processor must read the fill before any live second closes, or those trades would come too late for
        # their seconds: wait until the stream has begun, every gap is filled (a fill in flight is neither open nor
        # filled yet) and the publisher's queue is on the bus.
        def joined() -> bool:
            return (ingestor.last_trade_id(self.symbol) > last_backfilled and not ingestor.open_gaps
                    and all(gap.filled for gap in list(ingestor.gaps)) and ingestor.publisher.pending == 0)

        self._wait("the first stream trade and the REST fill of the trades since the backfill", joined)
        gaps = ingestor.stats.gap_fills.get("filled", 0)
        log.info("live stream joined to the backfill", extra={"first_gap_fills": gaps,
                                                               "filled_trades": ingestor.stats.gap_trades_filled})

    def _start_processor(self, params: Any) -> None:
        processor = self.processor = Processor(
            self.p.bus, self.p.store, self.p.positions, params, symbols=[self.symbol], clock=self.clock,
            settings=self.s.processor, metrics=self.metrics, silver=LiveSilverSink(self.p.lake, params),
            name="run-processor", on_rows=self.stats.on_rows,
        )
        self.workers.append(_Worker("processor", lambda: processor.run(self.stop_event.is_set)).start())
        self._wait("the processor to catch up with the clock",
                   lambda: (processor.last_row(self.symbol) or 0) >= floor_sec(self.clock.now_us()) - 2 * US_PER_SEC)
        # Latencies count from here: the catch-up over the warm-up and the gap fill is start-up, not steady state.
        self.stats.live_from_us = self.clock.now_us()

    def _start_inference(self, watcher: ModelWatcher) -> None:
        stats = self.stats

        def on_result(result: TickResult) -> None:
            if result.prediction is not None:
                stats.on_prediction(result.prediction, "store" if result.outcome == "predicted" else "fallback")
            stats.on_tick(result.symbol, result.ts_sec, result.outcome, result.reasons,
                          predicted=result.prediction is not None)

        service = self.inference = InferenceService(
            symbols=[self.symbol], model=watcher, store=self.p.store, bus=self.p.bus, metrics=self.metrics,
            clock=self.clock, settings=self.s.inference,
            # From the earliest record: the fallback engine then has the warm-up's 60 s of history at once.
            market=MarketTap(self.p.bus, [self.symbol], with_best_bid_ask=watcher.current.params.with_spread,
                             start="earliest"),
            # predict the moment the second's row is published (when the settings say on_arrival)
            rows=RowArrivals(self.p.bus, [self.symbol]),
            archive=_RecordingArchive(self.p.lake, self.clock, stats), on_result=on_result,
        )

        self.until_us = self.clock.now_us() + self.duration_s * US_PER_SEC

        def run_inference() -> None:
            service.run(until_us=self.until_us)
            self._realize_tail(service)
            service.close()

        self.workers.append(_Worker("inference", run_inference).start())

    def _realize_tail(self, service: InferenceService) -> None:
        """Keep shadow evaluation reading the market until the last prediction's outcome is known."""
        last = service.last_tick_ts
        if last is None:
            return
        deadline = time.monotonic() + self.s.realize_wait_s
        while time.monotonic() < deadline and not self.stop_event.is_set():
            service.housekeeping(last)
            if service.shadow.pending == 0:
                return
            self.stop_event.wait(0.25)

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            self._raise_failures()
            self._note_book()
            if time.monotonic() > deadline:
                raise StageError(STAGE, f"gave up waiting {START_TIMEOUT_S:.0f} s for {what}")
            time.sleep(0.05)

    # --- while it runs -----------------------------------------------------------------------------------------
    def _watch(self) -> None:
        tap = BusConsumer(self.p.bus, STREAM_TRADES, decode_trades, name="run-latency-tap",
                          positions=InMemoryPositionStore(),
                          shards=shards_for_keys(self.p.bus, STREAM_TRADES, [self.symbol]), start="latest")
        inference = next(w for w in self.workers if w.name == "inference")
        next_view = 0.0
        while inference.thread.is_alive():
            self._raise_failures()
            self._note_book()
            for delivery in tap.poll(1000, block_ms=50):
                self.stats.on_bus_trades(delivery.value, self.clock.now_us())
            if time.monotonic() >= next_view:
                self.view.live_update(self._snapshot())
                next_view = time.monotonic() + self.s.view_every_s

    def _note_book(self) -> None:
        """When the live order book first synchronized (the live REST budget must not keep it waiting)."""
        ingestor, started = self.ingestor, self.ingestor_started
        if self.book_synced_after_s is None and ingestor is not None and started is not None \
                and ingestor.book(self.symbol) is not None:
            self.book_synced_after_s = round(time.monotonic() - started, 3)
            log.info("live order book synchronized", extra={"after_s": self.book_synced_after_s})

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.ingestor is not None:
            st = self.ingestor.stats
            out.update(messages=sum(st.events.values()), gaps=st.gaps, gap_trades_filled=st.gap_trades_filled,
                       resyncs=st.resyncs)
        if self.processor is not None:
            out.update(rows=self.processor.stats.rows, late=self.processor.late_events(),
                       duplicates=self.processor.duplicate_events())
        if self.inference is not None:
            c = self.inference.counts
            out.update(predictions=c["predicted"] + c["fallback"], fallback=c["fallback"],
                       skipped_ticks=c["skipped_deadline"], no_features=c["no_features"] + c["stale"],
                       errors=c["error"])
        return out

    def _snapshot(self) -> LiveSnapshot:
        now = self.clock.now_us()
        remaining = self.duration_s if not self.until_us else max(0.0, (self.until_us - now) / US_PER_SEC)
        return self.stats.snapshot(elapsed_s=(now - self.started_us) / US_PER_SEC, remaining_s=remaining,
                                   counters=self.counters())

    # --- the end -----------------------------------------------------------------------------------------------
    def _stop_all(self) -> None:
        self.stop_event.set()
        if self.inference is not None:
            self.inference.stop()
        if self.ingestor is not None:
            self.ingestor.stop()
        deadline = time.monotonic() + self.s.stop_timeout_s
        for worker in reversed(self.workers):
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.thread.is_alive() and worker.error is None:
                worker.error = StageError(STAGE, f"{worker.name} did not stop within {self.s.stop_timeout_s:g} s")

    def _raise_failures(self) -> None:
        for worker in self.workers:
            if worker.error is not None:
                raise StageError(STAGE, f"{worker.name} failed: {worker.error}") from worker.error

    def _result(self) -> LiveResult:
        predictions = self.stats.predictions()
        hit, n_realized = self.stats.hit_rate()
        ticked = [ts for seconds in self.stats.tick_seconds.values() for ts in seconds]
        summary: dict[str, Any] = {
            "model_version": self.stats.model_version,
            "predictions": len(predictions),
            "realized": n_realized,
            "hit_rate": hit,
            "first_prediction": predictions[0]["ts_sec"] if predictions else None,
            "last_prediction": predictions[-1]["ts_sec"] if predictions else None,
            # Every tick second from first_tick to last_tick is predicted or listed in `skipped` with its reason.
            "ticks": len(ticked),
            "first_tick": min(ticked) if ticked else None,
            "last_tick": max(ticked) if ticked else None,
            "skipped": self.stats.skipped(),
            "warmup_trades": self.warmup.get("trades", 0),
            "book_synced_after_s": self.book_synced_after_s,
            "counters": self.counters(),
            "ingest_events": dict(self.ingestor.stats.events) if self.ingestor else {},
            "stream_mode": getattr(self.ingestor.source, "mode", None) if self.ingestor else None,
        }
        return LiveResult(summary=summary, predictions=predictions,
                          hops_ms={k: list(v) for k, v in self.stats.hops_ms.items()})
