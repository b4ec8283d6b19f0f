"""An evaluation report a person can read: one HTML page with PNG plots beside it (matplotlib, Agg).

Plots: predicted vs realized, hit rate by volatility regime, residuals, learning curves.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.time import iso
from btcpipe.model.dataset import LabeledRows
from btcpipe.model.evaluate import Evaluation

F64 = npt.NDArray[np.float64]
PLOTS = ("predicted_vs_realized.png", "hit_rate_by_regime.png", "residuals.png", "learning_curves.png")


def write_report(
    out_dir: str | Path, evaluation: Evaluation, test: LabeledRows, yhat: F64, manifest: Mapping[str, Any],
    *, title: str = "btcpipe model evaluation",
) -> Path:
    """Write ``report.html`` and its PNGs into ``out_dir``; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp = 1e4  # plot returns in basis points

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.hexbin(yhat * bp, test.y * bp, gridsize=60, bins="log", cmap="viridis", mincnt=1)
    lim = float(np.quantile(np.abs(test.y * bp), 0.995)) or 1.0
    ax.plot([-lim, lim], [-lim, lim], "r--", lw=1, label="y = ŷ")
    ax.set(xlabel="predicted 10-s log return (bp)", ylabel="realized (bp)", title="Predicted vs realized",
           ylim=(-lim, lim))
    ax.legend(loc="upper left")
    _save(fig, out / PLOTS[0])

    fig, ax = plt.subplots(figsize=(6, 4))
    regimes = evaluation.regimes
    labels = [f"{r['low']:.2g}…{r['high']:.2g}" for r in regimes]
    ax.bar(range(len(regimes)), [r["hit_rate"] for r in regimes], color="tab:blue")
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(regimes)), labels)
    ax.set(xlabel="vol_ret_10s regime (quantile bins)", ylabel="hit rate", title="Hit rate by volatility regime",
           ylim=(0.3, 0.8))
    _save(fig, out / PLOTS[1])

    residual = (yhat - test.y) * bp
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(residual, bins=100, color="tab:orange")
    left.set(xlabel="residual ŷ − y (bp)", ylabel="seconds", title="Residuals")
    hours = (test.ts_sec - test.ts_sec[0]) / 3.6e9
    right.plot(hours, residual, ",", alpha=0.4)
    right.set(xlabel="hours into the test span", ylabel="residual (bp)", title="Residuals over time")
    _save(fig, out / PLOTS[2])

    history = manifest.get("training", {}).get("history", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
        ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
        best = manifest.get("training", {}).get("best_epoch")
        if best:
            ax.axvline(best, color="grey", ls="--", lw=1, label=f"best epoch {best}")
        ax.legend()
    ax.set(xlabel="epoch", ylabel="Huber loss (label std units)", title="Learning curves")
    _save(fig, out / PLOTS[3])

    page = out / "report.html"
    page.write_text(_html(title, evaluation, test, manifest), encoding="utf-8")
    return page


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _ci(interval: Mapping[str, Any] | None, scale: float, digits: int) -> str:
    if not interval or interval.get("low") is None or interval.get("high") is None:
        return ""
    return f" [{interval['low'] * scale:.{digits}f}, {interval['high'] * scale:.{digits}f}]"


def _html(title: str, evaluation: Evaluation, test: LabeledRows, manifest: Mapping[str, Any]) -> str:
    iv = evaluation.intervals
    rows = [("model", evaluation.model.as_dict(), iv.get("model"))]
    rows += [(f"baseline: {k}", v.as_dict(), iv.get("baselines", {}).get(k)) for k, v in evaluation.baselines.items()]
    rows += [("control: shuffled labels (ridge)", evaluation.shuffled_label_control.as_dict(),
              iv.get("shuffled_labels_ridge")),
             ("control: shuffled labels (model)", evaluation.shuffled_prediction_control.as_dict(), None)]
    cells = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{d['mae'] * 1e4:.3f}</td>"
        f"<td>{d['r2'] * 100:.2f}{_ci((ci or {}).get('r2'), 100, 2)}</td>"
        f"<td>{d['hit_rate'] * 100:.1f}{_ci((ci or {}).get('hit_rate'), 100, 1)}</td><td>{d['n_moves']}</td></tr>"
        for name, d, ci in rows
    )
    oracle = ""
    if evaluation.oracle:
        o = evaluation.oracle
        share = (o.get("model_vs_oracle") or {}).get("r2_share")
        oracle = (f"<p>Oracle (best possible predictor of the simulator): R² {o['r2']:.4f}, hit rate "
                  f"{o['hit_rate']:.2%}; the model reaches {o['model_r2_share']:.1%}{_ci(share, 100, 0)} % of "
                  "its R².</p>")
    first, last = test.span_us
    meta = html.escape(
        f"symbol {manifest.get('symbol', '?')} · label mid {manifest.get('label', {}).get('mid', '?')} · "
        f"test {iso(first)} → {iso(last)} ({len(test)} s) · uncertainty {manifest.get('uncertainty', float('nan')):.3e}"
    )
    images = "".join(f'<figure><img src="{p}" alt="{p}"></figure>' for p in PLOTS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{meta}</p>
<table><tr><th>predictor</th><th>MAE (bp)</th><th>R² (%) [95 % CI]</th><th>hit rate (%) [95 % CI]</th>
<th>moves</th></tr>{cells}</table>
<p>Intervals: block bootstrap over 60-s blocks (the 10-s labels overlap).</p>
{oracle}{images}</body></html>
"""
