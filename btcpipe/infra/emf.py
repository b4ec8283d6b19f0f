"""Optional CloudWatch Embedded Metric Format (EMF) output: key metrics as JSON log lines CloudWatch turns into metrics.

On AWS (ECS with the awslogs driver, or the CloudWatch agent) every stdout line shaped like an EMF document becomes
metric data, so alarms work without a Prometheus server. Enable with ``BTCPIPE_EMF=1`` (namespace
``BTCPIPE_EMF_NAMESPACE``, default ``btcpipe``; period ``BTCPIPE_EMF_INTERVAL_S``, default 60).

Each snapshot reads the same ``Metrics`` registry that ``/metrics`` serves. Counters are reported as the increase since
the previous snapshot, histograms as p50/p95/p99 of the observations since the previous snapshot (Prometheus'
``histogram_quantile`` interpolation), timestamps as ages. Every document carries the dimension set ``[Service]``, and
``[Service, <label>]`` when the metric has a natural label (Stream, Symbol, Model), so CloudWatch alarms can watch the
service-wide aggregate while dashboards still split by label. The terraform alarms use the names defined here.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Literal

import orjson
from prometheus_client import CollectorRegistry

from btcpipe.domain.errors import ConfigError
from btcpipe.infra.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "btcpipe"
# CloudWatch limits from the EMF specification.
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_NAME_LENGTH = 1024
MAX_NAMESPACE_LENGTH = 255

Kind = Literal["increase", "max", "age", "p50", "p95", "p99", "miss_percent", "max_abs"]
Unit = Literal["Count", "Seconds", "Milliseconds", "Percent", "None"]


@dataclass(frozen=True, slots=True)
class EmfMetric:
    """One EMF metric derived from one Prometheus family.

    ``dimension`` maps a Prometheus label to the EMF dimension that splits the metric (summed, or maxed, over every
    other label); ``only`` keeps samples whose label has one of the given values, ``exclude`` drops them.
    """

    name: str
    family: str  # Prometheus family name (counters without ``_total``)
    kind: Kind
    unit: Unit
    dimension: tuple[str, str] | None = None
    only: tuple[str, tuple[str, ...]] | None = None
    exclude: tuple[str, tuple[str, ...]] | None = None


SKIPPED_OUTCOMES = ("stale", "skipped_deadline", "no_features", "error")

KEY_METRICS: tuple[EmfMetric, ...] = (
    EmfMetric("IngestMessages", "btcpipe_ingest_messages", "increase", "Count", ("stream", "Stream")),
    EmfMetric("DecodeErrors", "btcpipe_ingest_decode_errors", "increase", "Count", ("stream", "Stream")),
    EmfMetric("Reconnects", "btcpipe_ingest_reconnects", "increase", "Count", ("stream", "Stream")),
    EmfMetric("TradeGaps", "btcpipe_ingest_trade_gaps", "increase", "Count", ("symbol", "Symbol")),
    EmfMetric(
        "UnfilledTradeGaps",
        "btcpipe_ingest_gap_fills",
        "increase",
        "Count",
        ("symbol", "Symbol"),
        only=("outcome", ("unfillable",)),
    ),
    EmfMetric("BookResyncs", "btcpipe_ingest_book_resyncs", "increase", "Count", ("symbol", "Symbol")),
    EmfMetric("ProcessorLag", "btcpipe_processor_lag_seconds", "max", "Seconds", ("symbol", "Symbol")),
    EmfMetric("ConsumerLag", "btcpipe_consumer_lag_records", "max", "Count", ("stream", "Stream")),
    EmfMetric("FeatureAge", "btcpipe_feature_last_ts_seconds", "age", "Seconds", ("symbol", "Symbol")),
    EmfMetric("StoreMissRate", "btcpipe_store_requests", "miss_percent", "Percent"),
    EmfMetric("InferenceTicks", "btcpipe_inference_ticks", "increase", "Count", ("symbol", "Symbol")),
    EmfMetric(
        "SkippedTicks",
        "btcpipe_inference_ticks",
        "increase",
        "Count",
        ("symbol", "Symbol"),
        only=("outcome", SKIPPED_OUTCOMES),
    ),
    EmfMetric("InferenceLatencyP50", "btcpipe_inference_latency_seconds", "p50", "Milliseconds", ("symbol", "Symbol")),
    EmfMetric("InferenceLatencyP95", "btcpipe_inference_latency_seconds", "p95", "Milliseconds", ("symbol", "Symbol")),
    EmfMetric("InferenceLatencyP99", "btcpipe_inference_latency_seconds", "p99", "Milliseconds", ("symbol", "Symbol")),
    EmfMetric("ModelAge", "btcpipe_model_trained_timestamp_seconds", "age", "Seconds", ("name", "Model")),
    EmfMetric("ModelRefusals", "btcpipe_model_loads", "increase", "Count", only=("outcome", ("refused",))),
    EmfMetric("ShadowMAE", "btcpipe_shadow_mae", "max", "None", ("symbol", "Symbol")),
    EmfMetric("ShadowHitRate", "btcpipe_shadow_hit_rate", "max", "None", ("symbol", "Symbol")),
    EmfMetric("FeatureDriftMaxAbsZ", "btcpipe_feature_drift_zscore", "max_abs", "None"),
)

_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_MISS_RESULTS = ("miss", "error")
_READ_RESULTS = ("hit", "miss", "error")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class EmfSettings:
    """Whether and how to print CloudWatch Embedded Metric Format lines (from the environment)."""

    enabled: bool = False
    namespace: str = DEFAULT_NAMESPACE
    interval_s: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmfSettings:
        env = os.environ if environ is None else environ
        raw = env.get("BTCPIPE_EMF", "0").strip().lower()
        if raw not in {"0", "1", "true", "false", "yes", "no", ""}:
            raise ConfigError(f"BTCPIPE_EMF must be 1/0/true/false, got {raw!r}")
        namespace = env.get("BTCPIPE_EMF_NAMESPACE", DEFAULT_NAMESPACE)
        if not 1 <= len(namespace) <= MAX_NAMESPACE_LENGTH or namespace.startswith("AWS/"):
            raise ConfigError(f"BTCPIPE_EMF_NAMESPACE must be 1-255 characters and not start with AWS/: {namespace!r}")
        try:
            interval_s = float(env.get("BTCPIPE_EMF_INTERVAL_S", "60"))
        except ValueError as exc:
            raise ConfigError(f"BTCPIPE_EMF_INTERVAL_S must be a number of seconds: {exc}") from exc
        if not interval_s >= 1.0:
            raise ConfigError(f"BTCPIPE_EMF_INTERVAL_S must be at least 1, got {interval_s}")
        return cls(enabled=raw in {"1", "true", "yes"}, namespace=namespace, interval_s=interval_s)


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> (sample name, labels, value) of every sample in the registry."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in registry.collect():
        out[family.name] = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    return out


def _keep(spec: EmfMetric, labels: Mapping[str, str]) -> bool:
    if spec.only and labels.get(spec.only[0]) not in spec.only[1]:
        return False
    return not (spec.exclude and labels.get(spec.exclude[0]) in spec.exclude[1])


def _group(spec: EmfMetric, labels: Mapping[str, str]) -> Labels:
    if spec.dimension is None:
        return ()
    label, dimension = spec.dimension
    # CloudWatch rejects empty dimension values.
    return ((dimension, labels.get(label) or "none"),)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' interpolation over cumulative ``(upper bound, count)`` buckets; None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # like Prometheus: the highest finite bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


class EmfSnapshotter:
    """Turns successive snapshots of a ``Metrics`` registry into EMF documents (one per set of dimension values)."""

    def __init__(
        self,
        metrics: Metrics,
        service: str,
        namespace: str = DEFAULT_NAMESPACE,
        key_metrics: tuple[EmfMetric, ...] = KEY_METRICS,
    ) -> None:
        if not service:
            raise ConfigError("EMF needs a service name for its Service dimension")
        self.metrics = metrics
        self.service = service
        self.namespace = namespace
        self.key_metrics = key_metrics
        # Cumulative values seen at the previous snapshot, for increases: (family, sample name, labels) -> value.
        self._previous: dict[tuple[str, str, Labels], float] = {}

    def _increase(self, family: str, name: str, labels: Mapping[str, str], value: float) -> float:
        key = (family, name, tuple(sorted(labels.items())))
        before = self._previous.get(key, 0.0)
        self._previous[key] = value
        # A cumulative value below the previous one means the collector was replaced (a reset): count from zero.
        return value - before if value >= before else value

    def snapshot(self, now_s: float) -> list[dict[str, object]]:
        """EMF documents for the metrics as of ``now_s`` (seconds since the epoch); increases since the last call."""
        samples = _samples(self.metrics.registry)
        increases: dict[tuple[str, str, Labels], float] = {}
        for family, rows in samples.items():
            for name, labels, value in rows:
                if name.endswith(("_total", "_bucket", "_count", "_sum")):
                    increases[(family, name, tuple(sorted(labels.items())))] = self._increase(
                        family, name, labels, value
                    )
        values: dict[Labels, dict[str, tuple[float, Unit]]] = defaultdict(dict)
        for spec in self.key_metrics:
            for group, value in self._evaluate(spec, samples.get(spec.family, []), increases, now_s).items():
                if math.isfinite(value):
                    values[group][spec.name] = (value, spec.unit)
        return [self._document(group, metrics, now_s) for group, metrics in sorted(values.items())]

    def _evaluate(
        self,
        spec: EmfMetric,
        rows: list[tuple[str, dict[str, str], float]],
        increases: Mapping[tuple[str, str, Labels], float],
        now_s: float,
    ) -> dict[Labels, float]:
        out: dict[Labels, float] = {}
        if spec.kind == "increase":
            # A group with only filtered-out samples reports 0 (nothing skipped), not nothing (unknown).
            for name, labels, _ in rows:
                if name.endswith("_total"):
                    group = _group(spec, labels)
                    delta = increases[(spec.family, name, tuple(sorted(labels.items())))] if _keep(spec, labels) else 0
                    out[group] = out.get(group, 0.0) + delta
        elif spec.kind in ("max", "age", "max_abs"):
            for _, labels, value in rows:
                if _keep(spec, labels):
                    group = _group(spec, labels)
                    seen = abs(value) if spec.kind == "max_abs" else value
                    out[group] = max(out.get(group, -math.inf), seen)
            if spec.kind == "age":
                out = {group: now_s - newest for group, newest in out.items()}
        elif spec.kind in _QUANTILES:
            buckets: dict[Labels, dict[float, float]] = defaultdict(lambda: defaultdict(float))
            for name, labels, _ in rows:
                if name.endswith("_bucket") and _keep(spec, labels):
                    delta = increases[(spec.family, name, tuple(sorted(labels.items())))]
                    buckets[_group(spec, labels)][float(labels["le"])] += delta
            for group, by_bound in buckets.items():
                q = histogram_quantile(_QUANTILES[spec.kind], by_bound.items())
                if q is not None:
                    out[group] = q * 1000.0 if spec.unit == "Milliseconds" else q
        elif spec.kind == "miss_percent":
            misses = reads = 0.0
            for name, labels, _ in rows:
                if name.endswith("_total"):
                    delta = increases[(spec.family, name, tuple(sorted(labels.items())))]
                    result = labels.get("result")
                    reads += delta if result in _READ_RESULTS else 0.0
                    misses += delta if result in _MISS_RESULTS else 0.0
            if reads > 0:
                out[()] = 100.0 * misses / reads
        return out

    def _document(self, group: Labels, metrics: Mapping[str, tuple[float, Unit]], now_s: float) -> dict[str, object]:
        dimension_names = [name for name, _ in group]
        dimension_sets = [["Service"]] + ([["Service", *dimension_names]] if dimension_names else [])
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(now_s * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": dimension_sets,
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in sorted(metrics.items())],
                    }
                ],
            },
            "Service": self.service,
        }
        document.update(dict(group))
        document.update({name: value for name, (value, _) in metrics.items()})
        return document

    def lines(self, now_s: float) -> list[bytes]:
        """The snapshot as newline-terminated JSON lines, ready for stdout."""
        return [orjson.dumps(doc) + b"\n" for doc in self.snapshot(now_s)]


class EmfReporter:
    """Writes a snapshot every ``interval_s`` on a daemon thread, and a last one on ``stop()``."""

    def __init__(
        self,
        snapshotter: EmfSnapshotter,
        interval_s: float,
        out: IO[bytes],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.snapshotter = snapshotter
        self.interval_s = interval_s
        self.out = out
        self.clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="emf-reporter", daemon=True)

    def start(self) -> EmfReporter:
        self._thread.start()
        return self

    def flush(self) -> int:
        """Write one snapshot now; returns the number of documents written."""
        with self._lock:
            lines = self.snapshotter.lines(self.clock())
            try:
                self.out.write(b"".join(lines))
                self.out.flush()
            except (OSError, ValueError) as exc:
                # The metrics are lost for this period only; say so rather than kill the service.
                log.warning("EMF write failed", extra={"error": str(exc), "documents": len(lines)})
                return 0
            return len(lines)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()


def start_emf_reporter(
    metrics: Metrics,
    service: str,
    environ: Mapping[str, str] | None = None,
    out: IO[bytes] | None = None,
) -> EmfReporter | None:
    """Start EMF output if ``BTCPIPE_EMF`` enables it (else None). The CLI calls this once per service."""
    settings = EmfSettings.from_env(environ)
    if not settings.enabled:
        return None
    snapshotter = EmfSnapshotter(metrics, service=service, namespace=settings.namespace)
    reporter = EmfReporter(snapshotter, settings.interval_s, out if out is not None else sys.stdout.buffer)
    log.info("EMF output enabled", extra={"namespace": settings.namespace, "interval_s": settings.interval_s})
    return reporter.start()
