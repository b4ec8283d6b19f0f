"""The inference service on the in-process bus and store, driven second by second by a manual clock.

The market is a simulated tape played onto the bus as the clock advances, with a processor twin (the
streaming feature engine) writing rows to the online store; faults switch parts of it off.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.inference import PARAMS, SYMBOL, T0, WARM, make_rig

from btcpipe.bus.port import STREAM_PREDICTIONS
from btcpipe.domain.errors import BusError, ConfigError, StoreError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.infra.clocks import ManualClock
from btcpipe.services.infer.archive import read_predictions
from btcpipe.services.infer.inference import InferenceSettings
from btcpipe.store.memory import InProcessOnlineStore


def test_ticks_run_at_each_second_boundary_plus_the_offset(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    class Recording:
        def __init__(self, inner: InProcessOnlineStore, clock: ManualClock) -> None:
            self.inner, self.clock = inner, clock

        def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
            seen.append((ts_sec, self.clock.now_us()))
            return self.inner.get_features(symbol, ts_sec)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    clock = ManualClock(T0 + 123_456)
    rig = make_rig(tmp_path, clock=clock, store_wrapper=lambda s: Recording(s, clock),
                   settings=InferenceSettings(offset_ms=300, lateness_ms=200))
    assert rig.service.run(max_ticks=5) == 5
    assert [ts for ts, _ in seen] == [T0 + k * US_PER_SEC for k in range(5)]  # T0 + 0.3 s is still ahead
    assert all(now == ts + 300_000 for ts, now in seen)


def test_two_second_interval_ticks_on_even_seconds(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settings=InferenceSettings(interval_s=2))
    rig.service.run(max_ticks=4)
    stamps = [r.ts_sec for r in rig.results]
    assert all(ts % (2 * US_PER_SEC) == 0 for ts in stamps)
    assert np.diff(stamps).tolist() == [2 * US_PER_SEC] * 3


@pytest.mark.parametrize("kwargs", [
    {"interval_s": 3}, {"interval_s": 0}, {"offset_ms": 100, "lateness_ms": 200}, {"deadline_ms": 0},
    {"offset_ms": 950, "deadline_ms": 100, "lateness_ms": 200},
])
def test_settings_refuse_intervals_offsets_and_deadlines_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        InferenceSettings(**kwargs)  # type: ignore[arg-type]


def test_store_rows_become_published_predictions_of_the_served_model(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 10)
    predicted = rig.by_outcome("predicted")
    assert len(predicted) >= 10
    model = rig.service.model.current
    for r in predicted:
        row = rig.world.rows[r.ts_sec]
        assert r.prediction is not None
        assert r.prediction.yhat == model.predictor.predict(row.values)
        assert r.prediction.model_version == "v1"
        assert r.prediction.uncertainty == pytest.approx(2e-4)
        assert r.prediction.feature_age_ms == 250.0  # read at ts_sec + offset on the manual clock
        assert r.prediction.ts_pred == r.ts_sec + 250_000
    on_bus = {p.ts_sec: p for p in rig.published()}
    assert {r.ts_sec for r in predicted} <= set(on_bus)
    assert all(on_bus[r.ts_sec] == r.prediction for r in predicted)
    assert rig.ticks("predicted") == len(predicted)


def test_warm_up_seconds_give_no_prediction_and_are_counted_with_reasons(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=5)
    assert [r.outcome for r in rig.results] == ["no_features"] * 5
    assert all("store_incomplete" in r.reasons for r in rig.results)  # the processor's rows are still NaN
    assert rig.ticks("no_features") == 5
    assert rig.metrics.registry.get_sample_value(
        "btcpipe_inference_feature_misses_total", {"symbol": SYMBOL, "reason": "store_incomplete"}) == 5
    assert rig.published() == []


def test_without_store_rows_the_fallback_engine_predicts_exactly_what_the_processor_would(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.processor_on = False  # the processor is dead: the store never gets a row
    rig.service.run(max_ticks=WARM + 20)
    fallback = rig.by_outcome("fallback")
    assert len(fallback) >= 15
    model = rig.service.model.current
    for r in fallback:
        assert r.reasons[0] == "store_stale"
        assert r.prediction is not None
        # the fallback row equals the processor twin's row value for value, so the prediction does too
        assert r.prediction.yhat == model.predictor.predict(rig.world.rows[r.ts_sec].values)
    early = [r for r in rig.results if r.outcome == "no_features"]
    assert early
    assert all("fallback_warming_up" in r.reasons for r in early)
    assert rig.ticks("fallback") == len(fallback)
    assert len(rig.published()) == len(fallback)


def test_a_store_row_from_other_feature_code_is_not_used(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 3)
    ts = rig.results[-1].ts_sec + US_PER_SEC
    rig.world.processor_on = False
    good = rig.world.message(ts - US_PER_SEC)
    for t in (ts, ts + US_PER_SEC):
        rig.store.put_features(SYMBOL, t, FeatureVector1s(SYMBOL, t, "0" * 64, good.values, t))
    rig.service.run(max_ticks=2)
    assert [r.outcome for r in rig.results[-2:]] == ["fallback", "fallback"]
    assert all(r.reasons == ("schema_mismatch",) for r in rig.results[-2:])


def test_bus_lag_is_detected_as_stale_reported_and_recovered_from(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 5)
    assert rig.results[-1].outcome == "predicted"
    rig.world.bus_on = False  # the bus stops delivering: processor and fallback both fall behind
    rig.service.run(max_ticks=8)
    lagging = rig.results[-8:]
    # the first seconds after the stall are merely missing; once everything is older than 3 s: stale
    assert [r.outcome for r in lagging][-4:] == ["stale"] * 4
    assert all(r.reasons == ("store_stale", "fallback_stale") for r in lagging[-4:])
    assert rig.metrics.registry.get_sample_value("btcpipe_inference_store_age_seconds", {"symbol": SYMBOL}) > 3.0
    assert rig.ticks("stale") >= 4
    rig.world.bus_on = True  # the backlog arrives, the processor catches up
    rig.service.run(max_ticks=3)
    assert [r.outcome for r in rig.results[-2:]] == ["predicted", "predicted"]


def test_a_tick_over_the_deadline_is_skipped_counted_and_not_published(tmp_path: Path) -> None:
    perf = [0]
    slow_at: set[int] = set()

    class SlowStore:
        def __init__(self, inner: InProcessOnlineStore) -> None:
            self.inner = inner

        def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
            if ts_sec in slow_at:
                perf[0] += 150_000_000  # this read takes 150 ms on the service's monotonic clock
            return self.inner.get_features(symbol, ts_sec)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    rig = make_rig(tmp_path, store_wrapper=SlowStore, perf_ns=lambda: perf[0])
    rig.service.run(max_ticks=WARM + 2)
    slow_ts = rig.results[-1].ts_sec + US_PER_SEC
    slow_at.add(slow_ts)
    rig.service.run(max_ticks=3)
    assert [(r.ts_sec - slow_ts, r.outcome) for r in rig.results[-3:]] == [
        (0, "skipped_deadline"), (US_PER_SEC, "predicted"), (2 * US_PER_SEC, "predicted")]
    assert slow_ts not in {p.ts_sec for p in rig.published()}
    assert rig.ticks("skipped_deadline") == 1


def test_a_loop_that_falls_behind_counts_the_ticks_it_missed_and_resumes_on_time(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    overslept = [False]

    def sleep(seconds: float) -> None:
        rig.world.sleep(seconds if overslept[0] else seconds + 3.0)  # one sleep overruns by 3 s
        overslept[0] = True

    rig.service._sleep = sleep  # the injected sleeper, swapped for this one test
    rig.service.run(max_ticks=2)
    missed = rig.by_outcome("skipped_deadline")
    assert len(missed) == 3
    assert rig.ticks("skipped_deadline") == 3
    ran = [r.ts_sec for r in rig.results if r.outcome != "skipped_deadline"]
    assert ran[0] == missed[-1].ts_sec + US_PER_SEC


def test_store_errors_fall_back_and_are_counted_as_store_requests(tmp_path: Path) -> None:
    down = [False]

    class FlakyStore:
        def __init__(self, inner: InProcessOnlineStore) -> None:
            self.inner = inner

        def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
            if down[0]:
                raise StoreError("connection refused")
            return self.inner.get_features(symbol, ts_sec)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    rig = make_rig(tmp_path, store_wrapper=FlakyStore)
    rig.service.run(max_ticks=WARM + 2)
    down[0] = True
    rig.service.run(max_ticks=3)
    down[0] = False
    rig.service.run(max_ticks=2)
    assert [r.outcome for r in rig.results[-5:]] == ["fallback"] * 3 + ["predicted"] * 2
    assert rig.metrics.registry.get_sample_value(
        "btcpipe_store_requests_total", {"op": "get", "result": "error"}) == 3


def test_predictions_are_archived_in_gold_with_their_realized_returns(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 40)
    rig.service.close()
    table = read_predictions(rig.lake, SYMBOL)
    made = [r for r in rig.results if r.prediction is not None]
    assert table.column("ts_sec").to_pylist() == [r.ts_sec for r in made]
    assert table.column("yhat").to_pylist() == [r.prediction.yhat for r in made if r.prediction]
    realized = np.asarray(table.column("realized").to_pylist(), dtype=float)
    # realized once the market passed the 10 s horizon; given up (NaN) at close when it had not
    horizon_end = np.asarray(table.column("ts_sec").to_pylist()) + 10 * US_PER_SEC
    now = rig.clock.now_us()
    assert np.isfinite(realized[horizon_end + US_PER_SEC <= now]).all()
    assert np.isnan(realized[horizon_end > now]).all()
    assert (horizon_end > now).sum() >= 9
    assert set(table.column("source").to_pylist()) == {"store"}
    assert rig.metrics.registry.get_sample_value("btcpipe_shadow_mae", {"symbol": SYMBOL}) > 0


def test_drift_gauges_follow_the_served_features(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 40)
    n = len(rig.by_outcome("predicted"))
    assert n >= 30
    # the linear model's scaler is mean 0 / std 1, so the drift of n_trades_1s is its rolling mean
    values = np.array([rig.world.rows[r.ts_sec].values for r in rig.by_outcome("predicted")])
    k = PARAMS.names.index("n_trades_1s")
    assert rig.metrics.registry.get_sample_value(
        "btcpipe_feature_drift_zscore", {"feature": "n_trades_1s"}) == pytest.approx(values[-300:, k].mean())


def test_a_failed_publish_is_counted_as_an_error_and_the_prediction_still_archived(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.service.run(max_ticks=WARM + 2)
    real_publish = rig.bus.publish

    def failing_publish(stream: str, key: str, payloads: list[bytes]) -> int:
        if stream == STREAM_PREDICTIONS:
            raise BusError("bus unreachable")
        return real_publish(stream, key, payloads)

    rig.service.bus = SimpleNamespace(publish=failing_publish)  # type: ignore[assignment]
    rig.service.run(max_ticks=2)
    assert [(r.outcome, r.reasons) for r in rig.results[-2:]] == [("error", ("publish_failed",))] * 2
    assert rig.ticks("error") == 2
    assert rig.metrics.registry.get_sample_value(
        "btcpipe_inference_feature_misses_total", {"symbol": SYMBOL, "reason": "publish_failed"}) is None
    rig.service.close()
    table = read_predictions(rig.lake, SYMBOL)
    assert table.column("published").to_pylist()[-2:] == [False, False]
    assert table.column("ts_sec").to_pylist()[-2:] == [r.ts_sec for r in rig.results[-2:]]
