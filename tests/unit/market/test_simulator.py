"""The simulated market's streams: determinism, Binance's grids and ids, clustering, trades at the touch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.tape import MarketTape, aggregate_trades
from btcpipe.market.simulator import DEFAULT_START_US, SimConfig, simulate

S = 1_000_000


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(seed=7, duration_s=1800)


@pytest.fixture(scope="module")
def tape(config: SimConfig) -> MarketTape:
    return simulate(config)


def _arrays(tape: MarketTape) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for part in (tape.trades, tape.best_bid_asks, tape.depth):
        assert part is not None
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if value is not None:
                out[f"{type(part).__name__}.{f.name}"] = value.tobytes()
    return out


def test_same_seed_gives_byte_identical_tapes(config: SimConfig, tape: MarketTape) -> None:
    again = simulate(config)
    assert _arrays(again) == _arrays(tape)
    assert again.initial_book == tape.initial_book


def test_another_seed_gives_another_market(config: SimConfig, tape: MarketTape) -> None:
    other = simulate(dataclasses.replace(config, seed=config.seed + 1))
    assert len(other.trades) != len(tape.trades) or not np.array_equal(other.trades.price, tape.trades.price)


def test_default_span_starts_2024_01_01_utc_at_60k() -> None:
    cfg = SimConfig(duration_s=60)
    assert DEFAULT_START_US == 1_704_067_200_000_000
    tape = simulate(cfg)
    first_price = tape.trades.price[0] / 1e8
    assert 59_000 < first_price < 61_000
    assert cfg.start_us <= tape.start_us < tape.end_us < cfg.end_us


def test_trade_ids_are_contiguous_and_times_ordered_inside_the_span(config: SimConfig, tape: MarketTape) -> None:
    trades = tape.trades
    assert trades.id[0] == config.first_trade_id
    assert np.array_equal(trades.id, config.first_trade_id + np.arange(len(trades)))
    assert bool(np.all(np.diff(trades.ts_event) >= 0))
    assert config.start_us < trades.ts_event[0]
    assert trades.ts_event[-1] < config.end_us


def test_prices_sit_on_the_cent_tick_and_quantities_on_the_1e_5_step(tape: MarketTape) -> None:
    trades, best_bid_ask = tape.trades, tape.best_bid_asks
    depth = tape.depth
    assert best_bid_ask is not None
    assert depth is not None
    for prices in (trades.price, best_bid_ask.bid_price, best_bid_ask.ask_price, depth.level_price):
        assert bool(np.all(prices % 1_000_000 == 0))
        assert bool(np.all(prices > 0))
    for qtys in (trades.qty, best_bid_ask.bid_qty, best_bid_ask.ask_qty, depth.level_qty):
        assert bool(np.all(qtys % 1_000 == 0))
    assert bool(np.all(trades.qty > 0))
    assert bool(np.all(best_bid_ask.bid_qty > 0))
    assert bool(np.all(best_bid_ask.ask_qty > 0))


def test_aggregated_trades_have_consistent_first_and_last_ids(tape: MarketTape) -> None:
    trades = tape.trades
    assert trades.taker_order is not None
    agg = aggregate_trades(trades)
    assert agg.first_trade_id[0] == trades.id[0]
    assert agg.last_trade_id[-1] == trades.id[-1]
    assert bool(np.all(agg.first_trade_id[1:] == agg.last_trade_id[:-1] + 1))
    assert bool(np.all(agg.last_trade_id >= agg.first_trade_id))
    first = agg.first_trade_id - trades.id[0]
    last = agg.last_trade_id - trades.id[0]
    # Each aggTrade is one taker order at one price: every fill in [f, l] shares both.
    sizes = last - first + 1
    member = np.repeat(np.arange(len(agg)), sizes)
    assert np.array_equal(trades.price, agg.price[member])
    assert np.array_equal(trades.taker_order, trades.taker_order[first][member])
    assert np.array_equal(np.add.reduceat(trades.qty, first), agg.qty)
    # The market has both kinds: several makers filled at one price, and orders that swept several prices.
    assert int(sizes.max()) > 1
    aggs_per_order = np.bincount(trades.taker_order[first])
    assert int(aggs_per_order.max()) > 1
    assert 1.2 < len(trades) / len(agg) < 4.0


def test_a_sweeping_order_fills_the_best_price_first_and_walks_away_from_it(tape: MarketTape) -> None:
    trades = tape.trades
    assert trades.taker_order is not None
    same_order = trades.taker_order[1:] == trades.taker_order[:-1]
    step = np.diff(trades.price)[same_order]
    is_buy = ~trades.is_buyer_maker[1:][same_order]
    assert bool(np.all(np.where(is_buy, step >= 0, step <= 0)))
    assert bool(np.all(np.diff(trades.ts_event)[same_order] == 0))  # one order, one transaction time


def test_orders_trade_at_the_prevailing_best_bid_or_ask(tape: MarketTape) -> None:
    trades, best_bid_ask = tape.trades, tape.best_bid_asks
    assert best_bid_ask is not None
    assert trades.taker_order is not None
    first_fill = np.concatenate(([True], trades.taker_order[1:] != trades.taker_order[:-1]))
    idx = np.searchsorted(best_bid_ask.ts_event, trades.ts_event[first_fill], side="right") - 1
    is_buy = ~trades.is_buyer_maker[first_fill]
    touch = np.where(is_buy, best_bid_ask.ask_price[idx], best_bid_ask.bid_price[idx])
    assert np.array_equal(trades.price[first_fill], touch)


def test_trade_arrivals_cluster_far_beyond_poisson(config: SimConfig, tape: MarketTape) -> None:
    counts = np.bincount((tape.trades.ts_event - config.start_us) // S, minlength=config.duration_s)
    assert counts.var() / counts.mean() > 5.0  # a Poisson process gives 1
    assert int(np.percentile(counts, 10)) <= 5  # quiet spells: a few trades a second
    assert int(counts.max()) >= 100  # bursts: hundreds


def test_one_day_has_at_least_one_and_a_half_million_trades_at_realistic_volume() -> None:
    tape = simulate(SimConfig(seed=0, duration_s=86_400))
    assert len(tape.trades) >= 1_500_000
    volume_btc = int(tape.trades.qty.sum()) / 1e8
    assert 5_000 < volume_btc < 50_000
    prices = tape.trades.price / 1e8
    assert prices.min() / 60_000 > 0.9
    assert prices.max() / 60_000 < 1.1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_s": 0}, "duration_s"),
        ({"start_us": DEFAULT_START_US + 1}, "whole second"),
        ({"hawkes_branching": 1.0}, "hawkes_branching"),
        ({"initial_price": -1.0}, "initial_price"),
        ({"order_size_sigma": float("nan")}, "order_size_sigma"),
        ({"depth_levels": 0}, "depth_levels"),
    ],
)
def test_a_nonsense_config_is_refused_with_the_field_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimConfig(**change)  # type: ignore[arg-type]
