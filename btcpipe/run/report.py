"""The run report: ``summary.json`` (everything the run did), ``predictions.csv`` and ``report.html`` with PNG
plots (matplotlib, Agg backend): predictions vs realized returns, the latency histogram of each hop, and the
training curve.

Written whatever happened: a failed run still gets its summary (stages done, the stage that failed and why).
"""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import US_PER_SEC, iso
from btcpipe.run.orchestrator import RunResult

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
PREDICTIONS_FILE = "predictions.csv"
PLOT_PREDICTIONS = "predictions_vs_realized.png"
PLOT_LATENCY = "latency_hops.png"
PLOT_TRAINING = "training_loss.png"
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
    return _finite(doc)  # type: ignore[no-any-return]


def write_report(result: RunResult, out_dir: Path) -> dict[str, str]:
    """Write summary, predictions, plots and the HTML page into ``out_dir``; returns their paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        doc = summary_document(result)
        plots: list[tuple[str, str]] = []
        if result.live is not None and result.live.predictions:
            _write_predictions(out_dir / PREDICTIONS_FILE, result.live.predictions)
            paths["predictions"] = str(out_dir / PREDICTIONS_FILE)
            _plot_predictions(out_dir / PLOT_PREDICTIONS, result.live.predictions)
            plots.append((PLOT_PREDICTIONS, "Predicted vs realized 10-s log return (basis points), live"))
        if result.live is not None and any(result.live.hops_ms.values()):
            _plot_latency(out_dir / PLOT_LATENCY, result.live.hops_ms)
            plots.append((PLOT_LATENCY, "Latency per hop: exchange event → ingest → bus → feature row → prediction"))
        train = result.stage("train")
        if train is not None and train.summary.get("history"):
            _plot_training(out_dir / PLOT_TRAINING, train.summary["history"])
            plots.append((PLOT_TRAINING, "Training: Huber loss per epoch"))
        for name, _ in plots:
            paths[name.removesuffix(".png")] = str(out_dir / name)
        doc["report"] = {"html": str(out_dir / REPORT_FILE), "plots": [str(out_dir / n) for n, _ in plots]}
        (out_dir / SUMMARY_FILE).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        (out_dir / REPORT_FILE).write_text(_html(doc, plots, result))
        paths["summary"] = str(out_dir / SUMMARY_FILE)
        paths["html"] = str(out_dir / REPORT_FILE)
        return paths
    except OSError as exc:
        raise BtcpipeError(f"cannot write the run report in {out_dir}: {exc}") from exc


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


# --- plots ---------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    plt = _pyplot()
    t0 = int(rows[0]["ts_sec"])
    t = np.asarray([(int(r["ts_sec"]) - t0) / US_PER_SEC for r in rows])
    yhat = np.asarray([float(r["yhat"]) for r in rows]) * 1e4
    realized = np.asarray([float("nan") if r.get("realized") is None else float(r["realized"]) for r in rows]) * 1e4
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    ax_t.plot(t, realized, color="0.35", lw=1.0, label="realized")
    ax_t.plot(t, yhat, color="tab:blue", lw=1.2, label="predicted")
    ax_t.axhline(0.0, color="0.8", lw=0.8)
    ax_t.set_xlabel(f"seconds after {iso(t0)[11:19]} UTC")
    ax_t.set_ylabel("10-s log return (bp)")
    ax_t.legend(loc="upper left")
    known = np.isfinite(realized)
    ax_s.scatter(yhat[known], realized[known], s=9, alpha=0.6)
    if known.any():
        lim = float(np.nanmax(np.abs(np.concatenate([yhat[known], realized[known]])))) * 1.05 or 1.0
        ax_s.plot([-lim, lim], [-lim, lim], color="0.7", lw=0.8)
    ax_s.set_xlabel("predicted (bp)")
    ax_s.set_ylabel("realized (bp)")
    ax_s.set_title(f"{int(known.sum())} realized")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_latency(path: Path, hops: dict[str, list[float]]) -> None:
    plt = _pyplot()
    names = [h for h, v in hops.items() if v]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(hops[name], dtype=np.float64)
        ax.hist(values, bins=40, color="tab:orange", alpha=0.85)
        p50, p99 = np.percentile(values, [50, 99])
        ax.axvline(p50, color="k", lw=0.8)
        ax.axvline(p99, color="tab:red", lw=0.8, ls="--")
        ax.set_title(f"{name}\np50 {p50:.2f} ms  p99 {p99:.2f} ms", fontsize=9)
        ax.set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_training(path: Path, history: list[dict[str, float]]) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Huber loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- html ----------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return html.escape(orjson.dumps(value).decode()[:300])
    return html.escape(str(value))


def _html(doc: dict[str, Any], plots: list[tuple[str, str]], result: RunResult) -> str:
    status = "succeeded" if result.ok else f"FAILED at stage '{html.escape(str(result.failed_stage))}'"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>btcpipe run</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;"
        "font-size:13px;vertical-align:top}.bad{color:#b00}</style></head><body>",
        f"<h1>btcpipe run — {status}</h1>",
        f"<p>{html.escape(str(doc.get('started')))} → {html.escape(str(doc.get('finished')))}, "
        f"{doc.get('seconds')} s. Market: {_cell(doc.get('market'))}</p>",
    ]
    if result.error:
        parts.append(f"<p class='bad'>{html.escape(result.error)}</p>")
    parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>ok</th><th>seconds</th><th>summary</th></tr>")
    for s in doc["stages"]:
        summary = {k: v for k, v in s["summary"].items() if k not in ("history", "days", "params")}
        parts.append(f"<tr><td>{_cell(s['name'])}</td><td>{'yes' if s['ok'] else '<b class=bad>no</b>'}</td>"
                     f"<td>{s['seconds']}</td><td>{_cell(summary)}{_cell(s['error'] or '')}</td></tr>")
    parts.append("</table>")
    live = doc.get("live")
    if live:
        parts.append("<h2>Live</h2><table>")
        for key, value in (live.get("summary") or {}).items():
            parts.append(f"<tr><td>{_cell(key)}</td><td>{_cell(value)}</td></tr>")
        parts.append("</table>")
        if live.get("hops"):
            parts.append("<table><tr><th>hop</th><th>n</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr>")
            for hop, p in live["hops"].items():
                parts.append(f"<tr><td>{_cell(hop)}</td><td>{p.get('n')}</td><td>{p.get('p50_ms', '')}</td>"
                             f"<td>{p.get('p90_ms', '')}</td><td>{p.get('p99_ms', '')}</td></tr>")
            parts.append("</table>")
    for name, caption in plots:
        parts.append(f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append(f"<p>Everything above is in <code>{SUMMARY_FILE}</code>.</p></body></html>")
    return "\n".join(parts)
