"""The PromQL name checker (``support.promql``) itself: it passes consistent expressions and reports the rest."""

from __future__ import annotations

import pytest
from support.promql import check_expression, documented_values, metric_families


def test_consistent_expressions_pass() -> None:
    assert check_expression("time() - max by (symbol) (btcpipe_feature_last_ts_seconds) > 3") == []
    assert check_expression(
        "histogram_quantile(0.95, sum by (le, symbol) (rate(btcpipe_inference_latency_seconds_bucket[5m])))"
    ) == []
    assert check_expression('sum(rate(btcpipe_inference_ticks_total{outcome=~"skipped_deadline|error"}[5m]))') == []
    assert check_expression('btcpipe_inference_ticks_total{symbol=~"$symbol",outcome="predicted"}') == []
    assert check_expression('up{job=~"btcpipe-.*"} == 0') == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("btcpipe_feature_age_seconds > 3", "unknown series btcpipe_feature_age_seconds"),
        ("rate(btcpipe_ingest_messages[5m])", "unknown series btcpipe_ingest_messages"),  # counter without _total
        ("btcpipe_inference_latency_seconds > 0.1", "unknown series btcpipe_inference_latency_seconds"),
        ('btcpipe_processor_lag_seconds{stream="trade"}', "has no label 'stream'"),
        ("sum by (stream) (btcpipe_processor_lag_seconds)", "grouping by 'stream'"),
        ('rate(btcpipe_inference_ticks_total{outcome="skipped"}[1m])', "'skipped' is not one of"),
        ("label_values(btcpipe_feature_last_ts_seconds, stream)", "has no label 'stream'"),
    ],
)
def test_inconsistent_expressions_are_reported(expr: str, problem: str) -> None:
    problems = check_expression(expr)
    assert any(problem in p for p in problems), problems


def test_every_metric_in_metrics_is_known_to_the_checker() -> None:
    families = metric_families()
    assert "btcpipe_ingest_messages_total" in families
    assert families["btcpipe_inference_latency_seconds_bucket"].kind == "histogram"
    assert families["btcpipe_processor_lag_seconds"].labels == {"symbol"}
    assert documented_values(families["btcpipe_store_requests_total"].help) == {"result": {"hit", "miss", "error"}}
    assert documented_values(families["btcpipe_ingest_gap_fills_total"].help) == {}
