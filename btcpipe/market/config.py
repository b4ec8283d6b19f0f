"""Parameters of the market simulator, with their meaning and defaults in one place.

The model itself is described in ``docs/SIMULATOR.md``. The defaults below are the ``classroom`` preset: a
day that looks like BTCUSDT in 2024 at the scale that matters to btcpipe (≈2 M trades a day, a few dollars
of mid movement a second, bursts of hundreds of trades a second, quiet spells) whose known, linear
predictive component explains roughly 15 % of the variance of the 10-second label. The ``realistic``
preset (``btcpipe.market.presets``) overrides some of them and turns on order-flow memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.time import US_PER_SEC

# 2024-01-01T00:00:00Z
DEFAULT_START_US = 1_704_067_200 * US_PER_SEC


# Coefficients that may be negative (a negative one models reversal instead of momentum).
_SIGNED = frozenset({"alpha_tvi_1s", "lambda_net_5s", "gamma_net_now", "flow_drift"})
# Shares, each in [0, 1].
_SHARES = ("sign_persistence", "impact_lag1_share", "impact_lag5_share")


MAX_SIM_S = 7 * 86_400  # the longest simulated span


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The market simulator's parameters: span, order flow, impact, volatility, book and seed."""

    symbol: str = "BTCUSDT"
    seed: int = 0
    start_us: int = DEFAULT_START_US  # must fall on a whole second
    duration_s: int = 3600
    initial_price: float = 60_000.0

    # Exchange grid (mantissas at exponent -8): price tick 0.01, quantity step 0.00001.
    tick_mantissa: int = 1_000_000
    qty_step_mantissa: int = 1_000
    first_trade_id: int = 3_000_000_000
    first_update_id: int = 40_000_000_000  # the initial book's lastUpdateId is one less

    # Arrivals of taker orders: a discrete-time Hawkes process on a 1-second grid.
    # rate_s = base_order_rate * regime_s + hawkes_branching * excitation_s + burst_s, where excitation
    # is the past order counts smoothed by an exponential kernel (weight ∝ hawkes_decay^(lag-1)).
    base_order_rate: float = 3.6  # orders/s at a regime of 1 without excitation
    hawkes_branching: float = 0.7  # expected orders triggered by one order (< 1: stationary)
    hawkes_decay: float = 0.6  # kernel persistence per second (mean lag 1/(1-decay) s)
    regime_sigma: float = 0.6  # std of the log activity regime (slow quiet/busy spells)
    regime_halflife_s: float = 600.0
    burst_prob: float = 0.003  # chance per second of an exogenous burst
    burst_mean_orders: float = 40.0  # its mean size (exponential), in orders

    # Taker orders: size log-normal; each sweeps the book greedily and is cut at the visible depth.
    order_size_median: float = 0.005  # BTC
    order_size_sigma: float = 1.5

    # The book: depth_levels consecutive ticks a side from the best, quantities log-normal; makers
    # refill a side right after each taker order and re-quote both sides on every price move.
    depth_levels: int = 5
    level_qty_median: float = 0.04  # BTC
    level_qty_sigma: float = 1.0
    extra_makers_per_level: float = 2.0  # trades at a level = 1 + Poisson(this × share of level taken)
    spread_wide_prob: float = 0.08  # share of quotes with a spread wider than one tick
    spread_wide_mean_ticks: float = 4.0

    # Price moves: 1 + Poisson(move_rate_base + moves_per_order × orders in the second) per second.
    move_rate_base: float = 1.0
    moves_per_order: float = 0.3

    # Log-mid increment over second [s, s+1) (see docs/SIMULATOR.md):
    #   alpha_tvi_1s · tvi over [s−1, s) + lambda_net_5s · net over [s−5, s−4)
    #   + gamma_net_now · net over [s, s+1) + sigma_per_sec · activity^vol_activity_exponent · N(0, 1)
    # net = taker buy − taker sell base volume (BTC); tvi = net / (buy + sell), 0 without trades.
    alpha_tvi_1s: float = 5e-5
    lambda_net_5s: float = 4.5e-4  # per BTC
    gamma_net_now: float = 2.0e-4  # per BTC
    sigma_per_sec: float = 5.5e-5
    vol_activity_exponent: float = 0.5

    # Order-flow memory, a flow drift and surprise impact (the realistic preset; 0 = off, the classroom model).
    # Every order of second s is a buy with probability (1 + ρ·m_s)/2, ρ = sign_persistence, where m_s is the
    # imbalance (buy − sell)/(buy + sell) of the order sizes of second s−1 (ρ·m_{s−1} if it had no order).
    # So E[sign | before s] = ρ·m_s and E[m_{s+1} | before s] = ρ·m_s exactly.
    # The flow drift moves the log price over second s by
    #   flow_drift · m_s · exp(−flow_drift_regime_exponent · regime_s) / E[exp(−exponent · regime)]
    # (the order flow's pressure, stronger in quiet regimes): the predictable part of the label.
    # The surprise of order i is sign_i − ρ·m_s. Each order moves the log price by
    #   surprise_impact · q0·tanh(size / q0) · surprise / (1 + orders in its second / impact_orders_scale)
    # with q0 = impact_saturation_btc (saturating in size, and each order weaker when the second is busy;
    # impact_orders_scale 0 = no such gate), spread over time: a share in its own second,
    # impact_lag1_share one second later and impact_lag5_share five seconds later.
    sign_persistence: float = 0.0
    flow_drift: float = 0.0  # log price per second at imbalance 1 (signed: negative = reversal)
    flow_drift_regime_exponent: float = 0.0
    surprise_impact: float = 0.0  # log-price per BTC of surprise (before saturation and the activity gate)
    impact_saturation_btc: float = 0.05
    impact_orders_scale: float = 0.0
    impact_lag1_share: float = 0.0
    impact_lag5_share: float = 0.0

    # Depth diffs aggregate the book's updates per window, like <symbol>@depth@100ms; 0 = every update.
    depth_interval_us: int = 100_000

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 < self.duration_s <= MAX_SIM_S:
            # Bounded before the first array is allocated: a tape grows ~50,000 trades an hour.
            problems.append(f"duration_s must be 1..{MAX_SIM_S} (7 days), got {self.duration_s}")
        if self.start_us % US_PER_SEC:
            problems.append(f"start_us must fall on a whole second, got {self.start_us}")
        if not (self.initial_price > 0 and math.isfinite(self.initial_price)):
            problems.append(f"initial_price must be a positive number, got {self.initial_price}")
        if self.tick_mantissa <= 0 or self.qty_step_mantissa <= 0:
            problems.append("tick_mantissa and qty_step_mantissa must be positive")
        if not 0.0 <= self.hawkes_branching < 1.0:
            problems.append(f"hawkes_branching must be in [0, 1), got {self.hawkes_branching}")
        if not 0.0 <= self.hawkes_decay < 1.0:
            problems.append(f"hawkes_decay must be in [0, 1), got {self.hawkes_decay}")
        if not 0.0 <= self.burst_prob <= 1.0 or not 0.0 <= self.spread_wide_prob <= 1.0:
            problems.append("burst_prob and spread_wide_prob must be probabilities")
        if self.depth_levels < 1:
            problems.append(f"depth_levels must be at least 1, got {self.depth_levels}")
        if self.first_trade_id < 0 or self.first_update_id < 1:
            problems.append("first_trade_id must be >= 0 and first_update_id >= 1")
        for name in _SHARES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.impact_lag1_share + self.impact_lag5_share > 1.0:
            problems.append("impact_lag1_share + impact_lag5_share must not exceed 1")
        if self.impact_saturation_btc <= 0:
            problems.append(f"impact_saturation_btc must be positive, got {self.impact_saturation_btc}")
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, float):
                continue
            if not math.isfinite(value) or (value < 0 and f.name not in _SIGNED):
                problems.append(f"{f.name} must be finite (and non-negative unless a coefficient), got {value}")
        if problems:
            raise ConfigError("invalid simulator config: " + "; ".join(problems))

    @property
    def has_flow_memory(self) -> bool:
        """Signs, drift or impact of the realistic model are on (the classroom path otherwise)."""
        return self.sign_persistence != 0.0 or self.flow_drift != 0.0 or self.surprise_impact != 0.0

    @property
    def n_seconds(self) -> int:
        return self.duration_s

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_s * US_PER_SEC
