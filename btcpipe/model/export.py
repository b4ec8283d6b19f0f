"""Export a trained network to ONE self-contained ``model.onnx`` and package the model's artifacts.

The graph takes ``features`` float32 [N, F] (already scaled by ``scaler.json``) and returns ``yhat``
float32 [N], the predicted 10-s log return. Weights are embedded (no ``.onnx.data`` side file): the
export is checked for external-data references before it is accepted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from btcpipe.domain.errors import ModelError
from btcpipe.model.artifacts import INPUT_NAME, OUTPUT_NAME, ModelArtifacts, assemble
from btcpipe.model.dataset import TimeSplit
from btcpipe.model.evaluate import Evaluation, evaluate
from btcpipe.model.runtime import open_session
from btcpipe.model.train import TrainedModel

log = logging.getLogger(__name__)
OPSET = 18


def export_onnx(trained: TrainedModel) -> bytes:
    """Serialise ``trained.network`` (eval mode) as one ONNX file with a dynamic batch dimension."""
    import onnx
    import torch

    network = trained.network
    network.eval()
    example = torch.zeros(2, trained.scaler.n_features, dtype=torch.float32)
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), _quiet_exporter_logs():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                network, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                opset_version=OPSET, verbose=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ModelError(f"ONNX export failed: {exc}") from exc
    if program is None:
        raise ModelError("ONNX export returned no program")
    proto = program.model_proto
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"ONNX export put weight {tensor.name!r} in external data; expected one file")
    data: bytes = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """The exporter narrates every pass at INFO/WARNING; keep only its errors."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from btcpipe import __version__

    return {
        "btcpipe": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
    }


def package_model(
    trained: TrainedModel,
    split: TimeSplit,
    *,
    schema_json: bytes,
    symbol: str,
    label_mid: str,
    dropped_rows: int = 0,
    extra_info: Mapping[str, Any] | None = None,
) -> tuple[ModelArtifacts, Evaluation]:
    """Export, score the exported graph (the thing that will serve) and write the manifest around it."""
    model_onnx = export_onnx(trained)
    session = open_session(model_onnx)

    def onnx_predict(features: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        out = session.run([OUTPUT_NAME], {INPUT_NAME: trained.scaler.transform(features)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    val_residual = onnx_predict(split.val.features) - split.val.y
    evaluation, _ = evaluate(onnx_predict, split, seed=trained.config.seed)
    first_ts, _ = split.train.span_us
    _, last_ts = split.test.span_us
    info: dict[str, Any] = {
        "symbol": symbol,
        "feature_names": list(split.train.feature_names),
        "label": {"kind": "log_return", "horizon_s": 10, "mid": label_mid},
        "data": {"first_ts": first_ts, "last_ts": last_ts, "dropped_incomplete_rows": dropped_rows,
                 "split": split.describe()},
        "uncertainty": float(np.std(val_residual)),
        "metrics": _finite(evaluation.as_dict()),
        "training": {
            "config": trained.config.as_dict(), "best_epoch": trained.best_epoch,
            "stopped_early": trained.stopped_early, "label_scale": trained.label_scale,
            "seconds": round(trained.seconds, 3),
            "history": [{"epoch": h.epoch, "train_loss": h.train_loss, "val_loss": h.val_loss}
                        for h in trained.history],
        },
        "versions": library_versions(),
        **(extra_info or {}),
    }
    artifacts = assemble(
        model_onnx=model_onnx, scaler_json=trained.scaler.to_json(), schema_json=schema_json, info=info
    )
    return artifacts, evaluation


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined metrics (e.g. R² of a constant) become null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
