"""The Grafana dashboard: generated, valid against its schema, covering every topic issue 6 lists, laid out without
overlaps, wired to the provisioned datasource, and querying only metrics btcpipe exports."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from support.promql import check_expression

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "btcpipe.json"
SCHEMA = GRAFANA / "dashboard.schema.json"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# Issue 6's dashboard topics -> a metric whose presence in some panel shows the topic is covered.
TOPICS = {
    "ingest rates": "btcpipe_ingest_messages_total",
    "decode errors": "btcpipe_ingest_decode_errors_total",
    "reconnects": "btcpipe_ingest_reconnects_total",
    "gaps": "btcpipe_ingest_trade_gaps_total",
    "resyncs": "btcpipe_ingest_book_resyncs_total",
    "feature freshness": "btcpipe_feature_last_ts_seconds",
    "processor lag": "btcpipe_processor_lag_seconds",
    "store hit rate": "btcpipe_store_requests_total",
    "inference latency histogram": "btcpipe_inference_latency_seconds_bucket",
    "skipped ticks": "btcpipe_inference_ticks_total",
    "prediction distribution": "btcpipe_prediction_value_bucket",
    "rolling MAE": "btcpipe_shadow_mae",
    "rolling hit rate": "btcpipe_shadow_hit_rate",
    "feature drift": "btcpipe_feature_drift_zscore",
    "dead letters": "btcpipe_dead_letters_total",
}


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def test_committed_dashboard_is_what_the_builder_writes() -> None:
    assert DASHBOARD.read_text() == _builder().render(), "run: python deploy/grafana/build_dashboard.py"


def test_dashboard_validates_against_its_schema_with_check_jsonschema() -> None:
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(SCHEMA), str(DASHBOARD)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_rejects_a_panel_without_targets(tmp_path: Path) -> None:
    broken = _dashboard()
    next(p for p in broken["panels"] if p["type"] != "row").pop("targets")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(SCHEMA), str(tmp_path / "broken.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0


def test_every_issue_topic_has_a_panel() -> None:
    exprs = " ".join(t["expr"] for p in _panels() for t in p["targets"])
    assert {topic for topic, metric in TOPICS.items() if metric not in exprs} == set()


def test_latency_panel_shows_p50_p95_and_p99() -> None:
    panel = next(p for p in _panels() if p["title"].startswith("Inference latency p50"))
    exprs = [t["expr"] for t in panel["targets"]]
    assert [e.split(",")[0] for e in exprs] == [f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")]
    assert all("btcpipe_inference_latency_seconds_bucket" in e for e in exprs)


def test_latency_percentiles_show_trace_exemplars_linked_to_a_trace_view() -> None:
    panel = next(p for p in _panels() if p["title"].startswith("Inference latency p50"))
    assert all(t["exemplar"] is True for t in panel["targets"])
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    links = datasources["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]
    assert [link["name"] for link in links] == ["trace_id"]  # the exemplar label inference sets
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]


def test_every_query_names_only_metrics_and_labels_btcpipe_exports() -> None:
    problems = {
        f"{p['title']}/{t['refId']}": check_expression(t["expr"]) for p in _panels() for t in p["targets"]
    }
    variables = _dashboard()["templating"]["list"]
    problems |= {f"variable {v['name']}": check_expression(v["definition"]) for v in variables}
    assert {k: v for k, v in problems.items() if v} == {}


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = _dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_panels_use_the_provisioned_datasource_and_dashboard_path() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    used = {p["datasource"]["uid"] for p in _panels()}
    used |= {t["datasource"]["uid"] for p in _panels() for t in p["targets"]}
    assert used <= uids
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "btcpipe.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
