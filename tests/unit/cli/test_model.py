"""``btcpipe train | model | evaluate`` end to end on a local lake holding synthetic gold rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btcpipe.cli.main import cli
from btcpipe.domain.errors import DataError, SchemaHashMismatchError
from btcpipe.domain.time import US_PER_SEC, day_of, iso
from btcpipe.features.batch import FeatureFrame
from btcpipe.features.spec import FeatureParams
from btcpipe.features.tables import GOLD_DATASET, META_HASH, gold_table
from btcpipe.lake.lake import Lake
from btcpipe.model.gold import load_gold
from btcpipe.model.registry import ModelRegistry
from btcpipe.model.synthetic import synthetic_rows

START_US = 1_704_146_400 * US_PER_SEC  # 2024-01-01T22:00Z: the rows cross midnight into a second day
N_ROWS = 9_000
PARAMS = FeatureParams(0.5)


def _write_gold(lake: Lake, params: FeatureParams = PARAMS, *, warmup_nans: int = 30) -> None:
    rows = synthetic_rows(N_ROWS, seed=2, start_us=START_US).rows
    features = rows.features.copy()
    features[:warmup_nans, 13] = np.nan  # vol_ret_10s is undefined during warm-up
    for day in sorted({day_of(int(t)) for t in rows.ts_sec}):
        sel = np.array([day_of(int(t)) == day for t in rows.ts_sec])
        frame = FeatureFrame(rows.ts_sec[sel], np.ascontiguousarray(features[sel].T), params.names)
        table = gold_table(frame, rows.y[sel], "bbo_mid", params, "BTCUSDT")
        lake.write_table("gold", GOLD_DATASET, "BTCUSDT", day, table)


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    _write_gold(Lake.open(str(root)))
    return root


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _train(lake_dir: Path, *extra: str, name: str = "btc") -> dict[str, object]:
    out = _run("train", "--lake", str(lake_dir), "--start", iso(START_US), "--end", iso(START_US + N_ROWS * US_PER_SEC),
               "--name", name, "--seed", "1", "--epochs", "4", "--progress", "none", *extra)
    return json.loads(out)


def test_gold_spanning_two_days_loads_with_params_label_mid_and_incomplete_rows(lake_dir: Path) -> None:
    gold = load_gold(Lake.open(str(lake_dir)), "BTCUSDT", START_US, START_US + N_ROWS * US_PER_SEC)
    assert gold.days == 2
    assert len(gold.rows) == N_ROWS
    assert gold.params == PARAMS
    assert gold.rows.label_mid == "bbo_mid"
    assert int(np.isnan(gold.rows.features).any(axis=1).sum()) == 30
    later = load_gold(Lake.open(str(lake_dir)), "BTCUSDT", START_US + 100 * US_PER_SEC, START_US + 200 * US_PER_SEC)
    assert len(later.rows) == 100
    assert later.rows.ts_sec[0] == START_US + 100 * US_PER_SEC


def test_gold_from_other_feature_code_or_mixed_params_is_refused(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    _write_gold(lake)
    day = day_of(START_US)
    table = lake.read_table("gold", GOLD_DATASET, "BTCUSDT", day, day)
    meta = dict(table.schema.metadata)
    meta[META_HASH] = b"0" * 64
    lake.write_table("gold", GOLD_DATASET, "BTCUSDT", day, table.replace_schema_metadata(meta))
    with pytest.raises(SchemaHashMismatchError, match="rebuild the features"):
        load_gold(lake, "BTCUSDT", START_US, START_US + N_ROWS * US_PER_SEC)
    _write_gold(lake)
    other = Lake.open(str(tmp_path / "other"))
    _write_gold(other, FeatureParams(0.75))
    second_day = day_of(START_US + N_ROWS * US_PER_SEC)
    lake.write_table("gold", GOLD_DATASET, "BTCUSDT", second_day,
                     other.read_table("gold", GOLD_DATASET, "BTCUSDT", second_day, second_day))
    with pytest.raises(DataError, match="params"):
        load_gold(lake, "BTCUSDT", START_US, START_US + N_ROWS * US_PER_SEC)


def test_train_registers_versions_and_model_commands_move_production(lake_dir: Path, tmp_path: Path) -> None:
    first = _train(lake_dir, "--promote", "--out", str(tmp_path / "artifacts"))
    assert first["version"] == "v1"
    assert first["promoted"] is True
    rows = first["rows"]
    assert isinstance(rows, dict)
    complete = N_ROWS - 30
    assert rows["dropped_incomplete"] == 30
    assert rows["train"] == int(0.7 * complete)
    assert rows["val"] + rows["test"] + 2 * 19 == complete - rows["train"]  # 19 rows purged in each 20-s gap
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == [
        "manifest.json", "model.onnx", "scaler.json", "schema_v1.json",
    ]
    second = _train(lake_dir)
    assert second["version"] == "v2"
    registry = ModelRegistry(Lake.open(str(lake_dir)).store)
    assert registry.production_version("btc") == "v1"
    listed = json.loads(_run("model", "list", "--lake", str(lake_dir), "--name", "btc", "--json"))
    assert [(v["version"], v["production"]) for v in listed] == [("v1", True), ("v2", False)]
    assert "production → v2" in _run("model", "promote", "--lake", str(lake_dir), "--name", "btc", "--version", "v2")
    assert registry.production_version("btc") == "v2"
    assert "production → v1" in _run("model", "rollback", "--lake", str(lake_dir), "--name", "btc")
    assert registry.production_version("btc") == "v1"
    failed = CliRunner().invoke(cli, ["model", "rollback", "--lake", str(lake_dir), "--name", "btc"])
    assert failed.exit_code != 0
    assert "no earlier production version" in failed.output


def test_evaluate_prints_metrics_json_and_writes_the_report(lake_dir: Path, tmp_path: Path) -> None:
    trained = _train(lake_dir, name="eval")
    doc = json.loads(_run("evaluate", "--lake", str(lake_dir), "--name", "eval", "--version", "latest",
                          "--json", "--report", str(tmp_path / "report")))
    assert doc["model"] == pytest.approx(trained["test"])  # the same test rows as at training time
    assert set(doc["baselines"]) == {"predict_zero", "last_1s_return", "ridge"}
    assert doc["model"]["mse"] < doc["baselines"]["predict_zero"]["mse"]
    control = doc["controls"]["shuffled_labels_ridge"]
    assert abs(control["hit_rate"] - 0.5) < 4 * 0.5 / np.sqrt(control["n_moves"])
    report = tmp_path / "report"
    assert (report / "report.html").read_text().count("<img") == 4
    assert all((report / p).stat().st_size > 1000 for p in (
        "predicted_vs_realized.png", "hit_rate_by_regime.png", "residuals.png", "learning_curves.png"))


def test_every_command_has_help() -> None:
    for args in (["train"], ["evaluate"], ["model"], ["model", "list"], ["model", "promote"], ["model", "rollback"]):
        assert "Usage" in _run(*args, "--help")


def test_training_on_a_span_without_gold_fails_with_a_clear_message(lake_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--lake", str(lake_dir), "--start", "2020-01-01", "--end", "2020-01-02",
                                      "--name", "btc", "--progress", "none"])
    assert result.exit_code != 0
    assert "no gold" in result.output


def test_train_with_track_logs_the_run_to_mlflow_and_it_reads_back(lake_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    summary = _train(lake_dir, "--track", "--tracking-uri", uri, name="tracked")
    tracked = summary["tracking"]
    assert isinstance(tracked, dict)
    assert tracked["uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracked["run_id"])
    assert run.info.status == "FINISHED"
    # The registry is the source of truth; the run names the version it produced.
    assert run.data.tags["btcpipe.model"] == "tracked"
    assert run.data.tags["btcpipe.version"] == summary["version"]
    assert run.data.tags["btcpipe.registry_uri"] == summary["uri"]
    params = run.data.params
    assert (params["train.seed"], params["train.max_epochs"], params["symbol"]) == ("1", "4", "BTCUSDT")
    rows = summary["rows"]
    assert isinstance(rows, dict)
    for part in ("train", "val", "test"):  # the data span of each split
        assert params[f"data.{part}.rows"] == str(rows[part])
        assert int(params[f"data.{part}.first_ts"]) <= int(params[f"data.{part}.last_ts"])
    epochs = int(run.data.tags["btcpipe.epochs"])
    assert 1 <= epochs <= 4
    for curve in ("train_loss", "val_loss"):
        history = client.get_metric_history(run.info.run_id, curve)
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    test_scores = summary["test"]
    assert isinstance(test_scores, dict)
    assert run.data.metrics["test.model.mae"] == pytest.approx(test_scores["mae"])
    assert any(k.startswith("test.baselines.") for k in run.data.metrics)
    # The evaluation table, the ONNX model and its schema are artifacts, byte for byte what the registry holds.
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "got")))
    evaluation = json.loads((local / "evaluation.json").read_text())
    assert evaluation["model"]["mae"] == pytest.approx(test_scores["mae"])
    store = Lake.open(str(lake_dir)).store
    for name in ("model.onnx", "schema_v1.json", "scaler.json", "manifest.json"):
        assert (local / "model" / name).read_bytes() == store.get(f"models/tracked/{summary['version']}/{name}"), name


def test_tracking_turned_on_by_the_config_and_off_by_default(lake_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    env = {"BTCPIPE__TRACKING__ENABLED": "true", "BTCPIPE__TRACKING__URI": uri,
           "BTCPIPE__TRACKING__EXPERIMENT": "from-config"}
    args = ["train", "--lake", str(lake_dir), "--start", iso(START_US), "--end", iso(START_US + N_ROWS * US_PER_SEC),
            "--name", "cfg", "--epochs", "1", "--progress", "none"]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("from-config")
    assert experiment is not None
    assert len(MlflowClient(tracking_uri=uri).search_runs([experiment.experiment_id])) == 1
    untracked = json.loads(_run(*args))
    assert untracked["tracking"] is None
