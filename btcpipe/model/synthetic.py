"""Synthetic labeled rows with a known linear signal, for tests and the training benchmark.

Not market data: each feature column is noise on its own scale (so the scaler matters), and the label
is a fixed linear combination of two of them plus Gaussian noise, so the best possible R² is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import feature_names
from btcpipe.model.dataset import LabeledRows

# label = SIGNAL_SCALE * (0.8 * tvi_5s + 0.4 * tvi_1s) + noise
SIGNAL_WEIGHTS = {"tvi_5s": 0.8, "tvi_1s": 0.4}
SIGNAL_SCALE = 2e-4
START_US = 1_704_067_200 * US_PER_SEC  # 2024-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class SyntheticRows:
    """Synthetic labeled rows and the best R² any model can reach on them."""

    rows: LabeledRows
    optimal_r2: float  # R² of the true signal on these rows


def synthetic_rows(
    n: int,
    *,
    seed: int = 0,
    noise_std: float = 2e-4,
    names: Sequence[str] | None = None,
    start_us: int = START_US,
) -> SyntheticRows:
    names = tuple(names or feature_names())
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(-6.0, 6.0, size=len(names)))  # wildly different column scales
    base = rng.standard_normal((n, len(names)))
    features = base * scales + rng.uniform(-1, 1, size=len(names)) * scales
    signal = np.zeros(n)
    for name, weight in SIGNAL_WEIGHTS.items():
        if name in names:
            signal += weight * base[:, names.index(name)]
    signal *= SIGNAL_SCALE
    y = signal + rng.standard_normal(n) * noise_std
    resid = y - signal
    optimal_r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    ts = start_us + np.arange(n, dtype=np.int64) * US_PER_SEC
    return SyntheticRows(LabeledRows(ts, features, y, names, label_mid="synthetic"), optimal_r2)
