"""Train == serve: the streaming engine's rows equal the batch builder's, every value, every second."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support.features import SEC, T0, assert_same_rows, make_tape, stream_rows

from btcpipe.features import batch as batch_module
from btcpipe.features.arithmetic import aggregate_seconds
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import FeatureParams
from btcpipe.features.streaming import StreamingFeatureEngine


@pytest.fixture(scope="module")
def synthetic() -> tuple[TradeArrays, BestBidAskArrays]:
    tape = make_tape(7, T0, 2 * 3600)
    assert tape.best_bid_asks is not None
    return TradeArrays.from_tape(tape.trades), BestBidAskArrays.from_tape(tape.best_bid_asks)


def test_stream_equals_batch_on_two_synthetic_hours_with_spread(synthetic: tuple[TradeArrays,
                                                                                 BestBidAskArrays]) -> None:
    trades, best_bid_ask = synthetic
    params = fit_params(trades.qty, with_spread=True)
    start, end = T0 + SEC, T0 + 2 * 3600 * SEC
    batch = build_features(trades, params, start_us=start, end_us=end, history_start_us=T0, best_bid_ask=best_bid_ask)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=T0)
    streamed = stream_rows(engine, trades, best_bid_ask, batch.ts_sec)
    assert_same_rows(streamed, batch.columns, params.names)
    # The comparison is not vacuous: after warm-up every feature is finite, and the market moved.
    assert np.isfinite(batch.columns[:, 120:]).all()
    assert np.nanstd(batch.column("ret_1s")) > 0
    assert engine.late_trades == 0


def test_batch_split_across_two_threads_equals_one_thread_and_the_stream(
    synthetic: tuple[TradeArrays, BestBidAskArrays], monkeypatch: pytest.MonkeyPatch
) -> None:
    trades, best_bid_ask = synthetic
    params = fit_params(trades.qty, with_spread=True)
    start, end = T0 + SEC, T0 + 2 * 3600 * SEC
    calls: list[int] = []

    def counted(*args: object, n_bars: int) -> object:
        calls.append(n_bars)
        return aggregate_seconds(*args, n_bars=n_bars)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_module, "aggregate_seconds", counted)
    one = build_features(trades, params, start_us=start, end_us=end, history_start_us=T0, best_bid_ask=best_bid_ask)
    with ThreadPoolExecutor(2) as pool:
        two = build_features(trades, params, start_us=start, end_us=end, history_start_us=T0, best_bid_ask=best_bid_ask,
                             executor=pool)
    assert len(calls) == 3  # once for the one-thread build, twice (two halves) for the threaded one
    assert calls[1] + calls[2] == calls[0]
    assert one.columns.tobytes() == two.columns.tobytes()
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=T0)
    assert_same_rows(stream_rows(engine, trades, best_bid_ask, two.ts_sec), two.columns, params.names)


def test_stream_fed_one_trade_at_a_time_equals_batch(synthetic: tuple[TradeArrays, BestBidAskArrays]) -> None:
    trades, _ = synthetic
    params = FeatureParams(float(np.percentile(trades.qty, 95)))
    start, end = T0 + SEC, T0 + 1200 * SEC
    batch = build_features(trades, params, start_us=start, end_us=end, history_start_us=T0)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=T0)
    assert_same_rows(stream_rows(engine, trades, None, batch.ts_sec, one_by_one=True), batch.columns, params.names)


def test_stream_closing_with_skipped_seconds_equals_batch(synthetic: tuple[TradeArrays, BestBidAskArrays]) -> None:
    """A processor that misses ticks closes several seconds at once (also past a whole window)."""
    trades, best_bid_ask = synthetic
    params = fit_params(trades.qty, with_spread=True)
    batch = build_features(trades, params, start_us=T0 + SEC, end_us=T0 + 3600 * SEC, history_start_us=T0,
                           best_bid_ask=best_bid_ask)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=T0)
    closes = [T0 + s * SEC for s in (1, 2, 5, 9, 70, 71, 200, 1300, 1301, 3599)]
    i = j = 0
    for t in closes:
        hi = int(np.searchsorted(trades.ts_event, t))
        engine.add_trades(trades.ts_event[i:hi], trades.price[i:hi], trades.qty[i:hi], trades.is_buyer_maker[i:hi])
        hj = int(np.searchsorted(best_bid_ask.ts_event, t))
        for q in range(j, hj):
            engine.add_best_bid_ask(int(best_bid_ask.ts_event[q]), float(best_bid_ask.bid[q]),
                                    float(best_bid_ask.ask[q]))
        i, j = hi, hj
        row = engine.close_second(t)
        k = int(np.searchsorted(batch.ts_sec, t))
        assert_same_rows(row.values[:, None], batch.columns[:, k : k + 1], params.names)


def test_stream_on_simulated_hours_equals_batch() -> None:
    from btcpipe.market.simulator import SimConfig, simulate

    tape = simulate(SimConfig(seed=3, duration_s=3 * 3600))
    trades = TradeArrays.from_tape(tape.trades)
    best_bid_ask = BestBidAskArrays.from_tape(tape.best_bid_asks) if tape.best_bid_asks is not None else None
    params = fit_params(trades.qty, with_spread=best_bid_ask is not None)
    start = tape.start_us - tape.start_us % SEC
    batch = build_features(trades, params, start_us=start + SEC, end_us=start + 3 * 3600 * SEC,
                           history_start_us=start, best_bid_ask=best_bid_ask)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=start)
    assert_same_rows(stream_rows(engine, trades, best_bid_ask, batch.ts_sec), batch.columns, params.names)
    assert len(trades) > 10_000
