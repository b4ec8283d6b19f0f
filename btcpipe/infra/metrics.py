"""Every Prometheus metric btcpipe exports, in one place, so alert rules and dashboards have one source.

Services receive a ``Metrics`` (built on a registry of their own in tests) and update it; the CLI serves
it with ``serve_metrics`` beside a ``/healthz`` endpoint, in OpenMetrics when the scraper asks for it (so
exemplars — trace ids on latency buckets — reach Prometheus). Names follow Prometheus conventions: base units
(seconds), ``_total`` for counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder

from btcpipe.domain.errors import BtcpipeError

# Sub-millisecond resolution where the targets live (tick ≤ 0.5 ms), up to the 100 ms deadline and beyond.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
AGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
PREDICTION_BUCKETS = (-1e-3, -5e-4, -2e-4, -1e-4, -5e-5, -2e-5, 0.0, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)


class Metrics:
    """Every Prometheus metric btcpipe exports, on one registry (names and help documented once, here)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # ingestor
        self.ingest_messages = Counter(
            "btcpipe_ingest_messages_total", "Market messages received", ["stream", "symbol"], registry=r
        )
        self.ingest_decode_errors = Counter(
            "btcpipe_ingest_decode_errors_total",
            "Frames that failed to decode, by error",
            ["stream", "error"],
            registry=r,
        )
        self.ingest_reconnects = Counter(
            "btcpipe_ingest_reconnects_total", "Stream reconnects, by reason", ["stream", "reason"], registry=r
        )
        self.ingest_trade_gaps = Counter(
            "btcpipe_ingest_trade_gaps_total", "Trade-id gaps detected on the stream", ["symbol"], registry=r
        )
        self.ingest_trade_gap_ids = Counter(
            "btcpipe_ingest_trade_gap_ids_total", "Trade ids missing from the stream", ["symbol"], registry=r
        )
        self.ingest_gap_fills = Counter(
            "btcpipe_ingest_gap_fills_total",
            "Trade gaps filled from REST, by outcome",
            ["symbol", "outcome"],
            registry=r,
        )
        self.ingest_book_resyncs = Counter(
            "btcpipe_ingest_book_resyncs_total", "Order-book resyncs after a missed diff", ["symbol"], registry=r
        )
        self.ingest_publish_latency = Histogram(
            "btcpipe_ingest_publish_latency_seconds",
            "Receive to published on the bus",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_last_message = Gauge(
            "btcpipe_ingest_last_message_timestamp_seconds", "Wall time of the last message", ["stream"], registry=r
        )
        # processor
        self.processor_events = Counter(
            "btcpipe_processor_events_total", "Events consumed from the bus", ["stream"], registry=r
        )
        self.processor_late_events = Counter(
            "btcpipe_processor_late_events_total",
            "Events after their second closed (not applied)",
            ["symbol"],
            registry=r,
        )
        self.processor_duplicate_events = Counter(
            "btcpipe_processor_duplicate_events_total", "Duplicate trade ids ignored", ["symbol"], registry=r
        )
        self.dead_letters = Counter(
            "btcpipe_dead_letters_total",
            "Bus payloads a consumer could not decode, set aside on the dead-letters stream, by source stream and "
            "reason (the error class)",
            ["stream", "reason"],
            registry=r,
        )
        self.processor_rows = Counter("btcpipe_processor_rows_total", "Feature rows written", ["symbol"], registry=r)
        self.processor_lag = Gauge(
            "btcpipe_processor_lag_seconds", "Wall time minus the newest event time consumed", ["symbol"], registry=r
        )
        self.consumer_lag_records = Gauge(
            "btcpipe_consumer_lag_records",
            "Records behind the head of the stream",
            ["stream", "consumer"],
            registry=r,
        )
        self.feature_last_ts = Gauge(
            "btcpipe_feature_last_ts_seconds",
            "ts_sec of the newest feature row (freshness = now - this)",
            ["symbol"],
            registry=r,
        )
        # online store
        self.store_requests = Counter(
            "btcpipe_store_requests_total",
            "Online-store requests by result (hit, miss, error)",
            ["op", "result"],
            registry=r,
        )
        self.store_latency = Histogram(
            "btcpipe_store_latency_seconds",
            "Online-store request latency",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # inference
        self.inference_ticks = Counter(
            "btcpipe_inference_ticks_total",
            "Inference ticks by outcome (predicted, fallback, stale, skipped_deadline, no_features, error)",
            ["symbol", "outcome"],
            registry=r,
        )
        self.inference_feature_misses = Counter(
            "btcpipe_inference_feature_misses_total",
            "Ticks whose features were unusable from a source, by reason (store_missing, store_stale, store_error, "
            "schema_mismatch, store_incomplete, fallback_no_data, fallback_warming_up, fallback_stale, ...)",
            ["symbol", "reason"],
            registry=r,
        )
        self.inference_store_age = Gauge(
            "btcpipe_inference_store_age_seconds",
            "Wall time minus ts_sec of the newest row inference found in the online store (processor/bus lag)",
            ["symbol"],
            registry=r,
        )
        self.inference_latency = Histogram(
            "btcpipe_inference_latency_seconds",
            "Tick latency: read features, infer, publish",
            ["symbol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_age = Histogram(
            "btcpipe_inference_feature_age_seconds",
            "Age of the features a prediction used",
            ["symbol"],
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.prediction = Histogram(
            "btcpipe_prediction_value",
            "Distribution of predicted 10 s log returns",
            ["symbol"],
            buckets=PREDICTION_BUCKETS,
            registry=r,
        )
        self.shadow_mae = Gauge("btcpipe_shadow_mae", "Rolling MAE of realized predictions", ["symbol"], registry=r)
        self.shadow_hit_rate = Gauge(
            "btcpipe_shadow_hit_rate", "Rolling directional hit rate of realized predictions", ["symbol"], registry=r
        )
        self.feature_drift = Gauge(
            "btcpipe_feature_drift_zscore",
            "Rolling mean of a feature in training-std units from its training mean",
            ["feature"],
            registry=r,
        )
        self.feature_std_ratio = Gauge(
            "btcpipe_feature_std_ratio", "Rolling std of a feature over its training std", ["feature"], registry=r
        )
        self.model_info = Gauge(
            "btcpipe_model_info", "The model being served (value 1)", ["name", "version"], registry=r
        )
        self.model_trained_timestamp = Gauge(
            "btcpipe_model_trained_timestamp_seconds", "When the served model was trained", ["name"], registry=r
        )
        self.model_loads = Counter(
            "btcpipe_model_loads_total", "Model loads by outcome (loaded, refused)", ["outcome"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


@runtime_checkable
class Pingable(Protocol):
    """An adapter that can say whether its server answers: ``ping`` raises a ``BtcpipeError`` if not."""

    def ping(self) -> None: ...


def readiness(dependencies: Mapping[str, object]) -> HealthCheck:
    """A ``/readyz`` check: ready while every dependency that can be pinged (bus, store, positions) answers.

    In-process adapters have no ``ping`` and count as reachable. Liveness (``/healthz``) stays separate: a
    service riding out a Redis outage is alive (do not restart it) but not ready (do not send it work).
    """
    def check() -> tuple[bool, dict[str, object]]:
        detail: dict[str, object] = {}
        for name, dependency in dependencies.items():
            if not isinstance(dependency, Pingable):
                detail[name] = "ok"
                continue
            try:
                dependency.ping()
                detail[name] = "ok"
            except BtcpipeError as exc:
                detail[name] = f"unreachable: {exc}"
        return all(v == "ok" for v in detail.values()), detail

    return check


def serve_metrics(
    metrics: Metrics, host: str = "127.0.0.1", port: int = 0, health: HealthCheck | None = None,
    ready: HealthCheck | None = None,
) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` (liveness: ``health``) and ``/readyz`` (readiness: ``ready``, e.g.
    ``readiness({...})``) on a background thread; returns the server (``.server_port``). 503 when not ok."""
    import orjson

    class Handler(BaseHTTPRequestHandler):
        """Serves ``/metrics`` and ``/healthz``."""

        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                # Prometheus asks for OpenMetrics, the only text format that carries exemplars (trace ids on
                # latency buckets when tracing is on); anything else gets the classic format.
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                body, status = encoder(metrics.registry), 200
            elif self.path.startswith(("/healthz", "/readyz")):
                check = health if self.path.startswith("/healthz") else ready
                ok, detail = check() if check else (True, {})
                body, status, ctype = orjson.dumps({"ok": ok, **detail}), 200 if ok else 503, "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
