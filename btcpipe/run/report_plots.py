"""The run report's plots (matplotlib, Agg), each at most 1200 px wide so the page never scrolls sideways.

Each plot is drawn from what ``summary.json`` and ``predictions.csv`` hold, so ``btcpipe report RUN_DIR``
redraws them without the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from btcpipe.domain.time import US_PER_SEC, iso

DPI = 100
MAX_WIDTH_IN = 12.0  # 1200 px at DPI
DEADLINE_MS = 100.0


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)


def plot_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    """Live predictions and realized 10-s returns over time, and predicted vs realized."""
    plt = _pyplot()
    t0 = int(rows[0]["ts_sec"])
    t = np.asarray([(int(r["ts_sec"]) - t0) / US_PER_SEC for r in rows])
    yhat = np.asarray([float(r["yhat"]) for r in rows]) * 1e4
    realized = np.asarray([np.nan if r.get("realized") in (None, "") else float(r["realized"]) for r in rows]) * 1e4
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
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
    _save(fig, path)


def plot_latency(path: Path, hops: dict[str, dict[str, Any]]) -> None:
    """p50 / p90 / p99 of every hop as horizontal bars (log scale) beside the 100 ms deadline.

    One row per hop, so any number of hops fits the same width."""
    plt = _pyplot()
    names = [h for h, p in hops.items() if p.get("n")]
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(names) + 1.4))
    y = np.arange(len(names))
    for k, (key, color) in enumerate((("p50_ms", "tab:green"), ("p90_ms", "tab:orange"), ("p99_ms", "tab:red"))):
        values = [max(float(hops[n].get(key) or 0.0), 1e-3) for n in names]
        ax.barh(y + (k - 1) * 0.25, values, height=0.25, color=color, label=key.removesuffix("_ms"))
    ax.axvline(DEADLINE_MS, color="k", ls="--", lw=1, label="100 ms deadline")
    ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("latency (ms, log scale)")
    ax.legend(loc="lower right", fontsize=8, ncol=4)
    _save(fig, path)


def plot_training(path: Path, history: list[dict[str, float]], best_epoch: int | None) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], "o-", ms=3, label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="0.5", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Huber loss (label std units)")
    ax.legend()
    _save(fig, path)


def plot_ruler(path: Path, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Test R² of each predictor with its 95 % interval (points and whiskers).

    A predictor far below zero (the last 1-s return often is) would squash the others into a dot: the axis
    stops at −½ × the best upper bound (at least −2 %), and what lies beyond is written at the left edge."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    highs = [float(ci["high"]) * 100 for _, ci in rows if ci.get("high") is not None]
    right = max([*highs, 0.5]) * 1.1
    left = -max(2.0, 0.5 * right)
    for i, (_name, ci) in enumerate(rows):
        value, low, high = ci.get("value"), ci.get("low"), ci.get("high")
        if value is None:
            continue
        if low is not None and high is not None:
            ax.plot([max(low * 100, left), high * 100], [i, i], color="tab:blue", lw=2)
        if value * 100 < left:
            ax.annotate(f"◄ {value * 100:.3g} %", (left, i), xytext=(4, 4), textcoords="offset points", fontsize=8)
        else:
            ax.plot([value * 100], [i], "o", color="tab:blue")
    ax.set_xlim(left, right)
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.set_yticks(range(len(rows)), [n for n, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test R² (%), 95 % block-bootstrap interval")
    _save(fig, path)
