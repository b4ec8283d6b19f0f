"""Train == serve on real Binance data: the recorded 10 min 51 s of BTCUSDT, batch vs streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.features import assert_same_rows, stream_rows

from btcpipe.binance.recording import load_recording
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, ceil_sec, floor_sec
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.streaming import StreamingFeatureEngine


@pytest.fixture(scope="module")
def tape(recording_paths: list[Path]) -> MarketTape:
    return load_recording(recording_paths).to_tape()


def test_streaming_rows_equal_batch_rows_on_the_real_recording(tape: MarketTape) -> None:
    assert tape.best_bid_asks is not None
    trades = TradeArrays.from_tape(tape.trades)
    best_bid_ask = BestBidAskArrays.from_tape(tape.best_bid_asks)
    params = fit_params(trades.qty, with_spread=True)
    origin = ceil_sec(tape.start_us)  # the first second seen completely
    end = floor_sec(tape.end_us)
    batch = build_features(trades, params, start_us=origin + US_PER_SEC, end_us=end, history_start_us=origin,
                           best_bid_ask=best_bid_ask)
    engine = StreamingFeatureEngine(tape.symbol, params, start_us=origin)
    streamed = stream_rows(engine, trades, best_bid_ask, batch.ts_sec)
    assert_same_rows(streamed, batch.columns, params.names)
    assert len(batch) > 600
    assert engine.late_trades == 0
    # Real data exercises the features: after warm-up everything is finite, flows and prices move.
    assert np.isfinite(batch.columns[:, 60:]).all()
    assert batch.column("n_trades_1s").sum() > 19_000
    assert np.abs(batch.column("ret_1s")[60:]).max() > 0
    assert (batch.column("spread")[60:] > 0).all()


def test_trades_crossing_midnight_in_the_recording_build_the_same_split_or_whole(tape: MarketTape) -> None:
    """The recording spans 2024-08-08 → 2024-08-09: a real day boundary."""
    trades = TradeArrays.from_tape(tape.trades)
    params = fit_params(trades.qty)
    origin, end = ceil_sec(tape.start_us), floor_sec(tape.end_us)
    midnight = 1_723_161_600_000_000  # 2024-08-09T00:00:00Z
    assert origin < midnight < end
    whole = build_features(trades, params, start_us=origin + US_PER_SEC, end_us=end, history_start_us=origin)
    before = build_features(trades.between(0, midnight + 10 * US_PER_SEC), params, start_us=origin + US_PER_SEC,
                            end_us=midnight, history_start_us=origin)
    after = build_features(trades.between(midnight - 3600 * US_PER_SEC, end), params, start_us=midnight, end_us=end,
                           history_start_us=midnight - 60 * US_PER_SEC)
    joined = np.concatenate([before.columns, after.columns], axis=1)
    assert_same_rows(joined, whole.columns, params.names)
