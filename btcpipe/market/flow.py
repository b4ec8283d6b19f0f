"""Taker order flow of the simulator: when orders arrive, how big they are and the fills they make.

Order signs are independent fair coin flips, independent of everything else. That is what makes the
oracle exact: the future flow has zero mean whatever is known now (see docs/SIMULATOR.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.time import US_PER_SEC
from btcpipe.market.config import SimConfig

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Taker-order arrivals per second and the intensity each was drawn from."""

    orders_per_sec: I64  # taker orders in each second of the span
    rate: F64  # the intensity (orders/s) each second's count was drawn from
    order_ts: I64  # sorted, strictly inside their second (never on a whole second)
    move_ts: I64  # times of price moves, sorted, strictly inside their second
    regime: F64  # the log activity regime of each second
    regime_before: float  # its value before the first second


def _times_inside_seconds(counts: I64, start_us: int, rng: np.random.Generator) -> I64:
    seconds = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    offsets = rng.integers(1, US_PER_SEC, size=seconds.shape[0], dtype=np.int64)
    return np.sort(start_us + seconds * US_PER_SEC + offsets)


def simulate_arrivals(config: SimConfig, rng: np.random.Generator) -> Arrivals:
    """Order counts per second from a discrete-time Hawkes process modulated by a slow regime."""
    n = config.n_seconds
    phi = regime_phi(config)
    innovation_sd = config.regime_sigma * math.sqrt(1.0 - phi * phi)
    shocks = rng.standard_normal(n + 1)
    bursts = np.where(rng.random(n) < config.burst_prob, rng.exponential(max(config.burst_mean_orders, 1e-12), n), 0.0)
    lognormal_mean_fix = 0.5 * config.regime_sigma**2
    eta, decay, base = config.hawkes_branching, config.hawkes_decay, config.base_order_rate
    regime = config.regime_sigma * float(shocks[0])
    regime_before = regime
    regimes = np.empty(n, dtype=np.float64)
    excitation = base / (1.0 - eta)  # start at the stationary mean rate, not from an empty market
    counts = np.empty(n, dtype=np.int64)
    rates = np.empty(n, dtype=np.float64)
    # One step per second: each second's rate depends on the counts before it.
    for s in range(n):
        regime = phi * regime + innovation_sd * float(shocks[s + 1])
        regimes[s] = regime
        rate = base * math.exp(regime - lognormal_mean_fix) + eta * excitation + float(bursts[s])
        count = int(rng.poisson(rate))
        counts[s] = count
        rates[s] = rate
        excitation = decay * excitation + (1.0 - decay) * count
    moves = 1 + rng.poisson(config.move_rate_base + config.moves_per_order * counts)
    return Arrivals(
        orders_per_sec=counts,
        rate=rates,
        order_ts=_times_inside_seconds(counts, config.start_us, rng),
        move_ts=_times_inside_seconds(moves.astype(np.int64), config.start_us, rng),
        regime=regimes,
        regime_before=regime_before,
    )


def draw_order_sizes(config: SimConfig, n_orders: int, rng: np.random.Generator) -> tuple[Bools, I64]:
    """(is_buy, size in quantity steps) of each taker order."""
    is_buy = rng.random(n_orders) < 0.5
    size_btc = config.order_size_median * np.exp(config.order_size_sigma * rng.standard_normal(n_orders))
    step_btc = config.qty_step_mantissa * 1e-8
    steps = np.maximum(1, np.rint(size_btc / step_btc)).astype(np.int64)
    return is_buy, steps


def draw_level_quantities(config: SimConfig, n_rows: int, rng: np.random.Generator) -> I64:
    """Fresh resting quantities (in steps) for ``n_rows`` side-states of ``depth_levels`` levels."""
    shape = (n_rows, config.depth_levels)
    qty_btc = config.level_qty_median * np.exp(config.level_qty_sigma * rng.standard_normal(shape))
    step_btc = config.qty_step_mantissa * 1e-8
    return np.maximum(1, np.rint(qty_btc / step_btc)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Fills:
    """Fills in execution order: by order, then level from the best outward, then maker queue."""

    order: I64  # index of the taker order
    level: I64  # 0 = best price, k = k ticks worse
    steps: I64  # quantity in steps


def sweep_book(config: SimConfig, order_steps: I64, resting_steps: I64, rng: np.random.Generator) -> Fills:
    """Each order takes the resting levels greedily (cut at the visible depth), one trade per maker hit.

    A level holds several maker orders; a taker that takes a share f of a level trades with
    ``1 + Poisson(extra_makers_per_level × f)`` of them (never more trades than quantity steps).
    """
    cum = np.cumsum(resting_steps, axis=1)
    wanted = np.minimum(order_steps, cum[:, -1])
    before = cum - resting_steps  # taken by the levels in front of each level
    taken = np.clip(wanted[:, None] - before, 0, resting_steps)
    order_idx, level_idx = np.nonzero(taken)  # row-major: by order, then level
    take = taken[order_idx, level_idx]
    share = take / resting_steps[order_idx, level_idx]
    makers = np.minimum(take, 1 + rng.poisson(config.extra_makers_per_level * share))
    # Split each level's take into `makers` parts of at least one step each, at random proportions.
    seg = np.repeat(np.arange(take.shape[0], dtype=np.int64), makers)
    first = np.cumsum(makers) - makers
    weights = rng.exponential(1.0, seg.shape[0])
    cum_w = np.cumsum(weights)
    seg_base = np.concatenate(([0.0], cum_w))[first]
    seg_total = cum_w[first + makers - 1] - seg_base
    frac = (cum_w - seg_base[seg]) / seg_total[seg]
    last_in_seg = np.zeros(seg.shape[0], dtype=np.bool_)
    last_in_seg[first + makers - 1] = True
    frac[last_in_seg] = 1.0
    spare = take - makers  # steps beyond the one each part gets
    cut = np.floor(spare[seg] * frac).astype(np.int64)
    prev_cut = np.concatenate(([0], cut[:-1]))
    prev_cut[first] = 0
    steps = 1 + cut - prev_cut
    return Fills(order=order_idx[seg].astype(np.int64), level=level_idx[seg].astype(np.int64), steps=steps)


@dataclass(frozen=True, slots=True)
class FlowSigns:
    """The order signs of the realistic model and what was expected of them."""

    is_buy: Bools  # per order
    expected_sign: F64  # per order: E[sign | everything before its second] = ρ·m of its second
    imbalance: F64  # per second: m_s, known at the start of second s


def draw_flow_signs(config: SimConfig, arrivals: Arrivals, size_steps: I64, rng: np.random.Generator) -> FlowSigns:
    """Order signs whose bias follows the previous second's order-size imbalance.

    Every order of second s is a buy with probability (1 + ρ·m_s)/2; m_{s+1} is the size-weighted imbalance
    of second s's orders, or ρ·m_s when it had none. Signs are independent of sizes and arrivals given m, so
    E[sign | before s] = ρ·m_s and E[m_{s+1} | before s, arrivals] = ρ·m_s, exactly: what keeps the oracle exact.
    """
    rho = config.sign_persistence
    counts = arrivals.orders_per_sec
    n = counts.shape[0]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    uniform = rng.random(int(counts.sum()))
    size = size_steps.astype(np.float64)
    is_buy = np.zeros(uniform.shape[0], dtype=np.bool_)
    imbalance = np.empty(n, dtype=np.float64)
    m = 0.0
    # One step per second: a second's signs depend on the one before (a few µs a second).
    for s in range(n):
        imbalance[s] = m
        a, c = int(starts[s]), int(counts[s])
        if c == 0:
            m = rho * m
            continue
        buys = uniform[a : a + c] < 0.5 * (1.0 + rho * m)
        is_buy[a : a + c] = buys
        q = size[a : a + c]
        m = float(np.dot(np.where(buys, 1.0, -1.0), q) / q.sum())
    sec = np.repeat(np.arange(n, dtype=np.int64), counts)
    return FlowSigns(is_buy, rho * imbalance[sec], imbalance)


def flow_drift_per_second(config: SimConfig, arrivals: Arrivals, imbalance: F64) -> F64:
    """The flow drift of each second: β·m_s·exp(−γ·regime_s) / E[exp(−γ·regime)]."""
    g = config.flow_drift_regime_exponent
    norm = math.exp(0.5 * g * g * config.regime_sigma**2)
    return np.asarray(config.flow_drift * imbalance * np.exp(-g * arrivals.regime) / norm, dtype=np.float64)


def expected_flow_drift(config: SimConfig, arrivals: Arrivals, imbalance: F64, horizon_s: int = 10) -> F64:
    """E[Σ_{k<horizon} drift_{t+k} | everything known at t] for each second t, in closed form.

    E[m_{t+k}] = ρ^k·m_t, independent of the regime path; regime is a Gaussian AR(1) (coefficient φ,
    stationary std σ), so E[exp(−γ·r_{t+k}) | r_{t−1}] = exp(−γ·φ^{k+1}·r_{t−1} + ½γ²σ²(1 − φ^{2(k+1)})).
    """
    g, sd = config.flow_drift_regime_exponent, config.regime_sigma
    phi = regime_phi(config)
    norm = math.exp(0.5 * g * g * sd * sd)
    r_before = np.concatenate(([arrivals.regime_before], arrivals.regime[:-1]))
    total = np.zeros_like(imbalance)
    for k in range(horizon_s):
        total += config.sign_persistence**k * np.exp(
            -g * phi ** (k + 1) * r_before + 0.5 * g * g * sd * sd * (1.0 - phi ** (2 * (k + 1))))
    return np.asarray(config.flow_drift * imbalance * total / norm, dtype=np.float64)


def regime_phi(config: SimConfig) -> float:
    return float(0.5 ** (1.0 / max(config.regime_halflife_s, 1e-9)))


def surprise_impact_per_second(
    config: SimConfig, arrivals: Arrivals, is_buy: Bools, expected_sign: F64, size_steps: I64
) -> F64:
    """Total surprise impact (log price) of the orders of each second, before it is spread over time."""
    n = config.n_seconds
    sec = (arrivals.order_ts - config.start_us) // US_PER_SEC
    q0 = config.impact_saturation_btc
    size_btc = size_steps * (config.qty_step_mantissa * 1e-8)
    surprise = np.where(is_buy, 1.0, -1.0) - expected_sign
    # The gate depends on the second's order count, which is independent of every sign: the surprise
    # keeps its zero conditional mean.
    scale = config.impact_orders_scale
    gate = 1.0 / (1.0 + arrivals.orders_per_sec / scale) if scale > 0 else np.ones(n, dtype=np.float64)
    per_order = config.surprise_impact * q0 * np.tanh(size_btc / q0) * surprise * gate[sec]
    return np.bincount(sec, weights=per_order, minlength=n).astype(np.float64)


def activity(config: SimConfig, rate: F64) -> F64:
    """Each second's order intensity relative to the stationary mean, clipped to [0.05, 50]."""
    mean_rate = config.base_order_rate / (1.0 - config.hawkes_branching)
    return np.asarray(np.clip(rate / max(mean_rate, 1e-12), 0.05, 50.0), dtype=np.float64)
