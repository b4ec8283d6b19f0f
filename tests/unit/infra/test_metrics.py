from __future__ import annotations

from collections.abc import Callable

import httpx

from btcpipe.domain.errors import StoreError
from btcpipe.infra.metrics import Metrics, readiness, serve_metrics


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


class _Down:
    """A store whose server does not answer."""

    def ping(self) -> None:
        raise StoreError("the online store does not answer: Timeout reading from socket")


class _Up:
    def ping(self) -> None:
        return None


def test_readyz_says_whether_store_and_bus_answer_while_healthz_stays_liveness() -> None:
    store: object = _Up()
    server = serve_metrics(Metrics(), health=lambda: (True, {}),
                           ready=readiness({"store": lambda_proxy(lambda: store), "bus": object()}))
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert httpx.get(f"{base}/readyz").json() == {"ok": True, "store": "ok", "bus": "ok"}
        store = _Down()
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["store"].startswith("unreachable: the online store does not answer")
        assert ready.json()["bus"] == "ok"  # an in-process adapter has nothing to ping
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        server.shutdown()


def lambda_proxy(get: Callable[[], object]) -> object:
    """An object whose ``ping`` is that of whatever ``get`` returns now (the test swaps the store)."""

    class Proxy:
        def ping(self) -> None:
            target = get()
            assert isinstance(target, _Up | _Down)
            target.ping()

    return Proxy()


def test_openmetrics_scrapes_get_trace_exemplars_and_classic_scrapes_stay_plain() -> None:
    metrics = Metrics()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metrics.inference_latency.labels(symbol="BTCUSDT").observe(0.0003, exemplar={"trace_id": trace_id})
    metrics.dead_letters.labels(stream="market-sbe-trade", reason="PayloadDecodeError").inc()
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
        assert 'btcpipe_dead_letters_total{reason="PayloadDecodeError",stream="market-sbe-trade"} 1.0' in plain.text
    finally:
        server.shutdown()
