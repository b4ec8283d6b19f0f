"""Deterministic BTCUSDT-like market simulator with a known predictive component, and its oracle.

``simulate(config)`` gives a ``MarketTape``: raw trades (contiguous ids, taker orders known), best
bid/ask updates and depth diffs consistent with an initial book. The 10-second mid return depends on
the taker-flow imbalance of the last 1 and 5 seconds with known coefficients; ``oracle_predictions``
is the best predictor of the label given what is known at each second and ``oracle_score`` is the
ruler models are measured against. The model and its formulas: ``docs/SIMULATOR.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import to_float_array
from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.scores import score
from btcpipe.domain.tape import MarketTape, TradeTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.labels import forward_log_return, mid_from_best_bid_asks, mid_from_trades
from btcpipe.market.book import BookPath, best_bid_asks, book_at, depth_diffs, initial_snapshot
from btcpipe.market.config import DEFAULT_START_US, SimConfig
from btcpipe.market.flow import (
    Arrivals,
    activity,
    draw_flow_signs,
    draw_level_quantities,
    draw_order_sizes,
    expected_flow_drift,
    flow_drift_per_second,
    simulate_arrivals,
    surprise_impact_per_second,
    sweep_book,
)

__all__ = [
    "DEFAULT_START_US",
    "OracleScore",
    "SimConfig",
    "book_at",
    "flow_per_second",
    "oracle_predictions",
    "oracle_score",
    "simulate",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def flow_per_second(trades: TradeTape, start_us: int, n_seconds: int) -> tuple[F64, F64]:
    """Taker buy and taker sell base volume (BTC) in each second ``[start + s, start + s + 1)``.

    Buy = the taker bought = not ``is_buyer_maker``. Trades outside the span are ignored. The same
    function drives the simulated price and computes the oracle, so both see the same floats.
    """
    return _flow(trades.ts_event, trades.qty, trades.is_buyer_maker, start_us, n_seconds)


def _flow(ts_event: I64, qty_mantissa: I64, is_buyer_maker: Bools, start_us: int, n_seconds: int) -> tuple[F64, F64]:
    sec = (ts_event - start_us) // US_PER_SEC
    inside = (sec >= 0) & (sec < n_seconds)
    sec = sec[inside]
    qty = to_float_array(qty_mantissa[inside])
    seller_maker = is_buyer_maker[inside]
    buy = np.bincount(sec, weights=np.where(seller_maker, 0.0, qty), minlength=n_seconds)
    sell = np.bincount(sec, weights=np.where(seller_maker, qty, 0.0), minlength=n_seconds)
    return buy.astype(np.float64), sell.astype(np.float64)


def _imbalance(buy: F64, sell: F64) -> F64:
    total = buy + sell
    return np.where(total > 0.0, (buy - sell) / np.where(total > 0.0, total, 1.0), 0.0)


def _lagged(x: F64, lag: int) -> F64:
    """``x[s - lag]`` at each s, 0 before the start."""
    out = np.zeros_like(x)
    if lag < x.shape[0]:
        out[lag:] = x[: x.shape[0] - lag]
    return out


def _known_component(
    config: SimConfig, buy: F64, sell: F64, impact: F64 | None = None, drift_ahead: F64 | None = None
) -> F64:
    """E[y_t | what is known at t] at t = start + s: α·tvi(second s−1) + λ·net(seconds s−5 … s−1),
    plus, with surprise impact I, the parts of past impacts still to come inside [t, t+10 s):
    (h1 + h5)·I(s−1) + h5·(I(s−2) + … + I(s−5))."""
    net = buy - sell
    net_5s = sum((_lagged(net, m) for m in range(1, 6)), np.zeros_like(net))
    known = config.alpha_tvi_1s * _lagged(_imbalance(buy, sell), 1) + config.lambda_net_5s * net_5s
    if impact is not None:
        h1, h5 = config.impact_lag1_share, config.impact_lag5_share
        known = known + (h1 + h5) * _lagged(impact, 1)
        known = known + h5 * sum((_lagged(impact, m) for m in range(2, 6)), np.zeros_like(impact))
    if drift_ahead is not None:
        known = known + drift_ahead
    return np.asarray(known, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Orders:
    arrivals: Arrivals
    is_buy: Bools
    size_steps: I64
    impact: F64 | None  # surprise impact per second (None in the classroom model)
    drift: F64 | None  # flow drift per second
    drift_ahead: F64 | None  # E[drift over [t, t+10 s) | known at t], per second t


def _rngs(config: SimConfig) -> list[np.random.Generator]:
    # arrivals, orders, book, fills, price, signs: one stream per part of the model
    return [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(6)]


def _orders(config: SimConfig, rngs: list[np.random.Generator]) -> _Orders:
    """Arrivals, order sides and sizes, and the surprise impact: everything the oracle needs."""
    arrivals = simulate_arrivals(config, rngs[0])
    n_orders = arrivals.order_ts.shape[0]
    is_buy, size_steps = draw_order_sizes(config, n_orders, rngs[1])
    if not config.has_flow_memory:
        return _Orders(arrivals, is_buy, size_steps, None, None, None)
    del n_orders
    signs = draw_flow_signs(config, arrivals, size_steps, rngs[5])
    impact = surprise_impact_per_second(config, arrivals, signs.is_buy, signs.expected_sign, size_steps)
    drift = flow_drift_per_second(config, arrivals, signs.imbalance)
    ahead = expected_flow_drift(config, arrivals, signs.imbalance)
    return _Orders(arrivals, signs.is_buy, size_steps, impact, drift, ahead)


def simulate(config: SimConfig) -> MarketTape:
    """Simulate ``config.duration_s`` seconds of one symbol's market. Same config → identical arrays."""
    rngs = _rngs(config)
    _, _, rng_book, rng_fills, rng_price, _ = rngs
    orders = _orders(config, rngs)
    arrivals, is_buy, size_steps = orders.arrivals, orders.is_buy, orders.size_steps
    n_moves = arrivals.move_ts.shape[0]

    # Atomic book updates: 0 = the initial book, then moves and orders by time (a move first on a tie).
    event_ts = np.concatenate((arrivals.move_ts, arrivals.order_ts))
    order_of = np.argsort(event_ts, kind="stable")
    ts = np.concatenate(([config.start_us], event_ts[order_of])).astype(np.int64)
    is_order = np.concatenate(([False], order_of >= n_moves))
    is_move = ~is_order
    order_k = np.flatnonzero(is_order)  # the update of each order, orders in time order

    buy_at = np.zeros(ts.shape[0], dtype=np.bool_)
    buy_at[order_k] = is_buy
    # A side gets fresh quantities on every move and right after every taker order that hit it.
    bid_row = np.cumsum(is_move | (is_order & ~buy_at)) - 1
    ask_row = np.cumsum(is_move | (is_order & buy_at)) - 1
    bid_qty = draw_level_quantities(config, int(bid_row[-1]) + 1, rng_book)
    ask_qty = draw_level_quantities(config, int(ask_row[-1]) + 1, rng_book)
    resting = np.where(is_buy[:, None], ask_qty[ask_row[order_k - 1]], bid_qty[bid_row[order_k - 1]])
    fills = sweep_book(config, size_steps, resting, rng_fills)
    fill_buy = is_buy[fills.order]
    trade_ts = arrivals.order_ts[fills.order]
    trade_qty = fills.steps * config.qty_step_mantissa
    buy_vol, sell_vol = _flow(trade_ts, trade_qty, ~fill_buy, config.start_us, config.n_seconds)

    quote_bid, quote_ask = _price_path(
        config, move_ts=arrivals.move_ts, rate=arrivals.rate, buy=buy_vol, sell=sell_vol, rng=rng_price,
        impact=orders.impact, flow_drift=orders.drift,
    )
    quote_of = np.cumsum(is_move) - 1
    bid_ticks, ask_ticks = quote_bid[quote_of], quote_ask[quote_of]
    k_of_fill = order_k[fills.order]
    price_ticks = np.where(fill_buy, ask_ticks[k_of_fill] + fills.level, bid_ticks[k_of_fill] - fills.level)
    if price_ticks.shape[0] and int(price_ticks.min()) <= 0:
        raise ConfigError("the simulated price reached zero; raise initial_price or lower the volatility")

    trades = TradeTape(
        id=config.first_trade_id + np.arange(trade_ts.shape[0], dtype=np.int64),
        ts_event=trade_ts,
        price=price_ticks * config.tick_mantissa,
        qty=trade_qty,
        is_buyer_maker=~fill_buy,
        taker_order=fills.order,
    )
    book = BookPath(
        ts=ts,
        bid_ticks=bid_ticks,
        ask_ticks=ask_ticks,
        bid_row=bid_row,
        ask_row=ask_row,
        bid_qty=bid_qty,
        ask_qty=ask_qty,
        tick_mantissa=config.tick_mantissa,
        qty_step_mantissa=config.qty_step_mantissa,
        first_update_id=config.first_update_id,
    )
    return MarketTape(
        symbol=config.symbol,
        trades=trades,
        best_bid_asks=best_bid_asks(book),
        depth=depth_diffs(book, config.start_us, config.depth_interval_us),
        initial_book=initial_snapshot(book, config.symbol),
    )


def _price_path(
    config: SimConfig, *, move_ts: I64, rate: F64, buy: F64, sell: F64, rng: np.random.Generator,
    impact: F64 | None = None, flow_drift: F64 | None = None,
) -> tuple[I64, I64]:
    """Best bid and ask (ticks) of the initial quote and after each move.

    The log fair price moves, over second s, by drift_s + noise_s, shared equally among the moves of
    that second (every second has at least one move, strictly inside it).
    """
    n = config.n_seconds
    net = buy - sell
    drift = (
        config.alpha_tvi_1s * _lagged(_imbalance(buy, sell), 1)
        + config.lambda_net_5s * _lagged(net, 5)
        + config.gamma_net_now * net
    )
    if impact is not None:
        h1, h5 = config.impact_lag1_share, config.impact_lag5_share
        drift = drift + (1.0 - h1 - h5) * impact + h1 * _lagged(impact, 1) + h5 * _lagged(impact, 5)
    if flow_drift is not None:
        drift = drift + flow_drift
    sigma = config.sigma_per_sec * activity(config, rate) ** config.vol_activity_exponent
    sec = (move_ts - config.start_us) // US_PER_SEC
    moves_in_sec = np.bincount(sec, minlength=n).astype(np.float64)
    per_move = drift[sec] / moves_in_sec[sec] + sigma[sec] / np.sqrt(moves_in_sec[sec]) * rng.standard_normal(
        sec.shape[0]
    )
    log_fair = math.log(config.initial_price) + np.concatenate(([0.0], np.cumsum(per_move)))
    spread = np.ones(log_fair.shape[0], dtype=np.int64)
    wide: Bools = np.asarray(rng.random(log_fair.shape[0]) < config.spread_wide_prob, dtype=np.bool_)
    wide[0] = False
    spread[wide] = 2 + rng.poisson(max(config.spread_wide_mean_ticks - 2.0, 0.0), int(wide.sum()))
    tick = config.tick_mantissa * 1e-8
    bid = np.rint(np.exp(log_fair) / tick - spread / 2.0).astype(np.int64)
    return bid, bid + spread


@dataclass(frozen=True, slots=True)
class OracleScore:
    """How well the simulator's oracle predicts its own label over a span."""

    r2: float
    hit_rate: float  # on non-zero realised moves; a zero prediction is half a hit (btcpipe.domain.scores)
    n: int  # seconds scored (those with a known label)


def oracle_predictions(tape: MarketTape, config: SimConfig) -> tuple[I64, F64]:
    """The best prediction of the 10-second label at each whole second ``t`` of the span.

    Uses only the trades before ``t``: α·tvi over [t−1 s, t) + λ·(buy − sell volume over [t−5 s, t)).
    With the sign-memory model (``config.surprise_impact`` ≠ 0) it also needs the order surprises of the
    seconds before ``t``, which the tape does not show: they are re-drawn from the config's seed, exactly
    as ``simulate`` drew them (the tape must come from ``simulate(config)``).
    """
    buy, sell = flow_per_second(tape.trades, config.start_us, config.n_seconds)
    ts_sec = config.start_us + np.arange(config.n_seconds, dtype=np.int64) * US_PER_SEC
    if not config.has_flow_memory:
        return ts_sec, _known_component(config, buy, sell)
    orders = _orders(config, _rngs(config))
    return ts_sec, _known_component(config, buy, sell, orders.impact, orders.drift_ahead)


def oracle_score(
    tape: MarketTape,
    config: SimConfig,
    start_us: int | None = None,
    end_us: int | None = None,
    *,
    mid_source: Literal["book", "trades"] = "book",
) -> OracleScore:
    """R² and directional hit rate of the oracle against the realised labels of ``[start_us, end_us)``,
    scored by ``btcpipe.domain.scores`` exactly as a model is.

    Labels come from ``labels.forward_log_return`` on the best bid/ask mid, or on the last trade price
    (``mid_source="trades"``, the proxy of a history without best bid/ask; also used when the tape has
    no book tickers) — the one label implementation btcpipe has.
    """
    ts_sec, yhat = oracle_predictions(tape, config)
    if mid_source == "book" and tape.best_bid_asks is not None and len(tape.best_bid_asks):
        mid_ts, mid = mid_from_best_bid_asks(tape.best_bid_asks, tape.exponent)
    else:
        mid_ts, mid = mid_from_trades(tape.trades, tape.exponent)
    y = forward_log_return(ts_sec, mid_ts, mid, data_end_us=config.end_us)
    lo = config.start_us if start_us is None else start_us
    hi = config.end_us if end_us is None else end_us
    keep = (ts_sec >= lo) & (ts_sec < hi) & np.isfinite(y)
    n = int(keep.sum())
    if n < 2:
        raise DataError(f"fewer than two labelled seconds in [{lo}, {hi}); the span is too short to score")
    scores = score(y[keep], yhat[keep])
    if math.isnan(scores.r2):
        raise DataError("the realised labels are constant; R² is undefined")
    return OracleScore(r2=scores.r2, hit_rate=scores.hit_rate, n=n)
