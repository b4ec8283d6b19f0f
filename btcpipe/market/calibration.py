"""Real vs simulated stylized facts side by side, each with the tolerance a preset must meet.

Tolerances are set for what the shared recordings can tell: each is ~5 minutes of trades (~300 seconds,
~10 000 trades), so an autocorrelation has a standard error of about 1/√300 ≈ 0.06 (more for the
long-memory trade signs), a kurtosis of 30 non-overlapping 10-s returns is barely a figure, and the two
recordings already differ by a factor 2.5 in the dispersion of trades per second. A simulated value
passes when it lies inside the range of the real values widened by the tolerance — a coarse ruler,
honest for the sample, that still rejects the classroom preset (no sign memory, a lag-5 return echo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from btcpipe.market.facts import ACF_LAGS_FLOW, ACF_LAGS_RET, FACTS


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Widening of the real range: ``rel`` × the bound's magnitude plus ``abs`` (in the fact's unit)."""

    rel: float = 0.0
    abs: float = 0.0


TOLERANCES: dict[str, Tolerance] = {
    "trades_per_s_mean": Tolerance(rel=0.3),
    "trades_per_s_cv": Tolerance(rel=0.5),
    "zero_trade_share": Tolerance(abs=0.02),
    "fills_per_order": Tolerance(rel=0.25),
    "order_size_median": Tolerance(rel=0.5),
    "order_size_tail_index": Tolerance(abs=0.5),
    "ret_1s_std": Tolerance(rel=0.3),
    "ret_1s_kurtosis": Tolerance(rel=0.5),
    "ret_10s_std": Tolerance(rel=0.3),
    "ret_10s_kurtosis": Tolerance(rel=1.0),
    **{f"ret_1s_acf_{k}": Tolerance(abs=0.15) for k in ACF_LAGS_RET},
    **{f"sign_acf_{k}": Tolerance(abs=0.15) for k in ACF_LAGS_FLOW},
    **{f"signed_vol_acf_{k}": Tolerance(abs=0.15) for k in ACF_LAGS_FLOW},
    "spread_one_tick_share": Tolerance(abs=0.03),
    "spread_median_ticks": Tolerance(abs=1.0),
    "spread_p90_ticks": Tolerance(abs=1.0),
}


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One fact: the real values (one per recording), the simulated value and whether it passes."""

    key: str
    meaning: str
    unit: str
    real: tuple[float, ...]
    simulated: float
    low: float  # the accepted band; NaN when the fact is not compared
    high: float

    @property
    def compared(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def ok(self) -> bool:
        return (not self.compared) or (self.low <= self.simulated <= self.high)

    def as_dict(self) -> dict[str, object]:
        def fin(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"key": self.key, "meaning": self.meaning, "unit": self.unit, "real": [fin(x) for x in self.real],
                "simulated": fin(self.simulated), "low": fin(self.low), "high": fin(self.high),
                "ok": self.ok if self.compared else None}


def calibration_table(real: Sequence[Mapping[str, float]], simulated: Mapping[str, float]) -> list[CalibrationRow]:
    """One row per fact; real values that are NaN (e.g. no best bid/ask) are left out of the band."""
    rows = []
    for fact in FACTS:
        values = tuple(float(r[fact.key]) for r in real)
        finite = [v for v in values if math.isfinite(v)]
        tol = TOLERANCES.get(fact.key)
        low = high = float("nan")
        if tol is not None and finite:
            lo, hi = min(finite), max(finite)
            low = lo - tol.rel * abs(lo) - tol.abs
            high = hi + tol.rel * abs(hi) + tol.abs
        rows.append(CalibrationRow(fact.key, fact.meaning, fact.unit, values, float(simulated[fact.key]), low, high))
    return rows


def markdown_table(rows: Sequence[CalibrationRow], real_names: Sequence[str], sim_name: str) -> str:
    """The table as GitHub markdown (what docs/SIMULATOR.md holds)."""
    head = ["fact", "unit", *real_names, sim_name, "accepted band", "ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        band = f"{_fmt(r.low)} … {_fmt(r.high)}" if r.compared else "—"
        ok = ("yes" if r.ok else "**no**") if r.compared else "—"
        lines.append("| " + " | ".join([r.meaning, r.unit, *(_fmt(v) for v in r.real), _fmt(r.simulated), band, ok])
                     + " |")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
