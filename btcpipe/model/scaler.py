"""The feature scaler: per-column mean/std fitted on the training split only, stored as JSON.

Training and serving call the same ``transform`` so the network sees the same float32 inputs in both.
JSON (not pickle) so that loading a model never executes anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError, ModelError

SCALER_FORMAT = "btcpipe.standard_scaler/1"


@dataclass(frozen=True, slots=True)
class StandardScaler:
    """Per-feature mean and std fitted on the training split, stored as JSON beside the model."""

    feature_names: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]  # never zero: a constant training column gets std 1

    @classmethod
    def fit(cls, features: npt.NDArray[np.float64], feature_names: Sequence[str]) -> StandardScaler:
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] != len(feature_names):
            raise DataError(f"cannot fit a scaler on features of shape {features.shape}")
        if not bool(np.all(np.isfinite(features))):
            raise DataError("cannot fit a scaler on non-finite features (drop incomplete rows first)")
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        std = np.where(std > 0.0, std, 1.0)
        return cls(tuple(feature_names), mean.astype(np.float64), std.astype(np.float64))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Scale rows ``[N, F]`` (or one row ``[F]``) to float32, keeping the input's rank."""
        x = np.asarray(features, dtype=np.float64)
        if x.shape[-1] != self.n_features or x.ndim not in (1, 2):
            raise DataError(f"expected features [..., {self.n_features}], got shape {x.shape}")
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> bytes:
        doc = {
            "format": SCALER_FORMAT,
            "feature_names": list(self.feature_names),
            # repr of a float64 round-trips exactly through JSON
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StandardScaler:
        try:
            doc = json.loads(data)
            if doc.get("format") != SCALER_FORMAT:
                raise ModelError(f"scaler.json has format {doc.get('format')!r}, expected {SCALER_FORMAT!r}")
            names = tuple(str(n) for n in doc["feature_names"])
            mean = np.asarray([float(v) for v in doc["mean"]], dtype=np.float64)
            std = np.asarray([float(v) for v in doc["std"]], dtype=np.float64)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"scaler.json is malformed: {exc}") from exc
        if not (len(names) == mean.shape[0] == std.shape[0]):
            raise ModelError("scaler.json: feature_names, mean and std differ in length")
        if not all(math.isfinite(v) for v in (*mean, *std)) or bool(np.any(std <= 0)):
            raise ModelError("scaler.json: mean/std must be finite and std positive")
        return cls(names, mean, std)
