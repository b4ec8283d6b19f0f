"""Serving from the registry: verified loads, refused models counted, hot reload when the alias moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.inference import PARAMS, SYMBOL, WARM, linear_model, make_rig

from btcpipe.domain.errors import ModelError
from btcpipe.domain.time import US_PER_SEC
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.artifacts import MODEL_FILE, SCALER_FILE
from btcpipe.model.registry import ModelRegistry
from btcpipe.services.infer.model_loader import ModelWatcher

T0 = 1_704_067_200 * US_PER_SEC


def _loads(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("btcpipe_model_loads_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(tmp_path / "lake"))


def test_loads_the_production_model_and_exports_what_it_serves(registry: ModelRegistry) -> None:
    registry.register("btc", linear_model(seed=1))
    registry.register("btc", linear_model(seed=2))
    registry.promote("btc", "v2")
    metrics = Metrics()
    model = ModelWatcher(registry, "btc", metrics=metrics, clock=ManualClock(T0)).load()
    assert model.version == "v2"
    assert model.label_mid == "bbo_mid"
    row = np.linspace(-1, 1, model.predictor.n_features)
    assert model.predictor.predict(row) == pytest.approx(float(row @ _weights(2)), rel=1e-5, abs=1e-9)
    assert _loads(metrics, "loaded") == 1
    assert metrics.registry.get_sample_value("btcpipe_model_info", {"name": "btc", "version": "v2"}) == 1


def _weights(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1e-4, size=len(PARAMS.names))


def test_a_model_whose_schema_hash_differs_from_the_running_code_is_refused_and_counted(
    registry: ModelRegistry,
) -> None:
    registry.register("btc", linear_model(schema_hash="f" * 64))
    registry.promote("btc", "v1")  # the registry checks hashes only: the files are intact
    metrics = Metrics()
    with pytest.raises(ModelError, match="refused"):
        ModelWatcher(registry, "btc", metrics=metrics, clock=ManualClock(T0)).load()
    assert _loads(metrics, "refused") == 1
    assert _loads(metrics, "loaded") == 0


@pytest.mark.parametrize("name", [MODEL_FILE, SCALER_FILE])
def test_a_version_whose_files_no_longer_match_the_manifest_is_refused(
    registry: ModelRegistry, tmp_path: Path, name: str
) -> None:
    registry.register("btc", linear_model())
    registry.promote("btc", "v1")
    path = tmp_path / "lake" / "models" / "btc" / "v1" / name
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # altered after promotion
    metrics = Metrics()
    with pytest.raises(ModelError):
        ModelWatcher(registry, "btc", metrics=metrics, clock=ManualClock(T0)).load()
    assert _loads(metrics, "refused") == 1


def test_the_alias_is_polled_only_every_check_interval(registry: ModelRegistry) -> None:
    registry.register("btc", linear_model(seed=1))
    registry.register("btc", linear_model(seed=2))
    registry.promote("btc", "v1")
    clock = ManualClock(T0)
    watcher = ModelWatcher(registry, "btc", metrics=Metrics(), clock=clock, check_every_s=5)
    watcher.load()
    registry.promote("btc", "v2")
    clock.advance(4.9)
    assert watcher.poll() is None
    assert watcher.current.version == "v1"
    clock.advance(0.1)
    swapped = watcher.poll()
    assert swapped is not None
    assert swapped.version == "v2"
    assert watcher.current is swapped


def test_promotion_during_a_run_is_served_without_a_restart(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.registry.register("btc", linear_model(seed=7, bias=1e-3))
    rig.service.run(max_ticks=WARM + 3)
    promoted_at = rig.clock.now_us()
    rig.registry.promote("btc", "v2", at_us=promoted_at)
    rig.service.run(max_ticks=8)
    made = [r for r in rig.results if r.prediction is not None]
    versions = [r.prediction.model_version for r in made if r.prediction]
    assert versions[0] == "v1"
    assert versions[-1] == "v2"
    first_v2 = next(r for r in made if r.prediction and r.prediction.model_version == "v2")
    assert first_v2.ts_sec - promoted_at <= 6 * US_PER_SEC  # within one check interval (5 s) + a tick
    v2 = rig.service.model.current.predictor
    for r in made:
        if r.prediction and r.prediction.model_version == "v2":
            assert r.prediction.yhat == v2.predict(rig.world.rows[r.ts_sec].values)
    assert _loads(rig.metrics, "loaded") == 2
    assert rig.metrics.registry.get_sample_value("btcpipe_model_info", {"name": "btc", "version": "v1"}) is None
    assert rig.metrics.registry.get_sample_value("btcpipe_model_info", {"name": "btc", "version": "v2"}) == 1


def test_promoting_a_schema_mismatched_model_keeps_the_current_one_serving(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.registry.register("btc", linear_model(seed=9, schema_hash="0" * 64))
    rig.service.run(max_ticks=WARM + 2)
    rig.registry.promote("btc", "v2")
    rig.service.run(max_ticks=15)  # three checks of the alias
    assert rig.service.model.current.version == "v1"
    assert {r.prediction.model_version for r in rig.results if r.prediction} == {"v1"}
    assert rig.results[-1].outcome == "predicted"
    assert _loads(rig.metrics, "refused") == 1  # refused once, not at every check
    rig.registry.rollback("btc")  # back to v1: nothing to do
    rig.service.run(max_ticks=6)
    assert rig.service.model.current.version == "v1"
    assert rig.results[-1].prediction is not None
    assert rig.results[-1].prediction.symbol == SYMBOL
