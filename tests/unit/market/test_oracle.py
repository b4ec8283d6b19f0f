"""The oracle: the known component predicts the 10-second label, causally, and nothing beats it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from btcpipe.domain.errors import DataError
from btcpipe.domain.scores import directional_hit_rate, r_squared
from btcpipe.domain.tape import MarketTape
from btcpipe.features.labels import forward_log_return, mid_from_best_bid_asks
from btcpipe.market.simulator import (
    SimConfig,
    flow_per_second,
    oracle_predictions,
    oracle_score,
    simulate,
)

S = 1_000_000


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(seed=5, duration_s=6 * 3600)


@pytest.fixture(scope="module")
def tape(config: SimConfig) -> MarketTape:
    return simulate(config)


@pytest.fixture(scope="module")
def labelled(tape: MarketTape, config: SimConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts, yhat = oracle_predictions(tape, config)
    assert tape.best_bid_asks is not None
    mid_ts, mid = mid_from_best_bid_asks(tape.best_bid_asks)
    y = forward_log_return(ts, mid_ts, mid, data_end_us=config.end_us)
    keep = np.isfinite(y)
    return ts[keep], yhat[keep], y[keep]


def test_oracle_explains_a_clear_but_partial_share_of_the_label(tape: MarketTape, config: SimConfig) -> None:
    score = oracle_score(tape, config)
    assert 0.05 < score.r2 < 0.3
    assert score.hit_rate > 0.57
    assert score.n == config.duration_s - 9  # the last 9 s have no label inside the span


def test_a_shuffled_oracle_scores_nothing(labelled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, yhat, y = labelled
    shuffled = np.random.default_rng(0).permutation(yhat)
    assert r_squared(y, shuffled) < 0.005
    assert abs(directional_hit_rate(y, shuffled) - 0.5) < 0.015


def test_oracle_is_calibrated_the_label_moves_one_for_one_with_it(
    labelled: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, yhat, y = labelled
    slope = float(np.cov(yhat, y)[0, 1] / yhat.var())
    assert slope == pytest.approx(1.0, abs=0.2)
    r2 = r_squared(y, yhat)
    assert r2 > r_squared(y, 0.7 * yhat)
    assert r2 > r_squared(y, 1.4 * yhat)


def test_nothing_else_known_at_t_adds_to_the_oracle(
    tape: MarketTape, config: SimConfig, labelled: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """Least squares on the oracle plus past returns, flow ratios and activity, fitted on the first half,
    does no better than the oracle on the second half."""
    ts, yhat, y = labelled
    assert tape.best_bid_asks is not None
    mid_ts, mid = mid_from_best_bid_asks(tape.best_bid_asks)
    past = [np.nan_to_num(forward_log_return(ts - h, mid_ts, mid, h)) for h in (S, 5 * S, 10 * S)]
    buy, sell = flow_per_second(tape.trades, config.start_us, config.duration_s)
    sec = (ts - config.start_us) // S
    # Volumes of the seconds before t: x[sec - m], zero before the start.
    b5 = sum(np.concatenate((np.zeros(m), buy))[sec] for m in range(1, 6))
    s5 = sum(np.concatenate((np.zeros(m), sell))[sec] for m in range(1, 6))
    tvi5 = np.where(b5 + s5 > 0, (b5 - s5) / np.where(b5 + s5 > 0, b5 + s5, 1.0), 0.0)
    x = np.column_stack([np.ones_like(yhat), yhat, *past, tvi5, b5 + s5])
    half = y.shape[0] // 2
    coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    fitted = r_squared(y[half:], x[half:] @ coef)
    assert fitted < r_squared(y[half:], yhat[half:]) + 0.01


def test_oracle_at_t_uses_no_trade_from_t_on(tape: MarketTape, config: SimConfig) -> None:
    ts, yhat = oracle_predictions(tape, config)
    for k in (7, 1000, 5000):
        cut = int(np.searchsorted(tape.trades.ts_event, ts[k], side="left"))
        truncated = dataclasses.replace(tape, trades=tape.trades.slice(0, cut))
        _, early = oracle_predictions(truncated, config)
        assert early[k] == yhat[k]
        assert early[k + 1] != yhat[k + 1]  # the trades of the second before t + 1 s do count


def test_oracle_score_over_a_sub_span_scores_only_those_seconds(tape: MarketTape, config: SimConfig) -> None:
    lo = config.start_us + 3600 * S
    score = oracle_score(tape, config, start_us=lo, end_us=lo + 1800 * S)
    assert score.n == 1800
    assert score.r2 > 0.0


def test_oracle_score_refuses_a_span_without_labels(tape: MarketTape, config: SimConfig) -> None:
    with pytest.raises(DataError, match="too short"):
        oracle_score(tape, config, start_us=config.end_us, end_us=config.end_us + S)


def test_a_market_without_the_flow_component_has_an_oracle_of_zero() -> None:
    cfg = SimConfig(seed=5, duration_s=1800, alpha_tvi_1s=0.0, lambda_net_5s=0.0)
    score = oracle_score(simulate(cfg), cfg)
    assert score.r2 <= 0.0
    assert score.hit_rate == 0.5  # a zero prediction never calls a direction: half a hit, like a coin


def test_oracle_against_last_trade_price_labels_stays_close_to_the_mid_score(
    tape: MarketTape, config: SimConfig
) -> None:
    on_mid = oracle_score(tape, config)
    on_trades = oracle_score(tape, config, mid_source="trades")
    assert on_trades != on_mid
    assert abs(on_trades.r2 - on_mid.r2) < 0.03
    assert on_trades.hit_rate > 0.57
