"""What the live stage of ``btcpipe run`` measures: per-hop latencies, predictions and their outcomes.

Hops of one market event to the prediction it feeds (all in ms, from the timestamps the services stamp):

- ``exchange→ingest``: a stream trade's receive time − its exchange time (``ts_recv − ts_event``);
- ``ingest→bus``: when a reader of the bus got the trade − its receive time;
- ``second end→feature row``: the row's ``ts_computed − ts_sec`` (the processor closes a second on event time:
  once its inputs, or the ingestor's heartbeat, are past it; wall time + lateness only in a silent market);
- ``feature row→prediction``: the prediction's ``ts_pred − ts_computed`` of its row (inference ticks on the
  row's arrival on ``features-1s``);
- ``second end→prediction``: the prediction's ``ts_pred − ts_sec``, store or fallback row: the freshness
  a user of the prediction sees;
- ``tick``: the inference tick's own work (read features + scale + ONNX + publish), ``Prediction1s.latency_ms``.

Only what happened after ``live_from_us`` counts: the stage sets it once the processor has caught up, so
the warm-up, the REST gap fill and the catch-up (start-up, not steady state) are not measured.
Thread-safe: the processor, inference and the bus reader report from their own threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_MS
from btcpipe.run.view import HopLatency, LiveSnapshot
from btcpipe.services.infer.shadow import ShadowRow

HOP_EXCHANGE_INGEST = "exchange→ingest"
HOP_INGEST_BUS = "ingest→bus"
HOP_FEATURE_ROW = "second end→feature row"
HOP_PREDICTION = "feature row→prediction"
HOP_SECOND_PREDICTION = "second end→prediction"
HOP_TICK = "tick"
HOPS = (HOP_EXCHANGE_INGEST, HOP_INGEST_BUS, HOP_FEATURE_ROW, HOP_PREDICTION, HOP_SECOND_PREDICTION, HOP_TICK)


@dataclass(slots=True)
class _Prediction:
    prediction: Prediction1s
    source: str
    realized: float = math.nan
    rolling_hit_rate: float = math.nan
    resolved: bool = False


@dataclass
class LiveStats:
    """Collected by the live stage; read by the view (snapshots) and the report (at the end)."""

    live_from_us: int  # events and rows before this are start-up and are not measured
    hops_ms: dict[str, list[float]] = field(default_factory=lambda: {h: [] for h in HOPS})
    _rows_computed: dict[tuple[str, int], int] = field(default_factory=dict)
    _predictions: dict[tuple[str, int], _Prediction] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    rows: int = 0
    model_version: str | None = None
    # Every tick second the inference ran, and those without a prediction with why (outcome and reasons):
    # each tick second is either predicted or listed here, so a missing second is always explained.
    tick_seconds: dict[str, list[int]] = field(default_factory=dict)
    _skipped: list[dict[str, Any]] = field(default_factory=list)

    # --- reporters (any thread) ------------------------------------------------------------------------------
    def on_bus_trades(self, trades: Iterable[Trade], read_at_us: int) -> None:
        event_hops: list[float] = []
        bus_hops: list[float] = []
        for t in trades:
            if t.ts_recv <= 0 or t.ts_event < self.live_from_us:
                continue
            event_hops.append((t.ts_recv - t.ts_event) / US_PER_MS)
            bus_hops.append((read_at_us - t.ts_recv) / US_PER_MS)
        if event_hops:
            with self._lock:
                self.hops_ms[HOP_EXCHANGE_INGEST].extend(event_hops)
                self.hops_ms[HOP_INGEST_BUS].extend(bus_hops)

    def on_rows(self, rows: Iterable[FeatureVector1s]) -> None:
        with self._lock:
            for row in rows:
                self.rows += 1
                if row.ts_sec < self.live_from_us:
                    continue
                self._rows_computed[(row.symbol, row.ts_sec)] = row.ts_computed
                self.hops_ms[HOP_FEATURE_ROW].append((row.ts_computed - row.ts_sec) / US_PER_MS)

    def on_prediction(self, prediction: Prediction1s, source: str) -> None:
        with self._lock:
            self.model_version = prediction.model_version
            self._predictions[(prediction.symbol, prediction.ts_sec)] = _Prediction(prediction, source)
            self.hops_ms[HOP_TICK].append(prediction.latency_ms)
            if prediction.ts_sec >= self.live_from_us:
                self.hops_ms[HOP_SECOND_PREDICTION].append((prediction.ts_pred - prediction.ts_sec) / US_PER_MS)
            computed = self._rows_computed.get((prediction.symbol, prediction.ts_sec))
            if computed is not None and source == "store":
                self.hops_ms[HOP_PREDICTION].append((prediction.ts_pred - computed) / US_PER_MS)

    def on_tick(self, symbol: str, ts_sec: int, outcome: str, reasons: Iterable[str], predicted: bool) -> None:
        with self._lock:
            self.tick_seconds.setdefault(symbol, []).append(ts_sec)
            if not predicted:
                self._skipped.append({"symbol": symbol, "ts_sec": ts_sec, "outcome": outcome,
                                      "reasons": [outcome, *reasons]})

    def skipped(self) -> list[dict[str, Any]]:
        """The tick seconds without a prediction, in time order, each with its outcome and reasons."""
        with self._lock:
            return sorted(self._skipped, key=lambda s: (s["ts_sec"], s["symbol"]))

    def on_outcomes(self, rows: Iterable[ShadowRow]) -> None:
        with self._lock:
            for row in rows:
                p = row.prediction
                entry = self._predictions.get((p.symbol, p.ts_sec))
                if entry is None:
                    entry = self._predictions[(p.symbol, p.ts_sec)] = _Prediction(p, row.source)
                entry.realized, entry.rolling_hit_rate, entry.resolved = row.realized, row.rolling_hit_rate, True

    # --- readers ---------------------------------------------------------------------------------------------
    def predictions(self) -> list[dict[str, Any]]:
        """Every prediction in time order with its realized return (None when not known)."""
        with self._lock:
            entries = sorted(self._predictions.values(), key=lambda e: (e.prediction.ts_sec, e.prediction.symbol))
        return [
            {"symbol": e.prediction.symbol, "ts_sec": e.prediction.ts_sec, "yhat": e.prediction.yhat,
             "realized": e.realized if math.isfinite(e.realized) else None, "latency_ms": e.prediction.latency_ms,
             "feature_age_ms": e.prediction.feature_age_ms, "source": e.source,
             "model_version": e.prediction.model_version}
            for e in entries
        ]

    def hit_rate(self) -> tuple[float | None, int]:
        """Directional hit rate over the realized predictions with a non-zero move, and how many were realized."""
        with self._lock:
            pairs = [(e.prediction.yhat, e.realized) for e in self._predictions.values()
                     if e.resolved and math.isfinite(e.realized)]
        moved = [(y, r) for y, r in pairs if r != 0.0]
        if not moved:
            return None, len(pairs)
        hits = sum(1 for y, r in moved if np.sign(y) == np.sign(r))
        return hits / len(moved), len(pairs)

    def hops(self) -> dict[str, HopLatency]:
        with self._lock:
            copies = {k: list(v) for k, v in self.hops_ms.items() if v}
        out = {}
        for name, values in copies.items():
            p50, p90, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 90, 99])
            out[name] = HopLatency(float(p50), float(p90), float(p99), len(values))
        return out

    def snapshot(self, *, elapsed_s: float, remaining_s: float, counters: dict[str, int]) -> LiveSnapshot:
        with self._lock:
            entries = sorted(self._predictions.values(), key=lambda e: e.prediction.ts_sec)
        last = entries[-1] if entries else None
        realized = [e for e in entries if e.resolved and math.isfinite(e.realized)]
        last_real = realized[-1] if realized else None
        hit, n_realized = self.hit_rate()
        return LiveSnapshot(
            elapsed_s=elapsed_s,
            remaining_s=remaining_s,
            model_version=self.model_version,
            last_ts_sec=last.prediction.ts_sec if last else None,
            last_yhat=last.prediction.yhat if last else None,
            last_latency_ms=last.prediction.latency_ms if last else None,
            last_source=last.source if last else None,
            realized_ts_sec=last_real.prediction.ts_sec if last_real else None,
            realized_yhat=last_real.prediction.yhat if last_real else None,
            realized=last_real.realized if last_real else None,
            hit_rate=hit,
            n_realized=n_realized,
            feature_age_ms=last.prediction.feature_age_ms if last else None,
            hops=self.hops(),
            counters=counters,
        )
