"""Scores of a return forecast: MAE, MSE, R² and the directional hit rate on non-zero moves. Pure numpy.

The one implementation of these scores: model evaluation, the shadow scorer and the simulator's oracle
all call it (importing it needs no torch). Conventions:
- R² is ``1 − SSE/SST`` around the realized mean, so predicting zero scores about 0 (slightly below);
  it is NaN when the realized values are all equal (SST = 0).
- The hit rate counts only rows whose realized move is non-zero. A prediction with the move's sign is a
  hit, the opposite sign a miss, and a zero prediction — no call — counts as half a hit, so a model that
  always predicts zero scores exactly 50 %, the same as a coin. NaN when nothing moved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Scores:
    """Forecast scores of predictions against realized labels: MAE, MSE, R² and directional hit rate."""

    n: int
    mae: float
    mse: float
    r2: float  # 1 − SSE/SST around the realized mean: predict-zero scores ≈ 0 (slightly below)
    hit_rate: float  # on rows whose realized move is non-zero; a zero prediction counts as half a hit
    n_moves: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _checked(y: F64, yhat: F64) -> tuple[F64, F64]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.shape != yhat.shape or y.ndim != 1:
        raise DataError(f"y {y.shape} and yhat {yhat.shape} must be 1-D and the same length")
    if y.size == 0:
        raise DataError("cannot score zero rows")
    if not (bool(np.all(np.isfinite(y))) and bool(np.all(np.isfinite(yhat)))):
        raise DataError("cannot score non-finite values")
    return y, yhat


def _r_squared(y: F64, err: F64) -> float:
    centered = y - y.mean()
    sst = float(np.dot(centered, centered))
    return 1.0 - float(np.dot(err, err)) / sst if sst > 0 else float("nan")


def _hit_rate(y: F64, yhat: F64) -> tuple[float, int]:
    moved = y != 0.0
    n_moves = int(moved.sum())
    if n_moves == 0:
        return float("nan"), 0
    agree = np.sign(yhat[moved]) * np.sign(y[moved])  # +1 hit, −1 miss, 0 no call
    return float((agree > 0).sum() + 0.5 * (agree == 0).sum()) / n_moves, n_moves


def r_squared(y: F64, yhat: F64) -> float:
    """``1 − SSE/SST`` of ``yhat`` against realized ``y``; NaN when ``y`` is constant."""
    y, yhat = _checked(y, yhat)
    return _r_squared(y, yhat - y)


def directional_hit_rate(y: F64, yhat: F64) -> float:
    """Share of non-zero realized moves whose sign ``yhat`` calls (a zero prediction is half a hit)."""
    y, yhat = _checked(y, yhat)
    return _hit_rate(y, yhat)[0]


def score(y: F64, yhat: F64) -> Scores:
    """Score predictions ``yhat`` against realized ``y`` (same length, finite)."""
    y, yhat = _checked(y, yhat)
    err = yhat - y
    hit, n_moves = _hit_rate(y, yhat)
    return Scores(
        n=int(y.size),
        mae=float(np.abs(err).mean()),
        mse=float(np.dot(err, err)) / y.size,
        r2=_r_squared(y, err),
        hit_rate=hit,
        n_moves=n_moves,
    )
