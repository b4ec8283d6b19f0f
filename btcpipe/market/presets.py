"""Named simulator presets: ``classroom`` (an easy market whose oracle is linear and explains ~16 % of the
label) and ``realistic`` (calibrated on real BTCUSDT recordings: order-flow memory, heavy-tailed sizes,
a small, partly non-linear predictable part — oracle R² a few percent). ``docs/SIMULATOR.md`` has the
model and the calibration table."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from btcpipe.domain.errors import ConfigError
from btcpipe.market.config import SimConfig

DEFAULT_PRESET = "realistic"

_REALISTIC: dict[str, Any] = {
    # busier, burstier arrivals; more fills per order; smaller, heavier-tailed orders
    "base_order_rate": 2.6,
    "hawkes_branching": 0.75,
    "regime_sigma": 0.8,
    "regime_halflife_s": 1800.0,
    "burst_prob": 0.004,
    "burst_mean_orders": 60.0,
    "order_size_median": 0.003,
    "order_size_sigma": 2.0,
    "extra_makers_per_level": 3.5,
    "spread_wide_prob": 0.01,
    # the classroom's linear flow signal is off ...
    "alpha_tvi_1s": 0.0,
    "lambda_net_5s": 0.0,
    "gamma_net_now": 0.0,
    # ... replaced by flow memory, a flow drift gated by the activity regime (the predictable part) and
    # the impact of the flow's surprise, saturating in order size and weaker per order in busy seconds
    "sign_persistence": 0.8,
    "flow_drift": 1.0e-5,
    "flow_drift_regime_exponent": 1.0,
    "surprise_impact": 4.0e-3,
    "impact_saturation_btc": 0.3,
    "impact_orders_scale": 3.0,
    "impact_lag1_share": 0.0,
    "impact_lag5_share": 0.0,
    "sigma_per_sec": 6.5e-5,
}

PRESETS: dict[str, dict[str, Any]] = {"classroom": {}, "realistic": _REALISTIC}


def preset_config(name: str, **fields: Any) -> SimConfig:
    """The ``SimConfig`` of preset ``name`` with ``fields`` (seed, start_us, duration_s, …) on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown simulator preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(SimConfig(), **{**PRESETS[name], **fields})
