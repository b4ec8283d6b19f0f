"""Experiment tracking: each training run logged to MLflow (the ``tracking`` extra) to compare runs over time.

btcpipe's model registry (``models/`` in the lake) stays the source of truth for serving: a run is logged
after its model is registered and names the registered version (tags ``btcpipe.model``, ``btcpipe.version``,
``btcpipe.registry_uri``); nothing reads a model back from MLflow.

A run holds the training parameters, the data span of each split, per-epoch curves (``train_loss``,
``val_loss``, ``epoch_seconds`` by epoch), the evaluation table (its scalar scores as ``test.*`` metrics and
the whole table as ``evaluation.json``), and the model's files under ``model/`` (``model.onnx``,
``schema_v1.json``, ``scaler.json``, ``manifest.json``).

The default tracking URI is a file store, ``mlruns/`` in the current directory. MLflow keeps that backend in
maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, which this module does for
``file:`` URIs only; a server (``http://...``) or database URI is used as given.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from btcpipe.domain.errors import BtcpipeError, ConfigError


class TrackingError(BtcpipeError):
    """The tracking server or store refused the run (the registered model is unaffected)."""


@dataclass(frozen=True)
class TrainingRecord:
    """What a training run logs; plain data, so the model layer's types stay out of ``infra``."""

    name: str  # registry model name
    version: str  # registry version the run produced
    symbol: str
    registry_uri: str
    params: Mapping[str, Any]  # training configuration (and anything else worth comparing)
    data_span: Mapping[str, Any]  # the split description: rows and first/last ts_sec per part
    curves: Sequence[Mapping[str, float]]  # per epoch: epoch, train_loss, val_loss, seconds
    evaluation: Mapping[str, Any]  # the evaluation table (model, baselines, controls, ...)
    files: Mapping[str, bytes]  # the model's files by name
    tags: Mapping[str, str] = field(default_factory=dict)


class ExperimentTracker(Protocol):
    """Where training runs are logged for comparison (MLflow today)."""

    def log_training(self, record: TrainingRecord) -> str:
        """Log one training run; returns its run id. Raises ``TrackingError``."""
        ...


def default_uri() -> str:
    return Path("mlruns").resolve().as_uri()


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``); lists are kept as values."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


class MlflowTracker:
    """``ExperimentTracker`` on an MLflow tracking URI (a file store by default, see the module doc)."""

    def __init__(self, uri: str = "", experiment: str = "btcpipe") -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError("experiment tracking needs MLflow: pip install 'btcpipe[tracking]'") from exc
        self.uri = uri or default_uri()
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.experiment = experiment
        self._client = MlflowClient(tracking_uri=self.uri)

    def _experiment_id(self) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        return found.experiment_id if found is not None else self._client.create_experiment(self.experiment)

    def log_training(self, record: TrainingRecord) -> str:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        now_ms = int(time.time() * 1000)
        params = {**flatten(record.params, "train."), **flatten(record.data_span, "data."),
                  "symbol": record.symbol}
        metrics = [Metric(key, float(value), now_ms, int(row["epoch"]))
                   for row in record.curves
                   for key, value in (("train_loss", row["train_loss"]), ("val_loss", row["val_loss"]),
                                      ("epoch_seconds", row["seconds"]))]
        scores = flatten(record.evaluation, "test.")
        metrics += [Metric(key, float(value), now_ms, 0) for key, value in scores.items()
                    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)]
        tags = {"btcpipe.model": record.name, "btcpipe.version": record.version,
                "btcpipe.registry_uri": record.registry_uri, "mlflow.runName": f"{record.name}/{record.version}",
                **record.tags}
        try:
            run = self._client.create_run(self._experiment_id(), tags=tags)
            run_id: str = run.info.run_id
            # MLflow caps a batch at 100 params and 1000 metrics.
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self._client.log_batch(run_id, params=items[i : i + 100])
            for i in range(0, len(metrics), 1000):
                self._client.log_batch(run_id, metrics=metrics[i : i + 1000])
            self._client.log_batch(run_id, tags=[RunTag("btcpipe.epochs", str(len(record.curves)))])
            self._client.log_dict(run_id, dict(record.evaluation), "evaluation.json")
            with tempfile.TemporaryDirectory(prefix="btcpipe-track-") as tmp:
                for name, data in record.files.items():
                    (Path(tmp) / name).write_bytes(data)
                self._client.log_artifacts(run_id, tmp, "model")
            self._client.set_terminated(run_id)
        except (MlflowException, OSError) as exc:
            raise TrackingError(f"logging the run to {self.uri} failed: {exc}") from exc
        return run_id
