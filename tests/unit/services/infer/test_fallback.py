"""The fallback engine under the faults the bus can throw at it: stalls, redelivery, no data at all."""

from __future__ import annotations

from pathlib import Path

from support.inference import SYMBOL, WARM, make_rig

from btcpipe.bus.port import STREAM_TRADES
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import FeatureParams
from btcpipe.services.infer.fallback import FallbackFeatures
from btcpipe.wire.codec import encode_trades


def test_after_a_bus_stall_the_lagging_trades_still_count_and_fallback_rows_stay_exact(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.processor_on = False
    rig.service.run(max_ticks=WARM + 3)
    rig.world.bus_on = False
    rig.service.run(max_ticks=6)  # closing is deferred while the feed is stale, never done on partial data
    assert rig.results[-1].outcome == "stale"
    rig.world.bus_on = True
    rig.service.run(max_ticks=10)
    after = rig.results[-9:]
    assert [r.outcome for r in after] == ["fallback"] * 9
    predictor = rig.service.model.current.predictor
    for r in after:
        assert r.prediction is not None
        assert r.prediction.yhat == predictor.predict(rig.world.rows[r.ts_sec].values)
    assert rig.service.fallback.late_trades == 0


def test_redelivered_trades_are_dropped_and_rows_are_unchanged(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.processor_on = False
    replayed: list[int] = []

    def redeliver(now_us: int) -> None:  # at-least-once: every batch of the last second arrives twice
        batch = [t for t in rig.world.trades if now_us - US_PER_SEC <= t.ts_event < now_us]
        if batch:
            rig.bus.publish(STREAM_TRADES, SYMBOL, [encode_trades(batch)])
            replayed.append(len(batch))

    rig.world.on_advance.append(redeliver)
    rig.service.run(max_ticks=WARM + 10)
    fallback = rig.by_outcome("fallback")
    assert len(fallback) >= 8
    predictor = rig.service.model.current.predictor
    for r in fallback:
        assert r.prediction is not None
        assert r.prediction.yhat == predictor.predict(rig.world.rows[r.ts_sec].values)
    assert rig.service.fallback.duplicates >= sum(replayed) // 2
    assert rig.service.fallback.late_trades == 0


def test_a_second_closes_only_once_the_streams_have_passed_it() -> None:
    fallback = FallbackFeatures(FeatureParams(0.1), lateness_us=200_000, stale_after_us=3 * US_PER_SEC)
    t = 1_704_067_200 * US_PER_SEC
    assert fallback.row(SYMBOL, t, t + 250_000).reason == "no_data"
    fallback.add_trades([Trade(SYMBOL, 1, t + 100, 100_00000000, 1, False)])  # the engine starts at t + 1 s
    assert fallback.row(SYMBOL, t + US_PER_SEC, t + US_PER_SEC + 250_000).reason == "warming_up"
    # nothing seen at or after t + 2 s: a lagging bus and a silent market look alike, so do not close
    assert fallback.row(SYMBOL, t + 2 * US_PER_SEC, t + 2 * US_PER_SEC + 250_000).reason == "not_closed"
    fallback.add_trades([Trade(SYMBOL, 2, t + 2 * US_PER_SEC + 10, 100_00000000, 1, False)])
    result = fallback.row(SYMBOL, t + 2 * US_PER_SEC, t + 2 * US_PER_SEC + 250_000)
    assert result.reason == "warming_up"  # closed (NaN windows still filling)
    assert result.row is not None
    assert result.row.n_trades == 0
    assert fallback.row(SYMBOL, t + 6 * US_PER_SEC, t + 6 * US_PER_SEC + 250_000).reason == "stale"


def test_a_trade_after_its_second_closed_taints_the_rows_of_the_next_minute() -> None:
    fallback = FallbackFeatures(FeatureParams(0.1), lateness_us=200_000, stale_after_us=3 * US_PER_SEC)
    t = 1_704_067_200 * US_PER_SEC
    for k in range(70):  # one trade every second for 70 s: warm
        fallback.add_trades([Trade(SYMBOL, k + 1, t + k * US_PER_SEC + 500_000, 100_00000000, 1, False)])
        fallback.close_until(t + k * US_PER_SEC, t + k * US_PER_SEC + 250_000)
    now = t + 70 * US_PER_SEC
    fallback.add_trades([Trade(SYMBOL, 71, now + 1, 100_00000000, 1, False)])
    assert fallback.row(SYMBOL, now, now + 250_000).reason == "ok"
    fallback.add_trades([Trade(SYMBOL, 72, now - 10, 100_00000000, 1, False)])  # its second is already closed
    assert fallback.late_trades == 1
    fallback.add_trades([Trade(SYMBOL, 73, now + US_PER_SEC + 5, 100_00000000, 1, False)])
    assert fallback.row(SYMBOL, now + US_PER_SEC, now + US_PER_SEC + 250_000).reason == "tainted"
