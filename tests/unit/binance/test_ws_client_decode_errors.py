"""A frame that does not decode is counted by reason (a Prometheus label) and logged at most once per reason per
second with a short sample; a decoder bug is counted apart and logged with its traceback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
from btcpipe.domain.errors import MalformedRecordError, TruncatedFrameError
from btcpipe.infra.metrics import Metrics


def _client(clock: list[float], metrics: Metrics) -> MarketStreamClient:
    settings = StreamSettings(sbe_url="ws://127.0.0.1:9", json_url="ws://127.0.0.1:9", api_key="k")
    return MarketStreamClient(["BTCUSDT"], settings, metrics=metrics, monotonic=lambda: clock[0])


def test_decode_errors_are_counted_by_reason_and_logged_rate_limited_with_a_sample(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    metrics = Metrics()
    client = _client(clock, metrics)
    conn: Any = SimpleNamespace(mode="sbe")
    with caplog.at_level("WARNING", logger="btcpipe.binance.ws_client"):
        for _ in range(50):
            client._decode_error(conn, MalformedRecordError("exponent 11 is outside ±18"), b"\x12\x00\x10\x27" * 20)
        client._decode_error(conn, TruncatedFrameError("short"), b"\x01")
        client._decode_error(conn, KeyError("decoder bug"), b"\x02")
        clock[0] += 1.5
        client._decode_error(conn, MalformedRecordError("again"), b"\x12")
    assert client.stats.decode_errors == 53
    assert client.stats.decode_errors_by_type == {"MalformedRecordError": 51, "TruncatedFrameError": 1,
                                                   "unexpected:KeyError": 1}
    lines = [r for r in caplog.records if r.getMessage() == "undecodable stream frame skipped"]
    assert [r.error for r in lines] == ["MalformedRecordError", "TruncatedFrameError",  # type: ignore[attr-defined]
                                        "unexpected:KeyError", "MalformedRecordError"]
    assert lines[0].sample == "12001027" * 12  # type: ignore[attr-defined] # the first 48 bytes, hex
    assert lines[2].levelname == "ERROR"
    assert lines[2].exc_info is not None
    assert lines[3].not_logged_since == 49  # type: ignore[attr-defined]
    exposition = metrics.exposition().decode()
    assert 'btcpipe_ingest_decode_errors_total{error="MalformedRecordError",stream="sbe"} 51.0' in exposition
    assert 'btcpipe_ingest_decode_errors_total{error="unexpected:KeyError",stream="sbe"} 1.0' in exposition
