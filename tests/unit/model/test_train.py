"""Training, ONNX export and the verified runtime, on synthetic rows with a known linear signal."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from btcpipe.domain.errors import DataError, ModelIntegrityError, SchemaHashMismatchError
from btcpipe.features.spec import FeatureParams
from btcpipe.model.artifacts import (
    ALL_FILES,
    MANIFEST_FILE,
    MODEL_FILE,
    SCALER_FILE,
    SCHEMA_FILE,
    ModelArtifacts,
    assemble,
    sha256_hex,
)
from btcpipe.model.dataset import TimeSplit, split_by_time
from btcpipe.model.evaluate import Evaluation
from btcpipe.model.export import package_model
from btcpipe.model.progress import LogReporter
from btcpipe.model.runtime import OnnxPredictor
from btcpipe.model.scaler import StandardScaler
from btcpipe.model.schema import schema_json
from btcpipe.model.synthetic import SyntheticRows, synthetic_rows
from btcpipe.model.train import TrainConfig, TrainedModel, train_mlp

CONFIG = TrainConfig(seed=7, max_epochs=12, patience=4, batch_size=256)


@dataclass
class Trained:
    data: SyntheticRows
    split: TimeSplit
    model: TrainedModel
    artifacts: ModelArtifacts
    evaluation: Evaluation


@pytest.fixture(scope="module")
def trained() -> Trained:
    data = synthetic_rows(8_000, seed=3)
    split = split_by_time(data.rows)
    model = train_mlp(split, CONFIG)
    artifacts, evaluation = package_model(
        model, split, schema_json=schema_json(FeatureParams(0.5)), symbol="BTCUSDT", label_mid="synthetic"
    )
    return Trained(data, split, model, artifacts, evaluation)


def _state_bytes(model: TrainedModel) -> list[bytes]:
    return [t.numpy().tobytes() for t in model.network.state_dict().values()]


def test_onnxruntime_equals_torch_on_the_test_set_within_float32_tolerance(trained: Trained) -> None:
    predictor = OnnxPredictor(trained.artifacts)
    by_onnx = predictor.predict(trained.split.test.features)
    by_torch = trained.model.predict(trained.split.test.features)
    assert isinstance(by_onnx, np.ndarray)
    assert by_onnx.shape == by_torch.shape == (len(trained.split.test),)
    scale = float(np.abs(by_torch).max())
    np.testing.assert_allclose(by_onnx, by_torch, rtol=1e-5, atol=1e-6 * scale)


def test_training_is_reproducible_with_a_seed(trained: Trained) -> None:
    again = train_mlp(trained.split, CONFIG)
    assert _state_bytes(again) == _state_bytes(trained.model)
    assert [h.val_loss for h in again.history] == [h.val_loss for h in trained.model.history]
    other = train_mlp(trained.split, replace(CONFIG, seed=8, max_epochs=1))
    first = train_mlp(trained.split, replace(CONFIG, max_epochs=1))
    assert _state_bytes(other) != _state_bytes(first)


def test_mlp_beats_predict_zero_on_a_known_linear_signal(trained: Trained) -> None:
    ev = trained.evaluation
    zero = ev.baselines["predict_zero"]
    assert ev.model.mse < 0.8 * zero.mse
    assert ev.model.r2 > 0.5 * trained.data.optimal_r2 > 0.1
    assert ev.model.hit_rate > 0.6
    assert abs(zero.hit_rate - 0.5) < 1e-12  # no calls: half a hit each


def test_early_stopping_keeps_the_best_validation_epoch(trained: Trained) -> None:
    history = trained.model.history
    best = min(history, key=lambda h: h.val_loss)
    assert trained.model.best_epoch == best.epoch
    if trained.model.stopped_early:
        assert len(history) - trained.model.best_epoch == CONFIG.patience


def test_scaler_is_fitted_on_the_training_split_only(trained: Trained) -> None:
    expected = StandardScaler.fit(trained.split.train.features, trained.split.train.feature_names)
    assert np.array_equal(trained.model.scaler.mean, expected.mean)
    assert trained.artifacts.files[SCALER_FILE] == expected.to_json()
    # wildly different val/test features must not move the scaler by a single bit
    split = trained.split
    poisoned = replace(split, val=replace(split.val, features=split.val.features * 1e6),
                       test=replace(split.test, features=split.test.features + 1e9))
    leaked = train_mlp(poisoned, replace(CONFIG, max_epochs=1))
    assert np.array_equal(leaked.scaler.mean, expected.mean)
    assert np.array_equal(leaked.scaler.std, expected.std)


def test_constant_labels_are_refused() -> None:
    data = synthetic_rows(2_000, seed=1)
    rows = replace(data.rows, y=np.zeros(len(data.rows)))
    with pytest.raises(DataError, match="constant"):
        train_mlp(split_by_time(rows), replace(CONFIG, max_epochs=1))


def test_export_is_one_self_contained_onnx_file_with_named_input_and_output(trained: Trained, tmp_path: Path) -> None:
    trained.artifacts.write_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL_FILES)
    proto = onnx.load(str(tmp_path / MODEL_FILE))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["yhat"]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert OnnxPredictor.from_directory(tmp_path).predict(trained.split.test.features[0]) == pytest.approx(
        float(trained.model.predict(trained.split.test.features[:1])[0]), rel=1e-5
    )


def test_manifest_records_hashes_data_range_metrics_versions_and_uncertainty(trained: Trained) -> None:
    manifest = json.loads(trained.artifacts.files[MANIFEST_FILE])
    for name in (MODEL_FILE, SCALER_FILE, SCHEMA_FILE):
        assert manifest["artifacts"][name]["sha256"] == sha256_hex(trained.artifacts.files[name])
    assert manifest["data"]["first_ts"] == int(trained.split.train.ts_sec[0])
    assert manifest["data"]["last_ts"] == int(trained.split.test.ts_sec[-1])
    assert manifest["label"] == {"kind": "log_return", "horizon_s": 10, "mid": "synthetic"}
    assert set(manifest["versions"]) >= {"torch", "onnxruntime", "onnx", "numpy", "python"}
    assert manifest["metrics"]["model"]["r2"] == pytest.approx(trained.evaluation.model.r2)
    residual = trained.model.predict(trained.split.val.features) - trained.split.val.y
    assert manifest["uncertainty"] == pytest.approx(float(np.std(residual)), rel=1e-4)
    assert OnnxPredictor(trained.artifacts).uncertainty == manifest["uncertainty"]
    assert len(manifest["training"]["history"]) == len(trained.model.history)


@pytest.mark.parametrize("victim", [MODEL_FILE, SCALER_FILE, SCHEMA_FILE])
def test_a_tampered_artifact_is_refused(trained: Trained, victim: str) -> None:
    files = dict(trained.artifacts.files)
    data = bytearray(files[victim])
    data[len(data) // 2] ^= 0x01
    files[victim] = bytes(data)
    with pytest.raises(ModelIntegrityError, match=victim):
        OnnxPredictor.from_files(files)


def test_a_missing_artifact_is_refused(trained: Trained) -> None:
    files = {k: v for k, v in trained.artifacts.files.items() if k != SCALER_FILE}
    with pytest.raises(ModelIntegrityError, match="missing"):
        OnnxPredictor.from_files(files)


def test_a_model_trained_on_another_feature_definition_is_refused(trained: Trained) -> None:
    # a consistent model (every sha256 matches) whose schema hash is not the running code's
    schema = json.loads(trained.artifacts.files[SCHEMA_FILE])
    schema["definition_version"] = "0.9"
    schema["hash"] = sha256_hex(b"an older feature definition")
    info = {k: v for k, v in trained.artifacts.manifest.items() if k not in ("format", "artifacts", "schema_hash")}
    stale = assemble(
        model_onnx=trained.artifacts.files[MODEL_FILE], scaler_json=trained.artifacts.files[SCALER_FILE],
        schema_json=json.dumps(schema).encode(), info=info,
    )
    stale.verify()  # integrity is fine: only the contract differs
    with pytest.raises(SchemaHashMismatchError, match="running feature code"):
        OnnxPredictor(stale)
    with pytest.raises(SchemaHashMismatchError):
        OnnxPredictor(trained.artifacts, expected_schema_hash=sha256_hex(b"something else"))


def test_predict_one_row_many_rows_and_incomplete_rows(trained: Trained) -> None:
    predictor = OnnxPredictor(trained.artifacts)
    x = trained.split.test.features[:5].copy()
    batch = predictor.predict(x)
    assert isinstance(batch, np.ndarray)
    single = predictor.predict(x[2])
    assert isinstance(single, float)
    assert single == pytest.approx(float(batch[2]), rel=1e-6)
    x[1, 0] = np.nan
    with_gap = predictor.predict(x)
    assert isinstance(with_gap, np.ndarray)
    assert np.isnan(with_gap[1])
    assert np.allclose(np.delete(with_gap, 1), np.delete(batch, 1), rtol=1e-6)
    with pytest.raises(DataError, match="expected features"):
        predictor.predict(np.zeros(predictor.n_features + 1))


def test_serving_a_model_never_imports_torch(trained: Trained, tmp_path: Path) -> None:
    trained.artifacts.write_directory(tmp_path)
    code = (
        "import sys\n"
        "from btcpipe.model.runtime import OnnxPredictor\n"
        f"p = OnnxPredictor.from_directory({str(tmp_path)!r})\n"
        "p.predict([0.0] * p.n_features)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_off_a_terminal_logs_one_line_per_epoch_with_both_losses(
    trained: Trained, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="btcpipe.model.train"):
        model = train_mlp(trained.split, replace(CONFIG, max_epochs=2), reporter=LogReporter())
    epochs = [r for r in caplog.records if getattr(r, "epoch", None) is not None]
    assert [r.epoch for r in epochs] == [1, 2]  # type: ignore[attr-defined]
    assert [r.val_loss for r in epochs] == [h.val_loss for h in model.history]  # type: ignore[attr-defined]
    assert all("train loss" in r.getMessage() and "val loss" in r.getMessage() for r in epochs)
