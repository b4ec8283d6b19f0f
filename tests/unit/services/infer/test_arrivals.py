"""Predicting on arrival: a tick runs as soon as its second's row is on ``features-1s`` (not at a fixed offset),
falls back when the row does not come within ``row_wait_ms``, and counts its deadline from the second's end."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.inference import SYMBOL, WARM, make_rig

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_FEATURES
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.services.infer.arrivals import RowArrivals
from btcpipe.services.infer.inference import InferenceSettings
from btcpipe.wire.codec import encode_feature_vector

T = 1_704_067_200 * US_PER_SEC


def test_a_tick_runs_as_soon_as_its_row_arrives(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, row_delay_us=3_000)  # the row is published 3 ms after its second ends
    rig.service.run(max_ticks=WARM + 10)
    predicted = rig.by_outcome("predicted")
    assert len(predicted) >= 10
    model = rig.service.model.current
    for r in predicted:
        assert r.prediction is not None
        assert r.prediction.yhat == model.predictor.predict(rig.world.rows[r.ts_sec].values)
        # second end → prediction: the row's 3 ms plus at most one 1-ms look at the stream, not a 250-ms offset
        assert 3_000 <= r.prediction.ts_pred - r.ts_sec <= 4_000
        assert r.prediction.feature_age_ms == (r.prediction.ts_pred - r.ts_sec) / 1000


def test_a_row_that_does_not_arrive_in_time_falls_back_after_the_row_wait(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, row_delay_us=3_000, settings=InferenceSettings(on_arrival=True, row_wait_ms=40))
    rig.world.processor_on = False  # no row ever comes
    rig.service.run(max_ticks=WARM + 10)
    fallback = rig.by_outcome("fallback")
    assert len(fallback) >= 8
    model = rig.service.model.current
    for r in fallback:
        assert r.prediction is not None
        assert r.prediction.yhat == model.predictor.predict(rig.world.rows[r.ts_sec].values)
        assert 40_000 <= r.prediction.ts_pred - r.ts_sec <= 41_000  # the wait, then at once: within the 100 ms
    assert rig.by_outcome("skipped_deadline") == []


def test_the_deadline_counts_from_the_second_end_on_arrival(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, row_delay_us=3_000, perf_ns=iter(range(0, 10**15, 30_000_000)).__next__,
                   settings=InferenceSettings(on_arrival=True, deadline_ms=60, row_wait_ms=20))
    rig.world.processor_on = False  # the fallback after 20 ms of waiting, then 30 ms per timing read: late
    rig.service.run(max_ticks=WARM + 5)
    assert rig.by_outcome("fallback") == []
    assert len(rig.by_outcome("skipped_deadline")) >= 5


@pytest.mark.parametrize("kwargs", [{"row_wait_ms": 100}, {"row_wait_ms": -1}, {"row_poll_ms": 0},
                                    {"deadline_ms": 1000, "row_wait_ms": 50}])
def test_row_waits_that_leave_no_time_before_the_deadline_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        InferenceSettings(on_arrival=True, **kwargs)  # type: ignore[arg-type]
    # On arrival the fixed offset plays no part: a long wait for the row is fine when the deadline allows it.
    assert InferenceSettings(on_arrival=True, row_wait_ms=450, deadline_ms=550).deadline_us == 550_000


def test_on_arrival_without_the_features_stream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="features stream"):
        make_rig(tmp_path, settings=InferenceSettings(on_arrival=True))


def test_arrivals_know_which_symbols_rows_came_and_forget_old_seconds() -> None:
    bus = InProcessBus()
    arrivals = RowArrivals(bus, ["BTCUSDT", "ETHUSDT"])
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        bus.publish(STREAM_FEATURES, symbol, [encode_feature_vector(FeatureVector1s(symbol, T, "h", (1.0,), T))])
    bus.publish(STREAM_FEATURES, "BTCUSDT", [b"not avro"])
    assert arrivals.poll() == 2
    assert arrivals.skipped == 1
    assert arrivals.arrived(T, ["BTCUSDT", "ETHUSDT"])
    assert not arrivals.arrived(T + US_PER_SEC, ["BTCUSDT"])
    later = [FeatureVector1s(SYMBOL, T + k * US_PER_SEC, "h", (1.0,), 0) for k in range(1, 40)]
    arrivals.add(later)
    assert not arrivals.arrived(T, ["BTCUSDT"])  # older than the kept half-minute
    assert arrivals.arrived(T + 39 * US_PER_SEC, ["BTCUSDT"])
