"""Feature drift: rolling mean/std of each served feature against the training statistics.

The training statistics are the model's scaler (mean/std fitted on the training split only), so no
extra artifact is needed. Gauges: ``feature_drift`` = (rolling mean − training mean) / training std
(a z-score of the mean) and ``feature_std_ratio`` = rolling std / training std. Only complete rows
(every value finite) are counted, as in training.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.infra.metrics import Metrics
from btcpipe.model.scaler import StandardScaler

F64 = npt.NDArray[np.float64]


class FeatureDrift:
    """Rolling mean and std of each served feature against the training statistics, as gauges."""

    def __init__(self, scaler: StandardScaler, metrics: Metrics, *, window: int = 300, min_rows: int = 30) -> None:
        if window < 2 or not 2 <= min_rows <= window:
            raise DataError(f"drift window {window} / min_rows {min_rows} must satisfy 2 <= min_rows <= window")
        self.names = scaler.feature_names
        self.train_mean = scaler.mean
        self.train_std = scaler.std
        self.metrics = metrics
        self.window = window
        self.min_rows = min_rows
        self._rows = np.empty((window, len(self.names)), dtype=np.float64)
        self._next = 0
        self.count = 0

    def observe(self, values: F64 | tuple[float, ...]) -> None:
        row = np.asarray(values, dtype=np.float64)
        if row.shape != (len(self.names),) or not bool(np.all(np.isfinite(row))):
            return
        self._rows[self._next] = row
        self._next = (self._next + 1) % self.window
        self.count += 1

    def statistics(self) -> tuple[F64, F64] | None:
        """(drift z-scores, std ratios) per feature, or None before ``min_rows`` rows."""
        n = min(self.count, self.window)
        if n < self.min_rows:
            return None
        rows = self._rows[:n]
        z = (rows.mean(axis=0) - self.train_mean) / self.train_std
        ratio = rows.std(axis=0, ddof=1) / self.train_std
        return z, ratio

    def update_metrics(self) -> None:
        stats = self.statistics()
        if stats is None:
            return
        z, ratio = stats
        for name, zi, ri in zip(self.names, z, ratio, strict=True):
            self.metrics.feature_drift.labels(feature=name).set(float(zi))
            self.metrics.feature_std_ratio.labels(feature=name).set(float(ri))
