"""Writes deploy/grafana/dashboards/btcpipe.json, the one btcpipe Grafana dashboard.

The JSON is generated so every panel has the same shape and a consistent layout; tests/unit/test_deploy_grafana.py
checks that the committed file equals this script's output and that every query names metrics from
btcpipe/infra/metrics.py. Run after editing: ``python deploy/grafana/build_dashboard.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "btcpipe.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SYMBOL = 'symbol=~"$symbol"'
WIDTH = 24
PANEL_HEIGHT = 8


def q(expr: str, legend: str, fmt: str = "time_series") -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend, "format": fmt, "datasource": DATASOURCE}


def quantiles(metric: str, by: str, labels: str = "") -> list[dict[str, Any]]:
    selector = f"{{{labels}}}" if labels else ""
    return [
        q(
            f"histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{selector}[5m])))",
            f"p{round(p * 100)} {{{{{by}}}}}",
        )
        for p in (0.5, 0.95, 0.99)
    ]


# (row title, [(panel title, kind, unit, description, targets, thresholds)]); kind: timeseries | heatmap | stat | table
ROWS: list[tuple[str, list[tuple[str, str, str, str, list[dict[str, Any]], list[float]]]]] = [
    (
        "Ingest",
        [
            ("Ingest rate", "timeseries", "msg/s", "Market messages received per second, by stream.",
             [q(f"sum by (stream) (rate(btcpipe_ingest_messages_total{{{SYMBOL}}}[1m]))", "{{stream}}")], []),
            ("Decode errors", "timeseries", "short", "Frames that failed to decode (counted and skipped) per 5 min.",
             [q("sum by (stream, error) (increase(btcpipe_ingest_decode_errors_total[5m]))", "{{stream}} {{error}}")],
             [1]),
            ("Reconnects", "timeseries", "short", "WebSocket reconnects per 10 min, by reason.",
             [q("sum by (stream, reason) (increase(btcpipe_ingest_reconnects_total[10m]))", "{{stream}} {{reason}}")],
             [5]),
            ("Trade gaps and book resyncs", "timeseries", "short",
             "Trade-id gaps seen on the stream, ids missing, REST fills by outcome, order-book resyncs (per 10 min).",
             [q(f"sum by (symbol) (increase(btcpipe_ingest_trade_gaps_total{{{SYMBOL}}}[10m]))", "gaps {{symbol}}"),
              q(f"sum by (symbol) (increase(btcpipe_ingest_trade_gap_ids_total{{{SYMBOL}}}[10m]))",
                "missing ids {{symbol}}"),
              q(f"sum by (symbol, outcome) (increase(btcpipe_ingest_gap_fills_total{{{SYMBOL}}}[10m]))",
                "fills {{outcome}} {{symbol}}"),
              q(f"sum by (symbol) (increase(btcpipe_ingest_book_resyncs_total{{{SYMBOL}}}[10m]))",
                "resyncs {{symbol}}")], [3]),
            ("Seconds since last message", "timeseries", "s", "Silence per stream; 30 s fires BtcpipeIngestSilent.",
             [q("time() - max by (stream) (btcpipe_ingest_last_message_timestamp_seconds)", "{{stream}}")], [30]),
            ("Receive to bus latency", "timeseries", "s", "Ingest publish latency percentiles, by stream.",
             quantiles("btcpipe_ingest_publish_latency_seconds", "stream"), []),
        ],
    ),
    (
        "Processing",
        [
            ("Feature freshness", "timeseries", "s",
             "now - ts_sec of the newest feature row; healthy is 0-1 s, 3 s fires BtcpipeFeatureStale.",
             [q(f"time() - max by (symbol) (btcpipe_feature_last_ts_seconds{{{SYMBOL}}})", "{{symbol}}")], [3]),
            ("Processor lag", "timeseries", "s", "Wall time minus the newest event time consumed.",
             [q(f"max by (symbol) (btcpipe_processor_lag_seconds{{{SYMBOL}}})", "{{symbol}}")], [2]),
            ("Consumer lag", "timeseries", "short", "Records behind the head of each bus stream, per consumer.",
             [q("max by (stream, consumer) (btcpipe_consumer_lag_records)", "{{consumer}} on {{stream}}")], [5000]),
            ("Processor events", "timeseries", "ops",
             "Events consumed per second by stream; late (after their second closed) and duplicate events.",
             [q("sum by (stream) (rate(btcpipe_processor_events_total[1m]))", "{{stream}}"),
              q(f"sum by (symbol) (rate(btcpipe_processor_late_events_total{{{SYMBOL}}}[1m]))", "late {{symbol}}"),
              q(f"sum by (symbol) (rate(btcpipe_processor_duplicate_events_total{{{SYMBOL}}}[1m]))",
                "duplicate {{symbol}}"),
              q(f"sum by (symbol) (rate(btcpipe_processor_rows_total{{{SYMBOL}}}[1m]))", "rows {{symbol}}")], []),
            ("Dead letters", "timeseries", "short",
             "Bus records the processor set aside (could not decode or apply) per 5 min, by source stream and reason.",
             [q("sum by (stream, reason) (increase(btcpipe_dead_letters_total[5m]))", "{{stream}} {{reason}}")], [1]),
        ],
    ),
    (
        "Online store",
        [
            ("Store hit rate", "timeseries", "percentunit",
             "Reads that found a fresh feature row; below 95 % fires BtcpipeOnlineStoreMissRate.",
             [q('sum by (op) (rate(btcpipe_store_requests_total{result="hit"}[5m])) / '
                'sum by (op) (rate(btcpipe_store_requests_total{result=~"hit|miss|error"}[5m]))', "{{op}}")], [0.95]),
            ("Store latency", "timeseries", "s", "Online-store request latency percentiles, by operation.",
             quantiles("btcpipe_store_latency_seconds", "op"), []),
        ],
    ),
    (
        "Inference",
        [
            ("Inference latency p50 / p95 / p99", "timeseries", "s",
             "Tick latency (read features, infer, publish); the deadline is 100 ms. With tracing on, the dots are "
             "exemplars: one traced tick each, linked to its trace.",
             [{**t, "exemplar": True} for t in quantiles("btcpipe_inference_latency_seconds", "symbol", SYMBOL)],
             [0.1]),
            ("Inference latency histogram", "heatmap", "s", "Ticks per latency bucket per minute.",
             [q(f"sum by (le) (increase(btcpipe_inference_latency_seconds_bucket{{{SYMBOL}}}[1m]))", "{{le}}",
                "heatmap")], []),
            ("Ticks by outcome", "timeseries", "ops",
             "predicted, fallback, and the ones without a prediction: stale, skipped_deadline, no_features, error.",
             [q(f"sum by (outcome) (rate(btcpipe_inference_ticks_total{{{SYMBOL}}}[1m]))", "{{outcome}}")], []),
            ("Skipped ticks", "timeseries", "percentunit", "Share of ticks without a prediction; 1 % alerts.",
             [q(f'sum by (symbol) (rate(btcpipe_inference_ticks_total{{{SYMBOL},'
                f'outcome=~"stale|skipped_deadline|no_features|error"}}[5m])) / '
                f"sum by (symbol) (rate(btcpipe_inference_ticks_total{{{SYMBOL}}}[5m]))", "{{symbol}}")], [0.01]),
            ("Age of features used", "timeseries", "s", "p95 age of the feature row each prediction used.",
             quantiles("btcpipe_inference_feature_age_seconds", "symbol", SYMBOL)[1:2], [3]),
            ("Prediction distribution", "heatmap", "short", "Predicted 10 s log returns per bucket per 5 min.",
             [q(f"sum by (le) (increase(btcpipe_prediction_value_bucket{{{SYMBOL}}}[5m]))", "{{le}}", "heatmap")],
             []),
            ("Rolling MAE", "timeseries", "short", "MAE of predictions whose 10 s label has been realized.",
             [q(f"btcpipe_shadow_mae{{{SYMBOL}}}", "{{symbol}}")], []),
            ("Rolling hit rate", "timeseries", "percentunit", "Directional hit rate on realized non-zero moves.",
             [q(f"btcpipe_shadow_hit_rate{{{SYMBOL}}}", "{{symbol}}")], [0.5]),
            ("Model served", "table", "short", "Name and version of the model being served.",
             [q("max by (name, version) (btcpipe_model_info)", "{{name}} {{version}}", "table")], []),
            ("Model age and loads", "timeseries", "s",
             "Seconds since the served model was trained (7 days alerts), and loads refused per 15 min.",
             [q("time() - max by (name) (btcpipe_model_trained_timestamp_seconds)", "age {{name}}"),
              q("sum by (outcome) (increase(btcpipe_model_loads_total[15m]))", "loads {{outcome}}")], [604800]),
        ],
    ),
    (
        "Feature drift",
        [
            ("Feature drift (z-score)", "timeseries", "short",
             "Rolling mean of each feature in training-std units from its training mean; |z| > 3 alerts.",
             [q("btcpipe_feature_drift_zscore", "{{feature}}")], [3]),
            ("Feature std ratio", "timeseries", "short", "Rolling std of each feature over its training std.",
             [q("btcpipe_feature_std_ratio", "{{feature}}")], []),
        ],
    ),
]


def _panel(panel_id: int, spec: tuple[str, str, str, str, list[dict[str, Any]], list[float]],
           grid: dict[str, int]) -> dict[str, Any]:
    title, kind, unit, description, targets, thresholds = spec
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": "red", "value": t} for t in thresholds]
    panel: dict[str, Any] = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {},
    }
    if kind == "timeseries" and thresholds:
        panel["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
    if kind == "heatmap":
        panel["options"] = {"calculate": False, "yAxis": {"unit": unit}, "cellGap": 1}
    return panel


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": next_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": WIDTH, "h": 1}, "panels": []})
        next_id, y = next_id + 1, y + 1
        for i, spec in enumerate(row_panels):
            grid = {"x": (i % 2) * (WIDTH // 2), "y": y + (i // 2) * PANEL_HEIGHT, "w": WIDTH // 2, "h": PANEL_HEIGHT}
            panels.append(_panel(next_id, spec, grid))
            next_id += 1
        y += ((len(row_panels) + 1) // 2) * PANEL_HEIGHT
    return {
        "uid": "btcpipe",
        "title": "btcpipe",
        "description": "Ingest, processing, online store, inference and drift of the BTCUSDT 10 s predictor.",
        "tags": ["btcpipe"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "symbol",
                    "label": "Symbol",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(btcpipe_feature_last_ts_seconds, symbol)", "refId": "symbol"},
                    "definition": "label_values(btcpipe_feature_last_ts_seconds, symbol)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
