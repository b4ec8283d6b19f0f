"""The inference service: every second, features → scaler → ONNX → ``Prediction1s``, within a deadline.

A tick for second ``t`` (the row describing ``[t − 1 s, t)``) runs **on arrival** (``on_arrival``, following
``features-1s`` with ``rows=RowArrivals``): as soon as every symbol's row of ``t`` is on the stream, or
``row_wait_ms`` after ``t`` when one is not (the fallback takes over); the deadline then counts from the
second's end. Without ``rows`` it runs at a fixed ``t + offset`` (after the processor's lateness, so the
row is normally in the online store) and the deadline counts from that wake-up. Per symbol it:

1. reads the row of ``t`` from the online store; if it is missing, stale, from other feature code or
   the store fails, computes the row with its own fallback engine fed from the bus (the same streaming
   engine as the processor); if neither works it emits nothing and counts why;
2. scales and runs the model (one ONNX session, 1 thread) and checks the deadline: a tick whose work
   (plus any lateness of the tick itself) passed ``deadline_ms`` is skipped, not published;
3. publishes the prediction to ``predictions-1s`` and hands it to the shadow evaluator, which joins the
   realized return when known and passes the finished rows to the gold archive.

Outcomes (``Metrics.inference_ticks``): ``predicted`` (store row), ``fallback`` (own row), ``stale``
(every source is behind: the store's newest row and the bus feed are older than ``stale_after``),
``no_features``, ``skipped_deadline``, ``error``. Between ticks (``housekeeping``) it feeds the
fallback engine and the mid series, resolves shadow rows, flushes the archive, updates drift gauges
and follows the registry alias, swapping the model without a restart.

Time comes from an injected ``Clock`` and sleeper, latency from an injected monotonic counter, so tests
drive every second of it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from btcpipe.bus.port import STREAM_PREDICTIONS, Bus
from btcpipe.domain.errors import BtcpipeError, BusError, ConfigError, StoreError
from btcpipe.domain.messages import Prediction1s
from btcpipe.domain.time import US_PER_MS, US_PER_SEC, Clock
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.tracing import NO_TRACING, TraceSpan, Tracing, exemplar, wall_ns_of
from btcpipe.services.infer.archive import PredictionArchive
from btcpipe.services.infer.arrivals import RowArrivals
from btcpipe.services.infer.drift import FeatureDrift
from btcpipe.services.infer.fallback import FallbackFeatures, MarketTap
from btcpipe.services.infer.model_loader import ModelWatcher, ServedModel
from btcpipe.services.infer.shadow import ShadowEvaluator
from btcpipe.store.port import OnlineStore
from btcpipe.wire.codec import encode_prediction

log = logging.getLogger(__name__)

Outcome = Literal["predicted", "fallback", "stale", "no_features", "skipped_deadline", "error"]
# Reasons a tick gave no prediction that are not about its features (kept out of the feature-miss metric).
_NOT_FEATURE_REASONS = frozenset({"predict_failed", "publish_failed", "over_deadline", "started_too_late"})
OUTCOMES: tuple[Outcome, ...] = ("predicted", "fallback", "stale", "no_features", "skipped_deadline", "error")


@dataclass(frozen=True)
class InferenceSettings:
    """The inference service's cadence and offset, deadline, staleness bound, and shadow/drift windows."""

    interval_s: int = 1  # ticks every 1 or 2 s, on second boundaries (multiples of the interval)
    offset_ms: float = 250.0  # after the boundary: the processor's lateness + a margin to write the row
    deadline_ms: float = 100.0  # on arrival: from the second's end; at a fixed offset: from the wake-up
    on_arrival: bool = False  # tick when the rows arrive (the service then needs ``rows=RowArrivals``)
    row_wait_ms: float = 80.0  # on arrival: how long after the second's end to wait for its rows
    row_poll_ms: float = 1.0  # on arrival: how often the features stream is looked at while waiting
    stale_after_s: float = 3.0
    lateness_ms: float = 200.0  # the fallback engine closes a second this long after it ends
    shadow_window: int = 300
    drift_window: int = 300
    shadow_expire_s: float = 60.0

    def __post_init__(self) -> None:
        if self.interval_s not in (1, 2):
            raise ConfigError(f"inference interval must be 1 or 2 whole seconds, got {self.interval_s!r}")
        if self.deadline_ms <= 0:
            raise ConfigError(f"inference deadline must be positive, got {self.deadline_ms} ms")
        if self.lateness_ms < 0:
            raise ConfigError(f"lateness must be >= 0 ms, got {self.lateness_ms}")
        if self.stale_after_s <= 0:
            raise ConfigError(f"stale_after_s must be positive, got {self.stale_after_s}")
        if self.on_arrival:
            if not 0 <= self.row_wait_ms < self.deadline_ms < self.interval_s * 1000 or self.row_poll_ms <= 0:
                raise ConfigError(f"row wait {self.row_wait_ms} ms must be below the deadline {self.deadline_ms} ms, "
                                  f"the deadline below the interval and the row poll {self.row_poll_ms} ms positive")
            return
        if self.lateness_ms > self.offset_ms:
            raise ConfigError(
                f"tick offset {self.offset_ms} ms must be at least the lateness {self.lateness_ms} ms: "
                "before that the second is not closed yet"
            )
        if self.offset_ms + self.deadline_ms >= self.interval_s * 1000:
            raise ConfigError("tick offset + deadline must fit inside one interval")

    @property
    def interval_us(self) -> int:
        return self.interval_s * US_PER_SEC

    @property
    def offset_us(self) -> int:
        return int(self.offset_ms * US_PER_MS)

    @property
    def row_wait_us(self) -> int:
        return int(self.row_wait_ms * US_PER_MS)

    @property
    def deadline_us(self) -> int:
        return int(self.deadline_ms * US_PER_MS)

    @property
    def stale_after_us(self) -> int:
        return int(self.stale_after_s * US_PER_SEC)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did for one symbol: its outcome, the reasons, and the prediction when there is one."""

    symbol: str
    ts_sec: int
    outcome: Outcome
    reasons: tuple[str, ...]  # why a source was not used (empty when the store row served)
    prediction: Prediction1s | None


class _SymbolMetrics:
    """The labelled metric children of one symbol, looked up once: ``labels()`` costs µs on every tick."""

    def __init__(self, metrics: Metrics, symbol: str) -> None:
        self.ticks = {o: metrics.inference_ticks.labels(symbol=symbol, outcome=o) for o in OUTCOMES}
        self.latency = metrics.inference_latency.labels(symbol=symbol)
        self.feature_age = metrics.feature_age.labels(symbol=symbol)
        self.prediction = metrics.prediction.labels(symbol=symbol)
        self.store_age = metrics.inference_store_age.labels(symbol=symbol)
        self.store_get = {r: metrics.store_requests.labels(op="get", result=r) for r in ("hit", "miss", "error")}
        self.store_latency = metrics.store_latency.labels(op="get")


@dataclass(frozen=True, slots=True)
class _Features:
    values: tuple[float, ...] | None
    source: str  # "store", "fallback" or "" (none)
    reasons: tuple[str, ...]
    all_stale: bool


class InferenceService:
    """Predicts every tick: reads the second's feature row (or computes it), runs the model, publishes and archives."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        model: ModelWatcher,
        store: OnlineStore,
        bus: Bus,
        metrics: Metrics,
        clock: Clock,
        settings: InferenceSettings | None = None,
        market: MarketTap | None = None,
        rows: RowArrivals | None = None,
        archive: PredictionArchive | None = None,
        sleep: Callable[[float], object] | None = None,
        perf_ns: Callable[[], int] = time.perf_counter_ns,
        on_result: Callable[[TickResult], object] | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        if not symbols:
            raise ConfigError("inference needs at least one symbol")
        self.symbols = tuple(symbols)
        self.model = model
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.settings = settings or InferenceSettings()
        self.market = market
        if self.settings.on_arrival and rows is None:
            raise ConfigError("inference on arrival needs the features stream (rows=RowArrivals)")
        self.rows = rows if self.settings.on_arrival else None
        self.archive = archive
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._perf_ns = perf_ns
        self._on_result = on_result
        self.tracing = tracing
        served = model.current
        self.fallback = FallbackFeatures(
            served.params, lateness_us=int(self.settings.lateness_ms * US_PER_MS),
            stale_after_us=self.settings.stale_after_us,
            with_best_bid_ask=market is None or market.with_best_bid_ask,
        )
        self.shadow = ShadowEvaluator(metrics, label_mid=served.label_mid, window=self.settings.shadow_window,
                                      expire_after_s=self.settings.shadow_expire_s)
        self.drift = FeatureDrift(served.predictor.scaler, metrics, window=self.settings.drift_window)
        self._check_market(served)
        self.last_tick_ts: int | None = None
        self.counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._m = {symbol: _SymbolMetrics(metrics, symbol) for symbol in self.symbols}
        self._served_rows: list[tuple[float, ...]] = []  # for the drift gauges, taken in housekeeping
        self._market_down = False

    # --- one tick ------------------------------------------------------------------------------------
    def tick(self, ts_sec: int, *, lag_us: int = 0) -> list[TickResult]:
        """Predict second ``ts_sec`` for every symbol; ``lag_us``: how late the tick itself started."""
        model = self.model.current  # one model for the whole tick, even if a swap lands meanwhile
        start = self._perf_ns()
        results = []
        for symbol in self.symbols:
            results.append(self._tick_symbol(symbol, ts_sec, model, start, lag_us))
        self.last_tick_ts = ts_sec
        return results

    def _tick_symbol(self, symbol: str, ts_sec: int, model: ServedModel, tick_start: int, lag_us: int) -> TickResult:
        t0 = self._perf_ns()
        features = self._features(symbol, ts_sec, model)
        if features.values is None:
            missing: Outcome = "stale" if features.all_stale else "no_features"
            return self._count(TickResult(symbol, ts_sec, missing, features.reasons, None))
        try:
            yhat = float(model.predictor.predict(np.asarray(features.values, dtype=np.float64)))
        except (BtcpipeError, RuntimeError, ValueError) as exc:  # onnxruntime raises its own untyped errors
            log.error("inference failed", extra={"symbol": symbol, "ts_sec": ts_sec, "error": str(exc)})
            return self._count(TickResult(symbol, ts_sec, "error", (*features.reasons, "predict_failed"), None))
        work_ns = self._perf_ns() - t0
        if lag_us * 1000 + (self._perf_ns() - tick_start) > self.settings.deadline_us * 1000:
            log.warning("tick over its deadline: skipped", extra={
                "symbol": symbol, "ts_sec": ts_sec, "work_ms": work_ns / 1e6, "lag_ms": lag_us / 1e3})
            return self._count(TickResult(symbol, ts_sec, "skipped_deadline", (*features.reasons, "over_deadline"),
                                          None))
        now = self.clock.now_us()
        prediction = Prediction1s(
            symbol, ts_sec, yhat, work_ns / 1e6, model.version, model.uncertainty, (now - ts_sec) / US_PER_MS, now
        )
        outcome: Outcome = "predicted" if features.source == "store" else "fallback"
        reasons = features.reasons
        published = True
        tick = self._trace_tick(symbol, ts_sec, t0) if self.tracing.enabled else None
        try:
            if tick is None:
                self.bus.publish(STREAM_PREDICTIONS, symbol, [encode_prediction(prediction)])
            else:
                span = self.tracing.start("bus.publish", parent=tick.traceparent, attributes={"symbol": symbol})
                self.bus.publish(STREAM_PREDICTIONS, symbol, [encode_prediction(prediction)], [span.traceparent])
                span.end()
        except BusError as exc:
            published = False
            outcome, reasons = "error", (*reasons, "publish_failed")
            log.error("publishing a prediction failed; it is still archived",
                      extra={"symbol": symbol, "ts_sec": ts_sec, "error": str(exc)})
        m = self._m[symbol]
        if tick is None:
            m.latency.observe((self._perf_ns() - t0) / 1e9)
        else:
            m.latency.observe((self._perf_ns() - t0) / 1e9, exemplar=exemplar(tick))
            tick.set("outcome", outcome)
            tick.set("source", features.source)
            tick.end()
        m.feature_age.observe(prediction.feature_age_ms / 1e3)
        m.prediction.observe(yhat)
        self.shadow.add_prediction(prediction, source=features.source, published=published)
        self._served_rows.append(features.values)
        return self._count(TickResult(symbol, ts_sec, outcome, reasons, prediction))

    def _trace_tick(self, symbol: str, ts_sec: int, t0: int) -> TraceSpan | None:
        """The tick's span, begun when the tick began, in the trace of the second whose row it used (the
        processor's ``features.second`` is its parent); None when that second is not sampled."""
        second = self.tracing.second_traceparent(symbol, ts_sec)
        if second is None:
            return None
        return self.tracing.start("inference.tick", parent=second, attributes={"symbol": symbol, "ts_sec": ts_sec},
                                  start_ns=wall_ns_of(t0, self._perf_ns()))

    def _count(self, result: TickResult) -> TickResult:
        self.counts[result.outcome] += 1
        self._m[result.symbol].ticks[result.outcome].inc()
        for reason in result.reasons:
            if reason in _NOT_FEATURE_REASONS:
                continue
            self.metrics.inference_feature_misses.labels(symbol=result.symbol, reason=reason).inc()
        if self._on_result is not None:
            self._on_result(result)
        if result.outcome not in ("predicted", "fallback"):
            log.info("no prediction this tick", extra={
                "symbol": result.symbol, "ts_sec": result.ts_sec, "outcome": result.outcome,
                "reasons": list(result.reasons)})
        return result

    def _features(self, symbol: str, ts_sec: int, model: ServedModel) -> _Features:
        reasons: list[str] = []
        store_stale = False
        values, reason, store_stale = self._from_store(symbol, ts_sec, model)
        if values is not None:
            return _Features(values, "store", (), False)
        reasons.append(reason)
        if self.market is None:
            return _Features(None, "", (*reasons, "fallback_disabled"), False)
        self._pump()
        now = self.clock.now_us()
        result = self.fallback.row(symbol, ts_sec, now)
        if result.reason == "ok" and result.row is not None:
            return _Features(tuple(result.row.values.tolist()), "fallback", tuple(reasons), False)
        reasons.append(f"fallback_{result.reason}")
        fallback_stale = result.reason in ("stale", "no_data") and self.fallback.is_stale(symbol, now)
        return _Features(None, "", tuple(reasons), store_stale and fallback_stale)

    def _from_store(self, symbol: str, ts_sec: int, model: ServedModel) -> tuple[tuple[float, ...] | None, str, bool]:
        """(values, why not, whether the store is stale)."""
        t0 = self._perf_ns()
        try:
            vector = self.store.get_features(symbol, ts_sec)
        except StoreError as exc:
            self._store_result(symbol, "error", t0)
            log.warning("online store failed; falling back", extra={"symbol": symbol, "error": str(exc)})
            return None, "store_error", False
        self._store_result(symbol, "miss" if vector is None else "hit", t0)
        if vector is not None:
            self._m[symbol].store_age.set((self.clock.now_us() - ts_sec) / US_PER_SEC)
            if vector.schema_hash != model.predictor.schema_hash:
                return None, "schema_mismatch", False
            if len(vector.values) != model.predictor.n_features or not math.isfinite(math.fsum(vector.values)):
                return None, "store_incomplete", False
            return vector.values, "", False
        try:
            latest = self.store.get_latest(symbol)
        except StoreError:
            return None, "store_error", False
        now = self.clock.now_us()
        if latest is not None:
            self._m[symbol].store_age.set((now - latest.ts_sec) / US_PER_SEC)
        if latest is None or now - latest.ts_sec > self.settings.stale_after_us:
            return None, "store_stale", True
        return None, "store_missing", False

    def _store_result(self, symbol: str, result: str, t0: int) -> None:
        m = self._m[symbol]
        m.store_get[result].inc()
        m.store_latency.observe((self._perf_ns() - t0) / 1e9)

    # --- between ticks --------------------------------------------------------------------------------
    def _pump(self) -> None:
        if self.market is None:
            return
        try:
            batch = self.market.pump()
        except BusError as exc:
            if not self._market_down:
                log.error("cannot read the market streams; fallback and shadow evaluation wait",
                          extra={"error": str(exc)})
            self._market_down = True
            return
        if self._market_down:
            log.info("market streams readable again")
            self._market_down = False
        self.fallback.add(batch)
        self.shadow.add_market(batch.trades, batch.best_bid_asks)

    def housekeeping(self, ts_sec: int) -> None:
        """Work that must not delay a prediction: run right after each tick."""
        self._pump()
        now = self.clock.now_us()
        self.fallback.close_until(ts_sec, now)
        rows = self.shadow.resolve(now)
        if self.archive is not None:
            self.archive.add(rows)
            self.archive.maybe_flush()
        for values in self._served_rows:
            self.drift.observe(values)
        self._served_rows.clear()
        self.drift.update_metrics()
        swapped = self.model.poll()
        if swapped is not None:
            self._adopt(swapped)

    def _check_market(self, model: ServedModel) -> None:
        if self.market is not None and not self.market.with_best_bid_ask and (
                model.params.with_spread or self.shadow.use_best_bid_ask):
            log.warning("the model needs best bid/ask (spread feature or bbo_mid label) but the market tap reads "
                        "trades only: fallback rows stay incomplete / shadow returns unrealized",
                        extra={"version": model.version, "label_mid": model.label_mid})

    def _adopt(self, model: ServedModel) -> None:
        self.fallback.reset(model.params)
        self.shadow.set_label_mid(model.label_mid)
        self.drift = FeatureDrift(model.predictor.scaler, self.metrics, window=self.settings.drift_window)
        self._check_market(model)

    # --- the loop -------------------------------------------------------------------------------------
    @property
    def _wake_offset_us(self) -> int:
        """When a tick may start after its second's end: at once on arrival, else the fixed offset."""
        return 0 if self.rows is not None else self.settings.offset_us

    def _rows_pending(self, ts: int, now: int) -> bool:
        """On arrival: whether to keep waiting for second ``ts``'s rows (not all in, wait not over)."""
        if self.rows is None or now >= ts + self.settings.row_wait_us:
            return False
        try:
            self.rows.poll()
        except BusError as exc:
            log.warning("cannot read the features stream; ticking without it", extra={"error": str(exc)})
            return False
        return not self.rows.arrived(ts, self.symbols)

    def first_tick(self, now_us: int) -> int:
        """The first tick second whose run time (``ts + offset``) is not yet past."""
        interval, offset = self.settings.interval_us, self._wake_offset_us
        ts = (now_us - offset) // interval * interval
        return ts if ts + offset >= now_us else ts + interval

    def run(self, *, max_ticks: int | None = None, until_us: int | None = None) -> int:
        """Tick until ``stop()``, ``max_ticks`` ticks, or the tick second reaching ``until_us``; returns ticks run."""
        s = self.settings
        ts = self.first_tick(self.clock.now_us())
        if self.last_tick_ts is not None:  # a second run() continues after the last tick, never repeats it
            ts = max(ts, self.last_tick_ts + s.interval_us)
        ticks = 0
        while not self._stop.is_set() and (max_ticks is None or ticks < max_ticks):
            if until_us is not None and ts >= until_us:
                break
            wake = ts + self._wake_offset_us
            now = self.clock.now_us()
            if now < wake:
                self._sleep((wake - now) / US_PER_SEC)
                continue
            if self._rows_pending(ts, now):
                self._sleep(s.row_poll_ms / 1000)
                continue
            lag = now - wake
            if lag > s.deadline_us:
                ts = self._skip_missed(ts, now)
                continue
            self.tick(ts, lag_us=lag)
            self.housekeeping(ts)
            ticks += 1
            ts += s.interval_us
        return ticks

    def _skip_missed(self, ts: int, now: int) -> int:
        """Count ticks whose deadline passed before they could start; return the next tick still on time."""
        s = self.settings
        first = ts
        while ts + self._wake_offset_us + s.deadline_us < now:
            for symbol in self.symbols:
                self._count(TickResult(symbol, ts, "skipped_deadline", ("started_too_late",), None))
            ts += s.interval_us
        log.warning("ticks missed: the loop fell behind",
                    extra={"missed": (ts - first) // s.interval_us, "next_ts_sec": ts})
        return ts

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Finish: give up on unrealized predictions, archive everything."""
        if self.archive is not None:
            self.archive.add(self.shadow.resolve(self.clock.now_us(), flush_all=True))
            self.archive.flush()

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy while a tick ran within the last three intervals (or none is due yet)."""
        now = self.clock.now_us()
        last = self.last_tick_ts
        ok = last is None or now - last <= 3 * self.settings.interval_us + self.settings.offset_us
        return ok, {"model_version": self.model.current.version, "last_tick_ts_sec": last,
                    "counts": dict(self.counts)}
