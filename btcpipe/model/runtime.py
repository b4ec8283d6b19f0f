"""Serving a model: verified artifacts → onnxruntime session → ``predict`` on raw feature rows.

Imports only numpy, onnxruntime and the stdlib (plus the pure feature spec, lazily, for the running
schema hash) — never torch. Every artifact's sha256 and the schema hash are checked before a session is
built; nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError, ModelIntegrityError, SchemaHashMismatchError
from btcpipe.model.artifacts import INPUT_NAME, MODEL_FILE, OUTPUT_NAME, SCALER_FILE, ModelArtifacts
from btcpipe.model.scaler import StandardScaler


class OnnxPredictor:
    """One verified model, ready to predict the 10-s log return from raw (unscaled) feature rows."""

    def __init__(self, artifacts: ModelArtifacts, *, expected_schema_hash: str | None = None) -> None:
        artifacts.verify()
        schema = artifacts.schema
        model_hash = str(schema.get("hash"))
        if expected_schema_hash is None:
            from btcpipe.model.schema import running_schema_hash

            expected_schema_hash = running_schema_hash(schema)
        if model_hash != expected_schema_hash:
            raise SchemaHashMismatchError(
                f"model schema hash {model_hash} differs from the running feature code's {expected_schema_hash}: "
                "the model was trained on other features; retrain it or run the matching code"
            )
        self.artifacts = artifacts
        self.manifest: Mapping[str, Any] = artifacts.manifest
        self.scaler = StandardScaler.from_json(artifacts.files[SCALER_FILE])
        names = tuple(str(n) for n in schema.get("names", ()))
        if names != self.scaler.feature_names:
            raise ModelIntegrityError("scaler.json and schema_v1.json list different features")
        self.feature_names = names
        self.schema_hash = model_hash
        self._session = open_session(artifacts.files[MODEL_FILE])
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            raise ModelIntegrityError(f"model.onnx must take one input named {INPUT_NAME!r}")
        width = inputs[0].shape[-1]
        if isinstance(width, int) and width != len(names):
            raise ModelIntegrityError(f"model.onnx takes {width} features, the schema lists {len(names)}")

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, expected_schema_hash: str | None = None) -> OnnxPredictor:
        return cls(ModelArtifacts.from_files(files), expected_schema_hash=expected_schema_hash)

    @classmethod
    def from_directory(cls, path: str | Path, *, expected_schema_hash: str | None = None) -> OnnxPredictor:
        return cls(ModelArtifacts.from_directory(path), expected_schema_hash=expected_schema_hash)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def uncertainty(self) -> float | None:
        """Validation residual std (log-return units), stored at training time."""
        value = self.manifest.get("uncertainty")
        return float(value) if isinstance(value, int | float) else None

    @overload
    def predict(self, features: npt.NDArray[Any]) -> float | npt.NDArray[np.float64]: ...
    @overload
    def predict(self, features: list[float]) -> float: ...

    def predict(self, features: npt.NDArray[Any] | list[float]) -> float | npt.NDArray[np.float64]:
        """``[F]`` → a float; ``[N, F]`` → float64 ``[N]``. Non-finite rows give NaN, never a made-up value."""
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        if single:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DataError(f"expected features [{self.n_features}] or [N, {self.n_features}], got {x.shape}")
        ok = np.all(np.isfinite(x), axis=1)
        out = np.full(x.shape[0], np.nan, dtype=np.float64)
        if bool(ok.any()):
            scaled = self.scaler.transform(x if bool(ok.all()) else x[ok])
            yhat = self._session.run([OUTPUT_NAME], {INPUT_NAME: scaled})[0]
            out[ok] = np.asarray(yhat, dtype=np.float64).reshape(-1)
        return float(out[0]) if single else out


def open_session(model_onnx: bytes) -> Any:
    """An onnxruntime session tuned for single-row latency (no integrity checks: use ``OnnxPredictor``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # one thread: a single row is microseconds of work; thread hand-offs add millisecond latency spikes
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_onnx, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise ModelIntegrityError(f"model.onnx cannot be loaded by onnxruntime: {exc}") from exc

