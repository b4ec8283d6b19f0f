"""Stylized facts of a market tape: the figures ``btcpipe sim calibrate`` sets side by side for a real
recording and a simulated span, so a preset's claim to realism is a table anyone can re-measure.

Everything is computed from what both sources have: raw trades and best bid/ask updates. A recording does
not say which trades one taker order made, so taker orders are inferred the same way on both sides: a run
of consecutive trades with the same event time and the same aggressor side is one order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import to_float_array
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.labels import asof_values, mid_from_best_bid_asks

F64 = npt.NDArray[np.float64]

ACF_LAGS_RET = (1, 2, 3, 4, 5)
ACF_LAGS_FLOW = (1, 2, 5, 10, 20, 50)


@dataclass(frozen=True, slots=True)
class Fact:
    """One measured figure: its key, what it is and its unit."""

    key: str
    meaning: str
    unit: str


FACTS: tuple[Fact, ...] = (
    Fact("seconds", "span measured (first to last trade)", "s"),
    Fact("trades_per_s_mean", "trades per second, mean", "trades/s"),
    Fact("trades_per_s_cv", "trades per second, std / mean over seconds", "ratio"),
    Fact("zero_trade_share", "share of seconds with no trade", "share"),
    Fact("fills_per_order", "trades per taker order (same time and side)", "trades"),
    Fact("order_size_median", "taker order size, median", "BTC"),
    Fact("order_size_tail_index", "taker order size, Hill tail index of the top 5 %", "α"),
    Fact("ret_1s_std", "1-s mid log return, std", "bp"),
    Fact("ret_1s_kurtosis", "1-s mid log return, kurtosis (normal = 3)", "ratio"),
    Fact("ret_10s_std", "10-s mid log return, std", "bp"),
    Fact("ret_10s_kurtosis", "10-s mid log return (non-overlapping), kurtosis", "ratio"),
    *(Fact(f"ret_1s_acf_{k}", f"autocorrelation of 1-s returns, lag {k}", "corr") for k in ACF_LAGS_RET),
    *(Fact(f"sign_acf_{k}", f"autocorrelation of trade signs, lag {k} trades", "corr") for k in ACF_LAGS_FLOW),
    *(Fact(f"signed_vol_acf_{k}", f"autocorrelation of signed trade volume, lag {k}", "corr")
      for k in ACF_LAGS_FLOW),
    Fact("spread_one_tick_share", "share of seconds whose spread is one tick", "share"),
    Fact("spread_median_ticks", "spread at whole seconds, median", "ticks"),
    Fact("spread_p90_ticks", "spread at whole seconds, 90th percentile", "ticks"),
)
FACT_KEYS: tuple[str, ...] = tuple(f.key for f in FACTS)


def autocorrelation(x: F64, lag: int) -> float:
    """Sample autocorrelation at ``lag`` (one mean and variance for the whole series); NaN if undefined."""
    if lag >= x.shape[0] - 1:
        return float("nan")
    c = x - x.mean()
    var = float(np.dot(c, c))
    return float(np.dot(c[:-lag], c[lag:])) / var if var > 0 else float("nan")


def kurtosis(x: F64) -> float:
    """Pearson kurtosis (3 for a normal); NaN with fewer than 4 values or no variance."""
    if x.shape[0] < 4:
        return float("nan")
    c = x - x.mean()
    m2 = float(np.mean(c * c))
    return float(np.mean(c**4)) / (m2 * m2) if m2 > 0 else float("nan")


def hill_tail_index(x: F64, top_share: float = 0.05) -> float:
    """Hill estimator of the tail index α over the largest ``top_share`` of ``x`` (P(X > x) ~ x^−α)."""
    s = np.sort(x[x > 0])[::-1]
    k = int(s.shape[0] * top_share)
    if k < 5:
        return float("nan")
    logs = np.log(s[: k + 1])
    gap = float(np.mean(logs[:k] - logs[k]))
    return 1.0 / gap if gap > 0 else float("nan")


def stylized_facts(tape: MarketTape, *, tick: float = 0.01) -> dict[str, float]:
    """The ``FACTS`` of ``tape`` (needs trades; the return and spread facts need best bid/ask updates)."""
    trades = tape.trades
    if len(trades) < 10:
        raise DataError(f"{len(trades)} trades: too few to measure stylized facts")
    ts = trades.ts_event
    start = int(ts[0]) - int(ts[0]) % US_PER_SEC + US_PER_SEC  # the first whole second after the first trade
    end = int(ts[-1]) - int(ts[-1]) % US_PER_SEC  # whole seconds only
    n_sec = (end - start) // US_PER_SEC
    if n_sec < 20:
        raise DataError(f"the tape spans {n_sec} whole seconds: too short to measure stylized facts")
    inside = (ts >= start) & (ts < end)
    per_sec = np.bincount((ts[inside] - start) // US_PER_SEC, minlength=n_sec).astype(np.float64)
    out: dict[str, float] = {
        "seconds": float(n_sec),
        "trades_per_s_mean": float(per_sec.mean()),
        "trades_per_s_cv": float(per_sec.std() / per_sec.mean()) if per_sec.mean() > 0 else float("nan"),
        "zero_trade_share": float(np.mean(per_sec == 0)),
    }
    qty = to_float_array(trades.qty, tape.exponent)
    sign = np.where(trades.is_buyer_maker, -1.0, 1.0)
    new_order = np.ones(len(trades), dtype=np.bool_)
    new_order[1:] = (ts[1:] != ts[:-1]) | (trades.is_buyer_maker[1:] != trades.is_buyer_maker[:-1])
    order_id = np.cumsum(new_order) - 1
    order_size = np.bincount(order_id, weights=qty).astype(np.float64)
    out["fills_per_order"] = float(len(trades) / order_size.shape[0])
    out["order_size_median"] = float(np.median(order_size))
    out["order_size_tail_index"] = hill_tail_index(order_size)
    out.update(_return_facts(tape, start, n_sec))
    for k in ACF_LAGS_FLOW:
        out[f"sign_acf_{k}"] = autocorrelation(sign, k)
    signed_vol = sign * qty
    for k in ACF_LAGS_FLOW:
        out[f"signed_vol_acf_{k}"] = autocorrelation(signed_vol, k)
    out.update(_spread_facts(tape, start, n_sec, tick))
    return out


def _seconds(start: int, n_sec: int) -> npt.NDArray[np.int64]:
    return start + np.arange(n_sec + 1, dtype=np.int64) * US_PER_SEC


def _return_facts(tape: MarketTape, start: int, n_sec: int) -> dict[str, float]:
    nan = float("nan")
    keys = ["ret_1s_std", "ret_1s_kurtosis", "ret_10s_std", "ret_10s_kurtosis", *(
        f"ret_1s_acf_{k}" for k in ACF_LAGS_RET)]
    if tape.best_bid_asks is None or len(tape.best_bid_asks) < 2:
        return dict.fromkeys(keys, nan)
    mid_ts, mid = mid_from_best_bid_asks(tape.best_bid_asks, tape.exponent)
    at = asof_values(mid_ts, np.log(mid), _seconds(start, n_sec))
    r1 = np.diff(at)
    r1 = r1[np.isfinite(r1)]
    r10_overlap = at[10:] - at[:-10]
    r10_overlap = r10_overlap[np.isfinite(r10_overlap)]
    r10 = np.diff(at[::10])
    r10 = r10[np.isfinite(r10)]
    bp = 1e4
    out = {
        "ret_1s_std": float(r1.std() * bp),
        "ret_1s_kurtosis": kurtosis(r1),
        "ret_10s_std": float(r10_overlap.std() * bp),
        "ret_10s_kurtosis": kurtosis(r10),
    }
    for k in ACF_LAGS_RET:
        out[f"ret_1s_acf_{k}"] = autocorrelation(r1, k)
    return out


def _spread_facts(tape: MarketTape, start: int, n_sec: int, tick: float) -> dict[str, float]:
    nan = float("nan")
    bba = tape.best_bid_asks
    if bba is None or len(bba) == 0:
        return {"spread_one_tick_share": nan, "spread_median_ticks": nan, "spread_p90_ticks": nan}
    spread = to_float_array(bba.ask_price - bba.bid_price, tape.exponent) / tick
    at = asof_values(bba.ts_event, spread, _seconds(start, n_sec))
    at = at[np.isfinite(at)]
    return {
        "spread_one_tick_share": float(np.mean(np.rint(at) == 1)),
        "spread_median_ticks": float(np.median(at)),
        "spread_p90_ticks": float(np.percentile(at, 90)),
    }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
