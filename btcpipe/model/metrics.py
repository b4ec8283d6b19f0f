"""Scores of a return forecast: MAE, MSE, R² and the directional hit rate on non-zero moves. Pure numpy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Scores:
    n: int
    mae: float
    mse: float
    r2: float  # 1 − SSE/SST around the realized mean: predict-zero scores ≈ 0 (slightly below)
    hit_rate: float  # on rows whose realized move is non-zero; a zero prediction counts as half a hit
    n_moves: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score(y: F64, yhat: F64) -> Scores:
    """Score predictions ``yhat`` against realized ``y`` (same length, finite)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.shape != yhat.shape or y.ndim != 1:
        raise DataError(f"y {y.shape} and yhat {yhat.shape} must be 1-D and the same length")
    if y.size == 0:
        raise DataError("cannot score zero rows")
    if not (bool(np.all(np.isfinite(y))) and bool(np.all(np.isfinite(yhat)))):
        raise DataError("cannot score non-finite values")
    err = yhat - y
    sse = float(np.dot(err, err))
    centered = y - y.mean()
    sst = float(np.dot(centered, centered))
    moved = y != 0.0
    n_moves = int(moved.sum())
    agree = np.sign(yhat[moved]) * np.sign(y[moved])  # +1 hit, −1 miss, 0 no call
    hit = float((agree > 0).sum() + 0.5 * (agree == 0).sum()) / n_moves if n_moves else float("nan")
    return Scores(
        n=int(y.size),
        mae=float(np.abs(err).mean()),
        mse=sse / y.size,
        r2=1.0 - sse / sst if sst > 0 else float("nan"),
        hit_rate=hit,
        n_moves=n_moves,
    )
