"""What each feature means on hand-made trades: windows, empty seconds, warm-up NaN, leakage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.features import SEC, T0, assert_same_rows, make_tape

from btcpipe.domain.errors import DataError
from btcpipe.domain.records import Trade
from btcpipe.features.batch import FeatureFrame, build_features, fit_params
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import StreamingFeatureEngine

P = FeatureParams(0.5, with_spread=True)


def _trades(rows: list[tuple[float, float, float, bool]]) -> TradeArrays:
    """(seconds after T0, price, qty, is_buyer_maker)."""
    return TradeArrays(
        np.array([T0 + round(s * SEC) for s, *_ in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.bool_),
    )


def _row(frame: FeatureFrame, second: int) -> dict[str, float]:
    k = int(np.searchsorted(frame.ts_sec, T0 + second * SEC))
    assert frame.ts_sec[k] == T0 + second * SEC
    return dict(zip(frame.names, frame.row(k).tolist(), strict=True))


@pytest.fixture
def warm() -> tuple[TradeArrays, BestBidAskArrays]:
    """One trade a second for 70 s at 100, then a designed second 70, a quiet second 71, a trade at 72.0."""
    rows = [(s + 0.5, 100.0, 0.1, False) for s in range(70)]
    rows += [(70.1, 101.0, 0.2, False), (70.5, 102.0, 0.6, True), (70.9, 101.5, 0.2, False)]
    rows += [(72.0, 99.0, 1.0, True)]
    best_bid_ask = BestBidAskArrays(np.array([T0 + 70_900_000, T0 + 71_000_000]), np.array([101.4, 99.0]),
                                    np.array([101.6, 99.5]))
    return _trades(rows), best_bid_ask


def test_row_t_describes_the_second_before_t(warm: tuple[TradeArrays, BestBidAskArrays]) -> None:
    trades, best_bid_ask = warm
    frame = build_features(trades, P, start_us=T0 + SEC, end_us=T0 + 80 * SEC, history_start_us=T0,
                           best_bid_ask=best_bid_ask)
    r = _row(frame, 71)  # [70 s, 71 s)
    assert r["n_trades_1s"] == 3
    assert r["buy_vol_1s"] == pytest.approx(0.4)
    assert r["sell_vol_1s"] == pytest.approx(0.6)
    assert r["tvi_1s"] == pytest.approx(-0.2)
    assert r["avg_trade_size_1s"] == pytest.approx(1.0 / 3)
    assert r["ret_1s"] == pytest.approx(math.log(101.5 / 100.0))
    assert r["last_price_minus_1s"] == pytest.approx(1.5)
    assert r["time_since_last_trade_ms"] == pytest.approx(100.0)
    assert r["large_trade_flag_5s"] == 1.0  # 0.6 > p95 0.5
    assert r["spread"] == pytest.approx(0.2)  # the quote at exactly 71 s is not before 71 s
    vwap = (0.4 * 100 + 101 * 0.2 + 102 * 0.6 + 101.5 * 0.2) / 1.4
    assert r["vwap_5s_dev"] == pytest.approx(math.log(101.5 / vwap))
    assert r["n_trades_5s"] == 7
    assert r["buy_vol_5s"] == pytest.approx(0.8)
    assert r["burst_1s"] == pytest.approx(3.0)  # median of 60 one-trade seconds is 1
    # The trade at exactly 72.000 s belongs to [72 s, 73 s), i.e. to row 73, not row 72.
    assert _row(frame, 72)["n_trades_1s"] == 0
    assert _row(frame, 73)["n_trades_1s"] == 1


def test_a_second_without_trades_carries_the_price_and_gives_neutral_flows(warm: tuple[TradeArrays,
                                                                                       BestBidAskArrays]) -> None:
    trades, best_bid_ask = warm
    frame = build_features(trades, P, start_us=T0 + SEC, end_us=T0 + 80 * SEC, history_start_us=T0,
                           best_bid_ask=best_bid_ask)
    r = _row(frame, 72)  # [71 s, 72 s): no trade
    assert r["n_trades_1s"] == 0
    assert r["buy_vol_1s"] == 0
    assert r["sell_vol_1s"] == 0
    assert r["tvi_1s"] == 0
    assert r["avg_trade_size_1s"] == 0
    assert r["burst_1s"] == 0
    assert r["ret_1s"] == 0
    assert r["last_price_minus_1s"] == 0
    assert r["time_since_last_trade_ms"] == pytest.approx(1100.0)
    assert r["spread"] == pytest.approx(0.5)
    q = _row(frame, 75)  # [70 s, 75 s) still holds the 0.6 and the 1.0 trades
    assert q["large_trade_flag_5s"] == 1.0
    assert _row(frame, 74)["n_trades_5s"] == 5


def test_warm_up_rows_are_nan_exactly_until_their_window_is_known() -> None:
    trades = _trades([(s + 0.5, 100.0 + s % 3, 0.1, s % 2 == 0) for s in range(100)])
    frame = build_features(trades, FeatureParams(0.5), start_us=T0 + SEC, end_us=T0 + 100 * SEC, history_start_us=T0)
    first_finite = {n: int(np.flatnonzero(np.isfinite(frame.column(n)))[0]) + 1 for n in frame.names}
    # Row t is finite once the bars [t − window, t) are all at or after the history start.
    assert first_finite["n_trades_1s"] == 1
    assert first_finite["ret_1s"] == 2
    assert first_finite["ret_5s"] == 6
    assert first_finite["n_trades_5s"] == 5
    assert first_finite["vol_ret_10s"] == 11
    assert first_finite["burst_1s"] == WINDOW_BARS
    assert first_finite["large_trade_flag_5s"] == 5
    assert np.isfinite(frame.columns[:, WINDOW_BARS:]).all()


def test_no_trade_before_a_row_leaves_price_features_nan_but_counts_zero() -> None:
    trades = _trades([(80.5, 100.0, 0.1, False)])
    frame = build_features(trades, FeatureParams(0.5), start_us=T0 + SEC, end_us=T0 + 90 * SEC, history_start_us=T0)
    r = _row(frame, 70)
    assert np.isnan(r["ret_1s"])
    assert np.isnan(r["time_since_last_trade_ms"])
    assert np.isnan(r["vwap_5s_dev"])
    assert r["n_trades_1s"] == 0
    assert r["tvi_5s"] == 0
    assert _row(frame, 81)["n_trades_1s"] == 1
    assert _row(frame, 85)["time_since_last_trade_ms"] == 4500.0


def test_changing_anything_after_t_changes_no_feature_at_or_before_t() -> None:
    tape = make_tape(5, T0, 1800)
    assert tape.best_bid_asks is not None
    trades, best_bid_ask = TradeArrays.from_tape(tape.trades), BestBidAskArrays.from_tape(tape.best_bid_asks)
    params = fit_params(trades.qty, with_spread=True)
    base = build_features(trades, params, start_us=T0 + SEC, end_us=T0 + 1800 * SEC, history_start_us=T0,
                          best_bid_ask=best_bid_ask)
    rng = np.random.default_rng(0)
    for cut_s in (300, 901, 1500):
        cut = T0 + cut_s * SEC
        later = trades.ts_event >= cut  # row stamped cut describes [cut − 1 s, cut): these are after it
        qlater = best_bid_ask.ts_event >= cut
        perturbed = TradeArrays(trades.ts_event, np.where(later, trades.price * rng.uniform(0.5, 2, len(trades)),
                                trades.price), np.where(later, trades.qty * 7, trades.qty),
                                np.where(later, ~trades.is_buyer_maker, trades.is_buyer_maker))
        book = best_bid_ask
        perturbed_book = BestBidAskArrays(book.ts_event, np.where(qlater, book.bid - 50, book.bid),
                                          np.where(qlater, book.ask + 50, book.ask))
        other = build_features(perturbed, params, start_us=T0 + SEC, end_us=T0 + 1800 * SEC, history_start_us=T0,
                               best_bid_ask=perturbed_book)
        k = int(np.searchsorted(base.ts_sec, cut, side="right"))  # rows with ts_sec <= cut
        assert_same_rows(base.columns[:, :k], other.columns[:, :k], params.names)
        assert not np.array_equal(base.columns[:, k:], other.columns[:, k:], equal_nan=True)  # the change shows later


def test_streaming_engine_counts_late_trades_and_refuses_reclosing() -> None:
    engine = StreamingFeatureEngine("BTCUSDT", FeatureParams(0.5), start_us=T0)
    assert engine.add_trade_record(Trade("BTCUSDT", 1, T0 + 200_000, 10_000_000_000, 10_000_000, False))
    row = engine.close_second(T0 + SEC)
    assert row.n_trades == 1
    assert row.as_dict()["buy_vol_1s"] == 0.1
    assert not engine.add_trade(T0 + 900_000, 100.0, 0.1, False)  # its second is closed
    assert engine.add_trade(T0 + SEC + 5, 100.0, 0.1, False)
    assert not engine.add_trade(T0 + SEC + 4, 100.0, 0.1, False)  # goes back in time
    accepted = engine.add_trades(np.array([T0 + 10, T0 + SEC + 6, T0 + SEC + 1]), np.ones(3), np.ones(3),
                                 np.zeros(3, dtype=np.bool_))
    assert accepted == 1
    assert engine.late_trades == 4
    with pytest.raises(DataError, match="already closed"):
        engine.close_second(T0 + SEC)
    with pytest.raises(DataError, match="whole second"):
        engine.close_second(T0 + SEC + 1)
    assert engine.close_second(T0 + 2 * SEC).n_trades == 2


def test_trades_that_go_back_in_time_are_refused_by_the_batch_builder() -> None:
    trades = _trades([(1.5, 100.0, 0.1, False), (1.2, 100.0, 0.1, False)])
    with pytest.raises(DataError, match="back in time"):
        build_features(trades, FeatureParams(0.5), start_us=T0 + SEC, end_us=T0 + 3 * SEC)


def test_burst_median_is_the_plain_window_median_across_many_sorting_blocks() -> None:
    """The median of counts is sorted block by block; over a long run it is still each window's median."""
    from btcpipe.features.arithmetic import _median_of_counts

    rng = np.random.default_rng(11)
    n = rng.poisson(rng.gamma(0.6, 40.0, 20_000)).astype(np.float64)  # 2.4 blocks of rows, counts up to ~1000
    n[:37] = np.nan  # unknown bars at the start
    n[9_000] = np.nan  # and one in the middle
    n_rows = n.shape[0] - WINDOW_BARS + 1
    expected = np.array([np.median(n[r : r + WINDOW_BARS]) for r in range(n_rows)])  # NaN if any is NaN
    got = _median_of_counts(n, n_rows)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(got).sum() == 37 + WINDOW_BARS
