from __future__ import annotations

import httpx

from btcpipe.infra.metrics import Metrics, serve_metrics


def test_metrics_endpoint_exposes_updated_counters_and_health() -> None:
    metrics = Metrics()
    metrics.ingest_messages.labels(stream="trade", symbol="BTCUSDT").inc(3)
    metrics.inference_latency.labels(symbol="BTCUSDT").observe(0.0003)
    healthy = {"ok": True}
    server = serve_metrics(metrics, health=lambda: (healthy["ok"], {"streams": 3}))
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        text = httpx.get(f"{base}/metrics").text
        assert 'btcpipe_ingest_messages_total{stream="trade",symbol="BTCUSDT"} 3.0' in text
        assert 'btcpipe_inference_latency_seconds_bucket{le="0.0005",symbol="BTCUSDT"} 1.0' in text
        assert httpx.get(f"{base}/healthz").json() == {"ok": True, "streams": 3}
        healthy["ok"] = False
        assert httpx.get(f"{base}/healthz").status_code == 503
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.shutdown()


def test_separate_registries_do_not_share_values() -> None:
    a, b = Metrics(), Metrics()
    a.processor_rows.labels(symbol="BTCUSDT").inc()
    assert b"btcpipe_processor_rows_total{" not in b.exposition()


def test_openmetrics_scrapes_get_trace_exemplars_and_classic_scrapes_stay_plain() -> None:
    metrics = Metrics()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metrics.inference_latency.labels(symbol="BTCUSDT").observe(0.0003, exemplar={"trace_id": trace_id})
    metrics.processor_dead_letters.labels(reason="undecodable").inc()
    server = serve_metrics(metrics)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        open_metrics = httpx.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert f'# {{trace_id="{trace_id}"}} 0.0003' in open_metrics.text
        assert open_metrics.text.rstrip().endswith("# EOF")
        plain = httpx.get(url)
        assert plain.headers["content-type"].startswith("text/plain")
        assert trace_id not in plain.text
        assert 'btcpipe_processor_dead_letters_total{reason="undecodable"} 1.0' in plain.text
    finally:
        server.shutdown()
