"""Confidence intervals for forecast scores: a block bootstrap that respects overlapping labels.

Consecutive 1-s rows share 9 of their 10 label seconds, and volatility clusters over minutes, so rows are
far from independent: resampling single rows would give intervals several times too narrow. The rows
(in time order) are cut into blocks of ``block_s`` consecutive seconds (default 60, six label horizons)
and whole blocks are drawn with replacement. Each block is reduced to sufficient statistics once (count,
Σy, Σy², Σerr², Σ|err|, hits, moves), so a resample's R², MAE and hit rate are sums over the chosen
blocks — a thousand resamples of a week cost milliseconds. Every predictor is resampled with the same
blocks, so differences (model − ridge) and ratios (model / oracle) get intervals too. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

BLOCK_S = 60
MIN_BLOCKS = 20  # fewer blocks than this: shorter blocks (never below one label horizon)
LABEL_HORIZON_S = 10
N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True, slots=True)
class Interval:
    """A point figure and its percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        return {k: (v if math.isfinite(v) else None) for k, v in
                (("value", self.value), ("low", self.low), ("high", self.high))}

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def block_length(n_rows: int, preferred: int = BLOCK_S) -> int:
    """``preferred`` seconds, shortened for short spans so there are at least ``MIN_BLOCKS`` blocks — but never
    below the 10-s label horizon. A span under 200 s still gets fewer than 20 blocks: its interval is rough."""
    return max(min(preferred, n_rows // MIN_BLOCKS), min(preferred, LABEL_HORIZON_S))


def _interval(point: float, draws: F64, level: float) -> Interval:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0 or not math.isfinite(point):
        return Interval(point, float("nan"), float("nan"))
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return Interval(point, float(lo), float(hi))


class BlockBootstrap:
    """Resamples of the rows' blocks, shared by every predictor scored on the same labels ``y``."""

    def __init__(self, y: F64, *, block_s: int = BLOCK_S, n_boot: int = N_BOOT, seed: int = 0,
                 mask: Bools | None = None, level: float = LEVEL) -> None:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.size < 2:
            raise DataError("the bootstrap needs at least two labelled rows")
        if block_s < 1 or n_boot < 10:
            raise DataError(f"block_s must be ≥ 1 and n_boot ≥ 10, got {block_s}, {n_boot}")
        self.y = y
        self.block_s = block_s
        self.n_boot = n_boot
        self.mask = np.ones(y.size, dtype=np.bool_) if mask is None else np.asarray(mask, dtype=np.bool_)
        self.level = level
        self.block = np.arange(y.size) // block_s
        n_blocks = int(self.block[-1]) + 1
        rng = np.random.default_rng(seed)
        # counts[b, k]: how often block k is drawn in resample b
        draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
        self.counts = np.zeros((n_boot, n_blocks), dtype=np.float64)
        np.add.at(self.counts, (np.repeat(np.arange(n_boot), n_blocks), draws.ravel()), 1.0)
        m = self.mask
        self._n = self._per_block(m.astype(np.float64))
        self._sy = self._per_block(np.where(m, y, 0.0))
        self._syy = self._per_block(np.where(m, y * y, 0.0))

    def _per_block(self, values: F64) -> F64:
        return np.bincount(self.block, weights=values, minlength=self.counts.shape[1]).astype(np.float64)

    def _draws(self, yhat: F64) -> dict[str, F64]:
        """Per resample: R², MAE and hit rate of ``yhat`` (and the point figures under key suffix ``_pt``)."""
        yhat = np.asarray(yhat, dtype=np.float64)
        if yhat.shape != self.y.shape:
            raise DataError(f"predictions {yhat.shape} and labels {self.y.shape} differ in shape")
        m = self.mask
        err = yhat - self.y
        moved = m & (self.y != 0.0)
        agree = np.sign(yhat) * np.sign(self.y)
        stats = {
            "see": self._per_block(np.where(m, err * err, 0.0)),
            "sae": self._per_block(np.where(m, np.abs(err), 0.0)),
            "hits": self._per_block(np.where(moved, (agree > 0) + 0.5 * (agree == 0), 0.0)),
            "moves": self._per_block(moved.astype(np.float64)),
        }
        out: dict[str, F64] = {}
        for suffix, weights in (("", self.counts), ("_pt", np.ones((1, self.counts.shape[1])))):
            n = weights @ self._n
            sst = weights @ self._syy - (weights @ self._sy) ** 2 / np.maximum(n, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out["r2" + suffix] = np.where(sst > 0, 1.0 - (weights @ stats["see"]) / sst, np.nan)
                out["mae" + suffix] = (weights @ stats["sae"]) / n
                out["hit_rate" + suffix] = (weights @ stats["hits"]) / (weights @ stats["moves"])
        return out

    def scores(self, yhat: F64) -> dict[str, Interval]:
        """R², MAE and hit rate of ``yhat`` with their intervals."""
        d = self._draws(yhat)
        return {k: _interval(float(d[k + "_pt"][0]), d[k], self.level) for k in ("r2", "mae", "hit_rate")}

    def compare(self, yhat: F64, reference: F64) -> dict[str, Interval]:
        """R² of ``yhat`` minus the reference's, and ``yhat``'s R² as a share of the reference's."""
        a, b = self._draws(yhat), self._draws(reference)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(b["r2"] > 0, a["r2"] / b["r2"], np.nan)
            share_pt = a["r2_pt"][0] / b["r2_pt"][0] if b["r2_pt"][0] > 0 else float("nan")
        return {
            "r2_difference": _interval(float(a["r2_pt"][0] - b["r2_pt"][0]), a["r2"] - b["r2"], self.level),
            "r2_share": _interval(float(share_pt), share, self.level),
        }


def intervals_dict(scores: Mapping[str, Interval]) -> dict[str, dict[str, float | None]]:
    return {k: v.as_dict() for k, v in scores.items()}
