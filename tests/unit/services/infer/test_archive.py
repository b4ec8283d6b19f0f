"""The gold predictions archive (batched, restart-safe, never silently lossy) and the drift gauges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from support.inference import PARAMS, SYMBOL

from btcpipe.domain.errors import LakeError
from btcpipe.domain.messages import Prediction1s
from btcpipe.domain.time import US_PER_SEC, day_of
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.scaler import StandardScaler
from btcpipe.services.infer.archive import PredictionArchive, read_predictions
from btcpipe.services.infer.drift import FeatureDrift
from btcpipe.services.infer.shadow import ShadowRow

MIDNIGHT = 1_704_153_600 * US_PER_SEC  # 2024-01-02T00:00:00Z


def _row(ts: int, yhat: float = 1e-4, realized: float = 2e-4, version: str = "v1") -> ShadowRow:
    p = Prediction1s(SYMBOL, ts, yhat, 0.2, version, 3e-4, 250.0, ts + 250_000)
    return ShadowRow(p, "store", True, realized, 1e-4, 0.5)


class FailingLake(Lake):
    def __init__(self, root: Path) -> None:
        super().__init__(LocalObjectStore(root))
        self.down = False

    def write_table(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.down:
            raise LakeError("the bucket is unreachable")
        return super().write_table(*args, **kwargs)


def test_rows_are_written_in_batches_per_day_and_read_back_in_order(tmp_path: Path) -> None:
    clock = ManualClock(MIDNIGHT)
    lake = Lake(LocalObjectStore(tmp_path))
    archive = PredictionArchive(lake, clock, flush_every_s=60)
    stamps = [MIDNIGHT - 2 * US_PER_SEC, MIDNIGHT - US_PER_SEC, MIDNIGHT, MIDNIGHT + US_PER_SEC]
    archive.add([_row(t) for t in stamps])
    clock.advance(59)
    assert archive.maybe_flush() == 0
    assert lake.table_days("gold", "predictions_1s", SYMBOL) == []
    clock.advance(1)
    assert archive.maybe_flush() == 4
    assert lake.table_days("gold", "predictions_1s", SYMBOL) == [day_of(MIDNIGHT - 1), day_of(MIDNIGHT)]
    table = read_predictions(lake, SYMBOL)
    assert table.column("ts_sec").to_pylist() == stamps
    assert table.column("abs_error").to_pylist() == [pytest.approx(1e-4)] * 4


def test_a_restarted_archive_extends_the_day_and_a_repeated_second_keeps_the_newest(tmp_path: Path) -> None:
    clock = ManualClock(MIDNIGHT)
    lake = Lake(LocalObjectStore(tmp_path))
    first = PredictionArchive(lake, clock)
    first.add([_row(MIDNIGHT + k * US_PER_SEC) for k in range(3)])
    first.flush()
    second = PredictionArchive(lake, clock)  # a new process
    second.add([_row(MIDNIGHT + 2 * US_PER_SEC, version="v2"), _row(MIDNIGHT + 3 * US_PER_SEC, version="v2")])
    second.flush()
    table = read_predictions(lake, SYMBOL)
    assert table.column("ts_sec").to_pylist() == [MIDNIGHT + k * US_PER_SEC for k in range(4)]
    assert table.column("model_version").to_pylist() == ["v1", "v1", "v2", "v2"]


def test_a_failed_write_keeps_the_rows_and_the_next_flush_writes_them(tmp_path: Path) -> None:
    clock = ManualClock(MIDNIGHT)
    lake = FailingLake(tmp_path)
    archive = PredictionArchive(lake, clock)
    archive.add([_row(MIDNIGHT), _row(MIDNIGHT + US_PER_SEC, realized=math.nan)])
    lake.down = True
    assert archive.flush() == 0
    assert archive.buffered == 2
    assert archive.failed_flushes == 1
    lake.down = False
    archive.add([_row(MIDNIGHT + 2 * US_PER_SEC)])
    assert archive.flush() == 3
    assert archive.buffered == 0
    realized = read_predictions(lake, SYMBOL).column("realized").to_pylist()
    assert realized[0] == 2e-4
    assert math.isnan(realized[1])


def test_an_overfull_buffer_drops_the_oldest_rows_and_counts_them(tmp_path: Path) -> None:
    archive = PredictionArchive(Lake(LocalObjectStore(tmp_path)), ManualClock(MIDNIGHT), max_buffered=3)
    archive.add([_row(MIDNIGHT + k * US_PER_SEC) for k in range(5)])
    assert archive.dropped == 2
    archive.flush()
    assert read_predictions(archive.lake, SYMBOL).column("ts_sec").to_pylist() == [
        MIDNIGHT + k * US_PER_SEC for k in (2, 3, 4)]


def test_drift_is_zero_on_training_like_rows_and_measures_a_shift_in_training_stds() -> None:
    rng = np.random.default_rng(0)
    n_features = len(PARAMS.names)
    mean = rng.uniform(-5, 5, n_features)
    std = rng.uniform(0.5, 3, n_features)
    metrics = Metrics()
    drift = FeatureDrift(StandardScaler(PARAMS.names, mean, std), metrics, window=200)
    rows = mean + std * rng.standard_normal((200, n_features))
    rows[:, 0] += 2 * std[0]  # ret_1s moved by two training stds
    rows[:, 1] = mean[1] + 3 * std[1] * (rows[:, 1] - mean[1]) / std[1]  # ret_2s three times as wide
    drift.observe(np.full(n_features, np.nan))  # an incomplete row is not counted
    for row in rows:
        drift.observe(row)
    stats = drift.statistics()
    assert stats is not None
    z, ratio = stats
    assert z.tolist() == pytest.approx(((rows.mean(axis=0) - mean) / std).tolist())
    assert z[0] == pytest.approx(2.0, abs=0.3)
    assert ratio[1] == pytest.approx(3.0, rel=0.2)
    assert np.abs(z[2:]).max() < 0.35
    drift.update_metrics()
    assert metrics.registry.get_sample_value("btcpipe_feature_drift_zscore", {"feature": "ret_1s"}) == z[0]
    assert metrics.registry.get_sample_value("btcpipe_feature_std_ratio", {"feature": "ret_2s"}) == ratio[1]


def test_drift_reports_nothing_before_enough_rows() -> None:
    n = len(PARAMS.names)
    metrics = Metrics()
    drift = FeatureDrift(StandardScaler(PARAMS.names, np.zeros(n), np.ones(n)), metrics, window=50, min_rows=10)
    for _ in range(9):
        drift.observe(np.ones(n))
    drift.update_metrics()
    assert drift.statistics() is None
    assert metrics.registry.get_sample_value("btcpipe_feature_drift_zscore", {"feature": "ret_1s"}) is None
