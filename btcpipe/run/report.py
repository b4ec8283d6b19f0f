"""The run report: ``summary.json`` (everything the run did), ``predictions.csv`` and ``report.html`` with PNG
plots (matplotlib, Agg backend): the model against its ruler, live predictions vs realized returns, the
latency of each hop, and the training curve. ``rebuild_report`` redraws page and plots from the summary.

Written whatever happened: a failed run still gets its summary (stages done, the stage that failed and why).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from btcpipe.domain.errors import BtcpipeError, DataError
from btcpipe.domain.time import iso
from btcpipe.run import report_html
from btcpipe.run.orchestrator import RunResult

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
PREDICTIONS_FILE = "predictions.csv"
PLOT_PREDICTIONS = "predictions_vs_realized.png"
PLOT_LATENCY = "latency_hops.png"
PLOT_TRAINING = "training_loss.png"
PLOT_RULER = "model_vs_ruler.png"
PREDICTION_COLUMNS = ("ts_sec", "time", "yhat", "realized", "latency_ms", "feature_age_ms", "source", "model_version")


def percentiles(values: list[float]) -> dict[str, float | int]:
    """p50/p90/p99 (and n, mean, max) of latencies in ms."""
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"n": int(arr.size), "p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3), "mean_ms": round(float(arr.mean()), 3),
            "max_ms": round(float(arr.max()), 3)}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def summary_document(result: RunResult) -> dict[str, Any]:
    doc = result.to_dict()
    # The report stage is still running while it writes this; its outcome is the files themselves.
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "report"]
    if result.live is not None:
        doc["live"]["hops"] = {hop: percentiles(v) for hop, v in result.live.hops_ms.items()}
        doc["live"]["predictions"] = len(result.live.predictions)
        interval = live_hit_rate_interval(result.live.predictions)
        if interval is not None:
            doc["live"]["hit_rate_interval"] = interval
    return _finite(doc)  # type: ignore[no-any-return]


LIVE_BLOCK_S = 10  # one label horizon: consecutive live predictions share 9 of 10 label seconds


def live_hit_rate_interval(predictions: list[dict[str, Any]]) -> dict[str, float | None] | None:
    """The live hit rate with a 95 % block-bootstrap interval (blocks of 10 consecutive predictions)."""
    from btcpipe.domain.uncertainty import BlockBootstrap

    pairs = [(float(p["yhat"]), float(p["realized"])) for p in predictions
             if p.get("realized") is not None and math.isfinite(float(p["realized"]))]
    if len(pairs) < 2 or all(r == 0.0 for _, r in pairs):
        return None
    yhat = np.asarray([a for a, _ in pairs])
    realized = np.asarray([b for _, b in pairs])
    return BlockBootstrap(realized, block_s=LIVE_BLOCK_S).scores(yhat)["hit_rate"].as_dict()


def write_report(result: RunResult, out_dir: Path, *, with_plots: bool = True) -> dict[str, str]:
    """Write summary, predictions, plots and the HTML page into ``out_dir``; returns their paths. Without
    ``with_plots`` (a run that is stopping, within its grace period) the page has no figures."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = summary_document(result)
        if result.live is not None and result.live.predictions:
            _write_predictions(out_dir / PREDICTIONS_FILE, result.live.predictions)
        plots = _plot_names(doc, out_dir) if with_plots else {}
        doc["report"] = {"html": str(out_dir / REPORT_FILE), "plots": [str(out_dir / n) for n in plots.values()]}
        (out_dir / SUMMARY_FILE).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        return render_report(doc, out_dir, with_plots=with_plots)
    except OSError as exc:
        raise BtcpipeError(f"cannot write the run report in {out_dir}: {exc}") from exc


def rebuild_report(run_dir: Path) -> dict[str, str]:
    """Redraw the plots and ``report.html`` of a finished run from its ``summary.json`` (and predictions.csv)."""
    path = run_dir / SUMMARY_FILE
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise DataError(f"{path} does not exist: not a btcpipe run directory") from exc
    except (OSError, orjson.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or "stages" not in doc:
        raise DataError(f"{path} is not a btcpipe run summary")
    try:
        return render_report(doc, run_dir)
    except OSError as exc:
        raise BtcpipeError(f"cannot write the run report in {run_dir}: {exc}") from exc


def _plot_names(doc: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Which plots this run has material for (name → file)."""
    names: dict[str, str] = {}
    train = report_html.stage(doc, "train")
    if train is not None and report_html.ruler_rows(train):
        names["ruler"] = PLOT_RULER
    if (out_dir / PREDICTIONS_FILE).exists():
        names["predictions"] = PLOT_PREDICTIONS
    if any(p.get("n") for p in ((doc.get("live") or {}).get("hops") or {}).values()):
        names["latency"] = PLOT_LATENCY
    if train is not None and train.get("history"):
        names["training"] = PLOT_TRAINING
    return names


def render_report(doc: dict[str, Any], out_dir: Path, *, with_plots: bool = True) -> dict[str, str]:
    """Draw the plots the summary has material for (unless not ``with_plots``) and write ``report.html``;
    returns the paths."""
    from btcpipe.run import report_plots

    plots = _plot_names(doc, out_dir) if with_plots else {}
    train = report_html.stage(doc, "train") or {}
    if "ruler" in plots:
        rows = [(name, d.get("r2") or {}) for name, d in report_html.ruler_rows(train)]
        report_plots.plot_ruler(out_dir / plots["ruler"], rows)
    if "predictions" in plots:
        predictions = _read_predictions(out_dir / PREDICTIONS_FILE)
        if predictions:
            report_plots.plot_predictions(out_dir / plots["predictions"], predictions)
        else:
            del plots["predictions"]
    if "latency" in plots:
        report_plots.plot_latency(out_dir / plots["latency"], doc["live"]["hops"])
    if "training" in plots:
        report_plots.plot_training(out_dir / plots["training"], train["history"], train.get("best_epoch"))
    (out_dir / REPORT_FILE).write_text(report_html.page(doc, plots, SUMMARY_FILE), encoding="utf-8")
    paths = {name.removesuffix(".png"): str(out_dir / name) for name in plots.values()}
    paths["summary"] = str(out_dir / SUMMARY_FILE)
    paths["html"] = str(out_dir / REPORT_FILE)
    if (out_dir / PREDICTIONS_FILE).exists():
        paths["predictions"] = str(out_dir / PREDICTIONS_FILE)
    return paths


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("ts_sec")]


def _write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICTION_COLUMNS)
        for r in rows:
            writer.writerow([r.get("ts_sec"), iso(int(r["ts_sec"])), r.get("yhat"), _blank(r.get("realized")),
                             r.get("latency_ms"), r.get("feature_age_ms"), r.get("source", ""),
                             r.get("model_version", "")])


def _blank(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
