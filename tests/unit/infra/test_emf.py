"""CloudWatch Embedded Metric Format output: documents valid under the EMF specification, values that mean what
the Prometheus metrics mean (increases per period, interval percentiles, ages), and bad settings refused."""

from __future__ import annotations

import io
import logging
import math

import jsonschema
import orjson
import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.infra.emf import (
    KEY_METRICS,
    EmfReporter,
    EmfSettings,
    EmfSnapshotter,
    histogram_quantile,
    start_emf_reporter,
)
from btcpipe.infra.metrics import Metrics

# The document structure of the EMF specification (CloudWatch_Embedded_Metric_Format_Specification), as JSON Schema.
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "additionalProperties": False,
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^:].*"},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {
                                            "enum": [
                                                "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes",
                                                "Megabytes", "Gigabytes", "Terabytes", "Bits", "Kilobits",
                                                "Megabits", "Gigabits", "Terabits", "Percent", "Count",
                                                "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
                                                "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
                                                "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
                                                "Terabits/Second", "Count/Second", "None",
                                            ]
                                        },
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}

NOW = 1_723_100_000.0


def _busy_metrics() -> Metrics:
    m = Metrics()
    m.ingest_messages.labels(stream="trade", symbol="BTCUSDT").inc(120)
    m.ingest_messages.labels(stream="depth", symbol="BTCUSDT").inc(60)
    m.ingest_decode_errors.labels(stream="trade", error="truncated").inc(2)
    m.ingest_book_resyncs.labels(symbol="BTCUSDT").inc()
    m.processor_lag.labels(symbol="BTCUSDT").set(0.4)
    m.consumer_lag_records.labels(stream="market-sbe-trade", consumer="processor").set(12)
    m.feature_last_ts.labels(symbol="BTCUSDT").set(NOW - 1)
    m.store_requests.labels(op="get", result="hit").inc(59)
    m.store_requests.labels(op="get", result="miss").inc(1)
    m.inference_ticks.labels(symbol="BTCUSDT", outcome="predicted").inc(60)
    for _ in range(60):
        m.inference_latency.labels(symbol="BTCUSDT").observe(0.0004)
    m.model_trained_timestamp.labels(name="btcusdt-10s").set(NOW - 86_400)
    m.shadow_mae.labels(symbol="BTCUSDT").set(2.1e-4)
    m.feature_drift.labels(feature="ret_1s").set(-0.7)
    m.feature_drift.labels(feature="tvi_1s").set(0.2)
    return m


def _by_metric(documents: list[dict[str, object]]) -> dict[tuple[str, tuple[tuple[str, object], ...]], float]:
    """(metric name, non-Service dimension values) -> value, over every document."""
    out: dict[tuple[str, tuple[tuple[str, object], ...]], float] = {}
    for doc in documents:
        directive = doc["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
        dims = tuple(sorted((k, doc[k]) for s in directive["Dimensions"] for k in s if k != "Service"))
        for metric in directive["Metrics"]:
            out[(metric["Name"], dims)] = doc[metric["Name"]]  # type: ignore[assignment]
    return out


def test_documents_are_valid_emf_and_every_referenced_member_is_present() -> None:
    documents = EmfSnapshotter(_busy_metrics(), service="inference").snapshot(NOW)
    assert documents
    for doc in orjson.loads(b"[" + b",".join(orjson.dumps(d) for d in documents) + b"]"):
        jsonschema.validate(doc, EMF_SCHEMA)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert ["Service"] in directive["Dimensions"]
            for dimension_set in directive["Dimensions"]:
                for name in dimension_set:
                    assert isinstance(doc[name], str)
                    assert doc[name]
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                assert isinstance(value, int | float)
                assert math.isfinite(value)
        assert doc["Service"] == "inference"
        assert doc["_aws"]["Timestamp"] == int(NOW * 1000)


def test_values_mean_what_the_prometheus_metrics_mean() -> None:
    values = _by_metric(EmfSnapshotter(_busy_metrics(), service="ingestor").snapshot(NOW))
    assert values[("IngestMessages", (("Stream", "trade"),))] == 120
    assert values[("IngestMessages", (("Stream", "depth"),))] == 60
    assert values[("DecodeErrors", (("Stream", "trade"),))] == 2
    assert values[("BookResyncs", (("Symbol", "BTCUSDT"),))] == 1
    assert values[("ProcessorLag", (("Symbol", "BTCUSDT"),))] == pytest.approx(0.4)
    assert values[("ConsumerLag", (("Stream", "market-sbe-trade"),))] == 12
    assert values[("FeatureAge", (("Symbol", "BTCUSDT"),))] == pytest.approx(1.0)
    assert values[("ModelAge", (("Model", "btcusdt-10s"),))] == pytest.approx(86_400)
    assert values[("StoreMissRate", ())] == pytest.approx(100 / 60)
    assert values[("SkippedTicks", (("Symbol", "BTCUSDT"),))] == 0
    assert values[("FeatureDriftMaxAbsZ", ())] == pytest.approx(0.7)
    # 0.4 ms falls in the (0.25 ms, 0.5 ms] bucket: every percentile interpolates inside it.
    for name in ("InferenceLatencyP50", "InferenceLatencyP95", "InferenceLatencyP99"):
        assert 0.25 < values[(name, (("Symbol", "BTCUSDT"),))] <= 0.5


def test_counters_are_reported_as_increases_since_the_previous_snapshot() -> None:
    m = Metrics()
    snap = EmfSnapshotter(m, service="ingestor")
    m.ingest_reconnects.labels(stream="trade", reason="closed").inc(3)
    m.ingest_reconnects.labels(stream="trade", reason="timeout").inc(2)
    assert _by_metric(snap.snapshot(NOW))[("Reconnects", (("Stream", "trade"),))] == 5
    m.ingest_reconnects.labels(stream="trade", reason="closed").inc(1)
    assert _by_metric(snap.snapshot(NOW + 60))[("Reconnects", (("Stream", "trade"),))] == 1
    assert _by_metric(snap.snapshot(NOW + 120))[("Reconnects", (("Stream", "trade"),))] == 0


def test_latency_percentiles_cover_only_the_observations_since_the_previous_snapshot() -> None:
    m = Metrics()
    snap = EmfSnapshotter(m, service="inference")
    latency = m.inference_latency.labels(symbol="BTCUSDT")
    for _ in range(90):
        latency.observe(0.0003)
    for _ in range(10):
        latency.observe(0.2)  # 10 % past the deadline
    slow = _by_metric(snap.snapshot(NOW))
    assert 100 < slow[("InferenceLatencyP95", (("Symbol", "BTCUSDT"),))] <= 250
    assert slow[("InferenceLatencyP50", (("Symbol", "BTCUSDT"),))] <= 0.5
    for _ in range(100):
        latency.observe(0.0003)
    fast = _by_metric(snap.snapshot(NOW + 60))
    assert fast[("InferenceLatencyP99", (("Symbol", "BTCUSDT"),))] <= 0.5
    # No observations in the next period: no percentile rather than a made-up one.
    assert ("InferenceLatencyP95", (("Symbol", "BTCUSDT"),)) not in _by_metric(snap.snapshot(NOW + 120))


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    # The same buckets as the BtcpipeInferenceLatencyHigh promtool test, where Prometheus reports 242.5 ms.
    assert histogram_quantile(0.95, [(0.001, 0), (0.1, 0), (0.25, 10), (math.inf, 10)]) == pytest.approx(0.2425)
    assert histogram_quantile(0.5, [(1.0, 0), (math.inf, 4)]) == 1.0  # in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None


def test_store_miss_rate_counts_misses_and_errors_over_reads_only() -> None:
    m = Metrics()
    m.store_requests.labels(op="get", result="hit").inc(90)
    m.store_requests.labels(op="get", result="miss").inc(8)
    m.store_requests.labels(op="get", result="error").inc(2)
    m.store_requests.labels(op="put", result="ok").inc(500)
    values = _by_metric(EmfSnapshotter(m, service="inference").snapshot(NOW))
    assert values[("StoreMissRate", ())] == pytest.approx(10.0)


def test_skipped_ticks_count_only_ticks_without_a_prediction() -> None:
    m = Metrics()
    outcomes = (("predicted", 50), ("fallback", 3), ("stale", 1), ("skipped_deadline", 3), ("no_features", 2),
                ("error", 1))
    for outcome, n in outcomes:
        m.inference_ticks.labels(symbol="BTCUSDT", outcome=outcome).inc(n)
    values = _by_metric(EmfSnapshotter(m, service="inference").snapshot(NOW))
    assert values[("SkippedTicks", (("Symbol", "BTCUSDT"),))] == 7
    assert values[("InferenceTicks", (("Symbol", "BTCUSDT"),))] == 60


def test_unfilled_gaps_count_only_the_unfillable_ones() -> None:
    m = Metrics()
    m.ingest_gap_fills.labels(symbol="BTCUSDT", outcome="filled").inc(7)
    m.ingest_gap_fills.labels(symbol="BTCUSDT", outcome="deferred").inc(2)
    m.ingest_gap_fills.labels(symbol="BTCUSDT", outcome="unfillable").inc(1)
    values = _by_metric(EmfSnapshotter(m, service="ingestor").snapshot(NOW))
    assert values[("UnfilledTradeGaps", (("Symbol", "BTCUSDT"),))] == 1


def test_non_finite_values_are_left_out_because_json_cannot_carry_them() -> None:
    m = Metrics()
    m.shadow_mae.labels(symbol="BTCUSDT").set(float("nan"))
    m.shadow_hit_rate.labels(symbol="BTCUSDT").set(0.55)
    documents = EmfSnapshotter(m, service="inference").snapshot(NOW)
    values = _by_metric(documents)
    assert ("ShadowMAE", (("Symbol", "BTCUSDT"),)) not in values
    assert values[("ShadowHitRate", (("Symbol", "BTCUSDT"),))] == pytest.approx(0.55)
    for doc in documents:
        orjson.loads(orjson.dumps(doc))


def test_every_key_metric_reads_a_family_and_labels_that_metrics_defines() -> None:
    collectors = {c._name: c for c in vars(Metrics()).values() if hasattr(c, "_labelnames")}  # type: ignore[attr-defined]
    for spec in KEY_METRICS:
        assert spec.family in collectors, spec
        labels = set(collectors[spec.family]._labelnames)
        for label in [spec.dimension[0] if spec.dimension else None, *(f[0] for f in (spec.only, spec.exclude) if f)]:
            assert label is None or label in labels, (spec, label)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BTCPIPE_EMF": "maybe"}, "BTCPIPE_EMF"),
        ({"BTCPIPE_EMF": "1", "BTCPIPE_EMF_INTERVAL_S": "soon"}, "BTCPIPE_EMF_INTERVAL_S"),
        ({"BTCPIPE_EMF": "1", "BTCPIPE_EMF_INTERVAL_S": "0.1"}, "at least 1"),
        ({"BTCPIPE_EMF": "1", "BTCPIPE_EMF_NAMESPACE": "AWS/Kinesis"}, "AWS/"),
        ({"BTCPIPE_EMF": "1", "BTCPIPE_EMF_NAMESPACE": ""}, "1-255"),
    ],
)
def test_bad_emf_settings_are_refused_with_the_variable_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EmfSettings.from_env(environ)


def test_emf_is_off_unless_enabled() -> None:
    assert EmfSettings.from_env({}) == EmfSettings(enabled=False)
    assert start_emf_reporter(Metrics(), "ingestor", environ={}) is None
    assert EmfSettings.from_env({"BTCPIPE_EMF": "true", "BTCPIPE_EMF_INTERVAL_S": "10"}).interval_s == 10.0


def test_reporter_writes_one_json_line_per_document_and_a_last_snapshot_on_stop() -> None:
    m = _busy_metrics()
    out = io.BytesIO()
    reporter = start_emf_reporter(
        m, "inference", environ={"BTCPIPE_EMF": "1", "BTCPIPE_EMF_INTERVAL_S": "3600"}, out=out
    )
    assert reporter is not None
    m.ingest_messages.labels(stream="trade", symbol="BTCUSDT").inc(5)
    reporter.stop()  # the period never elapsed: everything written comes from the final flush
    lines = out.getvalue().splitlines()
    assert lines
    docs = [orjson.loads(line) for line in lines]
    for doc in docs:
        jsonschema.validate(doc, EMF_SCHEMA)
    assert _by_metric(docs)[("IngestMessages", (("Stream", "trade"),))] == 125


def test_a_failed_write_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    out = io.BytesIO()
    out.close()
    reporter = EmfReporter(EmfSnapshotter(_busy_metrics(), service="ingestor"), 60.0, out, clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="btcpipe.infra.emf"):
        assert reporter.flush() == 0
    assert "EMF write failed" in caplog.text
