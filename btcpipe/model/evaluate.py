"""Evaluation: the model beside the baselines (predict zero, last 1-s return, ridge), a shuffled-label
control, and, when the data is simulated, the oracle. Pure numpy (the model enters as a function)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.domain.scores import Scores, score
from btcpipe.domain.uncertainty import BlockBootstrap, block_length, intervals_dict
from btcpipe.model.dataset import LabeledRows, TimeSplit
from btcpipe.model.scaler import StandardScaler

F64 = npt.NDArray[np.float64]
Predict = Callable[[F64], F64]

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
LAST_RETURN_FEATURE = "ret_1s"
REGIME_FEATURE = "vol_ret_10s"


@dataclass(frozen=True, slots=True)
class RidgeModel:
    """Ridge regression on standardised features with an unpenalised intercept (closed form)."""

    scaler: StandardScaler
    coef: F64
    intercept: float
    alpha: float

    def predict(self, features: F64) -> F64:
        return self.scaler.transform(features).astype(np.float64) @ self.coef + self.intercept


def fit_ridge(train: LabeledRows, alpha: float, y: F64 | None = None) -> RidgeModel:
    """Closed form ``(XᵀX + αI)⁻¹ Xᵀ(y − ȳ)`` on centred, scaled features; ``y`` overrides the labels."""
    scaler = StandardScaler.fit(train.features, train.feature_names)
    x = scaler.transform(train.features).astype(np.float64)
    target = train.y if y is None else y
    x_mean = x.mean(axis=0)
    y_mean = float(target.mean())
    xc = x - x_mean
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (target - y_mean))
    return RidgeModel(scaler=scaler, coef=coef, intercept=y_mean - float(x_mean @ coef), alpha=alpha)


def fit_ridge_on_val(train: LabeledRows, val: LabeledRows, alphas: Sequence[float] = RIDGE_ALPHAS) -> RidgeModel:
    """The ridge whose penalty (from ``alphas``) gives the lowest validation MSE."""
    best: tuple[float, RidgeModel] | None = None
    for alpha in alphas:
        model = fit_ridge(train, alpha)
        mse = float(np.mean((model.predict(val.features) - val.y) ** 2))
        if best is None or mse < best[0]:
            best = (mse, model)
    assert best is not None
    return best[1]


def baseline_predictions(split: TimeSplit) -> dict[str, F64]:
    """Each baseline's predictions on the test rows."""
    test = split.test
    out: dict[str, F64] = {"predict_zero": np.zeros(len(test))}
    if LAST_RETURN_FEATURE in test.feature_names:
        out["last_1s_return"] = test.column(LAST_RETURN_FEATURE).copy()
    out["ridge"] = fit_ridge_on_val(split.train, split.val).predict(test.features)
    return out


def shuffled_label_control(split: TimeSplit, *, seed: int) -> Scores:
    return score(*_shuffled_label_control(split, seed=seed))


def _shuffled_label_control(split: TimeSplit, *, seed: int) -> tuple[F64, F64]:
    """Ridge fitted on permuted training labels, scored on permuted test labels: must be chance (≈50 %).

    Both permutations cut every link between features and labels, so any skill here comes from the
    harness itself (labels leaking into features, the scaler or the split). Only the test permutation
    makes the expected hit rate exactly 50 % with binomial noise: a model fitted on shuffled labels but
    scored on real ones points in a random direction, whose hit rate is 50 % only on average over seeds.
    """
    rng = np.random.default_rng(seed)
    model = fit_ridge(split.train, RIDGE_ALPHAS[3], y=rng.permutation(split.train.y))
    return rng.permutation(split.test.y), model.predict(split.test.features)


def hit_rate_by_regime(rows: LabeledRows, yhat: F64, *, n_regimes: int = 3) -> list[dict[str, float]]:
    """Hit rate per volatility regime (quantile bins of ``vol_ret_10s``; the whole set if it is absent)."""
    if REGIME_FEATURE not in rows.feature_names:
        s = score(rows.y, yhat)
        return [{"regime": 0, "low": float("nan"), "high": float("nan"), "hit_rate": s.hit_rate, "n": s.n_moves}]
    vol = rows.column(REGIME_FEATURE)
    edges = np.quantile(vol, np.linspace(0.0, 1.0, n_regimes + 1))
    which = np.clip(np.searchsorted(edges, vol, side="right") - 1, 0, n_regimes - 1)
    out = []
    for k in range(n_regimes):
        sel = which == k
        if not bool(sel.any()):
            continue
        s = score(rows.y[sel], yhat[sel])
        out.append({"regime": k, "low": float(edges[k]), "high": float(edges[k + 1]), "hit_rate": s.hit_rate,
                    "n": s.n_moves})
    return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A model's scores beside the baselines' (and the oracle's on simulated data)."""

    model: Scores
    baselines: dict[str, Scores]
    shuffled_label_control: Scores
    shuffled_prediction_control: Scores  # the model's own predictions against permuted test labels
    regimes: list[dict[str, float]]
    oracle: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # 95 % block-bootstrap intervals: {predictor: {r2|mae|hit_rate: {value, low, high}}}, comparisons, controls
    intervals: dict[str, Any] = field(default_factory=dict)
    by_regime: list[dict[str, Any]] = field(default_factory=list)  # volatility terciles, time-of-day blocks

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model.as_dict(),
            "baselines": {k: v.as_dict() for k, v in self.baselines.items()},
            "controls": {
                "shuffled_labels_ridge": self.shuffled_label_control.as_dict(),
                "shuffled_labels_model": self.shuffled_prediction_control.as_dict(),
            },
            "hit_rate_by_volatility_regime": self.regimes,
            "intervals": self.intervals,
            "by_regime": self.by_regime,
            **self.extra,
        }
        if self.oracle is not None:
            doc["oracle"] = self.oracle
        return doc


def evaluate(predict: Predict, split: TimeSplit, *, seed: int = 0) -> tuple[Evaluation, F64]:
    """Score ``predict`` on the test rows beside baselines and controls; also return its test predictions."""
    test = split.test
    yhat = np.asarray(predict(test.features), dtype=np.float64)
    if yhat.shape != test.y.shape:
        raise DataError(f"model returned {yhat.shape} predictions for {len(test)} rows")
    rng = np.random.default_rng(seed + 1)
    baselines = baseline_predictions(split)
    control_y, control_yhat = _shuffled_label_control(split, seed=seed)
    boot = bootstrap_for(test, seed=seed)
    intervals: dict[str, Any] = {"model": intervals_dict(boot.scores(yhat))}
    intervals["baselines"] = {name: intervals_dict(boot.scores(p)) for name, p in baselines.items()}
    intervals["model_vs_ridge"] = intervals_dict(boot.compare(yhat, baselines["ridge"]))
    control_boot = BlockBootstrap(control_y, seed=seed, block_s=block_length(len(control_y)))
    intervals["shuffled_labels_ridge"] = intervals_dict(control_boot.scores(control_yhat))
    intervals["method"] = {"kind": "block bootstrap", "block_s": boot.block_s, "resamples": boot.n_boot,
                           "level": boot.level}
    evaluation = Evaluation(
        model=score(test.y, yhat),
        baselines={name: score(test.y, p) for name, p in baselines.items()},
        shuffled_label_control=score(control_y, control_yhat),
        shuffled_prediction_control=score(rng.permutation(test.y), yhat),
        regimes=hit_rate_by_regime(test, yhat),
        intervals=intervals,
        by_regime=scores_by_regime(test, yhat, seed=seed),
    )
    return evaluation, yhat


def bootstrap_for(test: LabeledRows, *, seed: int = 0, mask: npt.NDArray[np.bool_] | None = None) -> BlockBootstrap:
    """The block bootstrap of the test rows (same seed, same resamples: model, baselines, oracle share them)."""
    return BlockBootstrap(test.y, seed=seed, mask=mask, block_s=block_length(len(test)))


TIME_OF_DAY_BLOCKS_H = 6
MIN_REGIME_ROWS = 120


def scores_by_regime(test: LabeledRows, yhat: F64, *, seed: int = 0) -> list[dict[str, Any]]:
    """MAE, R² and hit rate (with intervals) per volatility tercile and per 6-hour block of the UTC day.

    Regimes with fewer than ``MIN_REGIME_ROWS`` rows are left out (too few to say anything)."""
    groups: list[tuple[str, str, npt.NDArray[np.bool_]]] = []
    if REGIME_FEATURE in test.feature_names:
        vol = test.column(REGIME_FEATURE)
        edges = np.quantile(vol, [0.0, 1 / 3, 2 / 3, 1.0])
        which = np.clip(np.searchsorted(edges, vol, side="right") - 1, 0, 2)
        for k, name in enumerate(("low", "middle", "high")):
            groups.append(("volatility tercile", f"{name} ({edges[k] * 1e4:.2f}–{edges[k + 1] * 1e4:.2f} bp)",
                           which == k))
    hour = (test.ts_sec // 3_600_000_000) % 24
    for h0 in range(0, 24, TIME_OF_DAY_BLOCKS_H):
        groups.append(("time of day (UTC)", f"{h0:02d}:00–{h0 + TIME_OF_DAY_BLOCKS_H:02d}:00",
                       (hour >= h0) & (hour < h0 + TIME_OF_DAY_BLOCKS_H)))
    out = []
    for kind, label, mask in groups:
        n = int(mask.sum())
        if n < MIN_REGIME_ROWS:
            continue
        scores = bootstrap_for(test, seed=seed, mask=mask).scores(yhat)
        out.append({"kind": kind, "regime": label, "n": n, **intervals_dict(scores)})
    return out


def beside_oracle(model_r2: float, oracle_r2: float, oracle_hit_rate: float, n: int) -> dict[str, Any]:
    """The model's R² as a share of the best possible predictor's (target ≥ 0.8 on a simulated week)."""
    share = model_r2 / oracle_r2 if oracle_r2 > 0 else float("nan")
    return {"r2": oracle_r2, "hit_rate": oracle_hit_rate, "n": n, "model_r2_share": share}


def oracle_intervals(test: LabeledRows, model_yhat: F64, oracle_yhat: F64, *, seed: int = 0) -> dict[str, Any]:
    """The oracle's scores on the test rows, and the model's R² share of it, with bootstrap intervals."""
    boot = bootstrap_for(test, seed=seed)
    return {"oracle": intervals_dict(boot.scores(oracle_yhat)),
            "model_vs_oracle": intervals_dict(boot.compare(model_yhat, oracle_yhat))}
