"""Training and evaluation runs: gold rows → split → MLP → packaged artifacts; registered model → scores.

Composition only: the arithmetic lives in dataset/train/export/evaluate, storage in the lake/registry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.tracking import TrainingRecord
from btcpipe.model.artifacts import ModelArtifacts
from btcpipe.model.dataset import LabeledRows, TimeSplit, drop_incomplete, split_by_time, split_from_description
from btcpipe.model.evaluate import Evaluation, beside_oracle, evaluate, oracle_intervals
from btcpipe.model.progress import TrainingReporter
from btcpipe.model.runtime import OnnxPredictor
from btcpipe.model.schema import schema_json
from btcpipe.model.train import TrainConfig, TrainedModel, train_mlp

if TYPE_CHECKING:
    from btcpipe.domain.tape import MarketTape
    from btcpipe.market.config import SimConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    """What one training run produced: the packaged artifacts and their evaluation."""

    artifacts: ModelArtifacts
    evaluation: Evaluation
    split: TimeSplit
    dropped_rows: int
    trained: TrainedModel


def train_from_rows(
    rows: LabeledRows,
    params: FeatureParams,
    *,
    symbol: str,
    config: TrainConfig | None = None,
    reporter: TrainingReporter | None = None,
    purge_us: int | None = None,
) -> TrainingRun:
    """Drop incomplete rows, split by time, train, export and score the exported graph."""
    from btcpipe.model.export import package_model  # imports torch: only when training

    if rows.feature_names != params.names:
        raise DataError("gold columns do not follow the schema's feature order")
    complete, dropped = drop_incomplete(rows)
    split = split_by_time(complete) if purge_us is None else split_by_time(complete, purge_us=purge_us)
    trained = train_mlp(split, config or TrainConfig(), reporter=reporter)
    artifacts, evaluation = package_model(
        trained, split, schema_json=schema_json(params), symbol=symbol, label_mid=rows.label_mid,
        dropped_rows=dropped,
    )
    return TrainingRun(artifacts, evaluation, split, dropped, trained)


def training_record(run: TrainingRun, *, name: str, version: str, symbol: str, registry_uri: str) -> TrainingRecord:
    """What experiment tracking logs of a registered training run (``btcpipe.infra.tracking``)."""
    curves = [{"epoch": s.epoch, "train_loss": s.train_loss, "val_loss": s.val_loss, "seconds": s.seconds}
              for s in run.trained.history]
    params = {**run.trained.config.as_dict(), "best_epoch": run.trained.best_epoch, "dropped_rows": run.dropped_rows,
              "n_features": len(run.split.train.feature_names), "label_mid": run.split.train.label_mid}
    return TrainingRecord(name=name, version=version, symbol=symbol, registry_uri=registry_uri, params=params,
                          data_span=run.split.describe(), curves=curves, evaluation=run.evaluation.as_dict(),
                          files=dict(run.artifacts.files))


@dataclass(frozen=True)
class SimulatedOrigin:
    """The simulator run the gold data came from, so the oracle can be computed beside the model."""

    seed: int
    start_us: int
    duration_s: int
    preset: str = "realistic"


def evaluate_model(
    predictor: OnnxPredictor,
    rows: LabeledRows,
    *,
    test_span: tuple[int, int] | None = None,
    sim: SimulatedOrigin | None = None,
    seed: int = 0,
) -> tuple[Evaluation, TimeSplit, npt.NDArray[np.float64]]:
    """Score a model on the split its manifest records (or on ``test_span`` [start, end) as the test set)."""
    complete, _ = drop_incomplete(rows)
    description = predictor.manifest.get("data", {}).get("split")
    if not isinstance(description, Mapping):
        raise DataError("the model's manifest records no train/val/test split")
    split = split_from_description(complete, description)
    if test_span is not None:
        start, end = test_span
        test = complete.take((complete.ts_sec >= start) & (complete.ts_sec < end))
        if len(test) == 0:
            raise DataError("no complete gold rows in the requested evaluation span")
        split = TimeSplit(split.train, split.val, test, split.purge_us, split.purged_rows)

    def model_predict(features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(predictor.predict(features), dtype=np.float64)

    evaluation, yhat = evaluate(model_predict, split, seed=seed)
    if sim is not None:
        oracle = oracle_beside(evaluation.model.r2, sim, split.test, yhat, seed=seed)
        evaluation = replace(evaluation, oracle=oracle)
    return evaluation, split, yhat


def oracle_beside(
    model_r2: float, sim: SimulatedOrigin, test: LabeledRows, model_yhat: npt.NDArray[np.float64] | None = None,
    *, seed: int = 0,
) -> dict[str, Any]:
    """Regenerate the simulated tape and score its best possible predictor on the test span (with the
    model's share of its R² and bootstrap intervals when the model's test predictions are given)."""
    try:
        from btcpipe.market.presets import preset_config
        from btcpipe.market.simulator import oracle_score, simulate
    except ImportError as exc:
        raise ConfigError(f"the market simulator is not available for the oracle: {exc}") from exc
    config = preset_config(sim.preset, seed=sim.seed, start_us=sim.start_us, duration_s=sim.duration_s)
    tape = simulate(config)
    first, last = test.span_us
    result = oracle_score(tape, config, start_us=first, end_us=last + 1)
    out: dict[str, Any] = beside_oracle(model_r2, float(result.r2), float(result.hit_rate), int(result.n))
    out["preset"] = sim.preset
    if model_yhat is not None:
        out.update(oracle_intervals(test, model_yhat, oracle_on_rows(tape, config, test), seed=seed))
    return out


def oracle_on_rows(tape: MarketTape, config: SimConfig, rows: LabeledRows) -> npt.NDArray[np.float64]:
    """The oracle's prediction at each row's second (rows must lie inside the simulated span)."""
    from btcpipe.market.simulator import oracle_predictions

    ts_sec, yhat = oracle_predictions(tape, config)
    idx = (rows.ts_sec - config.start_us) // 1_000_000
    if rows.ts_sec.shape[0] and (int(idx.min()) < 0 or int(idx.max()) >= ts_sec.shape[0]):
        raise DataError("rows lie outside the simulated span; the oracle cannot be placed beside them")
    return np.asarray(yhat[idx], dtype=np.float64)
