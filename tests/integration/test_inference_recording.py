"""Train == serve for the fallback path, on real Binance data: the recorded BTCUSDT trades and best bid/ask
played onto the bus, no processor at all, and every fallback prediction equals the model on the batch row."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from support.inference import SYMBOL, MarketWorld, linear_model

from btcpipe.binance.recording import load_recording
from btcpipe.bus.memory import InProcessBus
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, ceil_sec, floor_sec
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.registry import ModelRegistry
from btcpipe.services.infer.fallback import MarketTap
from btcpipe.services.infer.inference import InferenceService, TickResult
from btcpipe.services.infer.model_loader import ModelWatcher
from btcpipe.store.memory import InProcessOnlineStore


@pytest.fixture(scope="module")
def tape(recording_paths: list[Path]) -> MarketTape:
    return load_recording(recording_paths).to_tape()


def test_fallback_predictions_on_the_real_recording_equal_the_model_on_batch_rows(
    tape: MarketTape, tmp_path: Path
) -> None:
    assert tape.best_bid_asks is not None
    assert tape.symbol == SYMBOL
    trades = TradeArrays.from_tape(tape.trades)
    best_bid_ask = BestBidAskArrays.from_tape(tape.best_bid_asks)
    params = fit_params(trades.qty, with_spread=True)
    origin = ceil_sec(tape.start_us)
    batch = build_features(trades, params, start_us=origin + US_PER_SEC, end_us=floor_sec(tape.end_us),
                           history_start_us=origin, best_bid_ask=best_bid_ask)
    batch_rows = {int(t): batch.columns[:, k] for k, t in enumerate(batch.ts_sec)}

    clock = ManualClock(origin + 30 * US_PER_SEC)  # inference starts half a minute into the market
    bus = InProcessBus()
    store = InProcessOnlineStore(clock)
    registry = ModelRegistry(LocalObjectStore(tmp_path / "lake"))
    registry.register("btc", linear_model(params, seed=3))
    registry.promote("btc", "v1")
    metrics = Metrics()
    watcher = ModelWatcher(registry, "btc", metrics=metrics, clock=clock)
    watcher.load()
    world = MarketWorld(tape, bus, store, clock, params=params, processor_on=False)
    results: list[TickResult] = []
    service = InferenceService(symbols=[SYMBOL], model=watcher, store=store, bus=bus, metrics=metrics, clock=clock,
                               market=MarketTap(bus, [SYMBOL]), sleep=world.sleep, on_result=results.append,
                               # Values are under test here, not speed: a fixed 1 µs per timing read keeps a loaded
                               # machine from turning ticks into deadline skips (tested in test_inference_service).
                               perf_ns=itertools.count(0, 1_000).__next__)
    service.run(max_ticks=240)

    fallback = [r for r in results if r.outcome == "fallback"]
    assert len(fallback) >= 170  # all but the engine's first minute of warm-up
    assert {r.outcome for r in results} == {"fallback", "no_features"}
    predictor = watcher.current.predictor
    for r in fallback:
        assert r.prediction is not None
        assert r.prediction.yhat == predictor.predict(batch_rows[r.ts_sec]), r.ts_sec
    assert service.fallback.late_trades == 0
    assert service.fallback.duplicates == 0
    spread = np.array([batch_rows[r.ts_sec][params.names.index("spread")] for r in fallback])
    assert (spread > 0).all()  # the real best bid/ask reached the fallback engine
