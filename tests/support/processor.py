"""Helpers for the processor tests (no tests here): tapes, hand-made trades, the batch rows to compare with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.records import Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, floor_sec
from btcpipe.features.batch import FeatureFrame, build_features
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import FeatureParams
from btcpipe.market.simulator import SimConfig, simulate

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SEC = US_PER_SEC
PARAMS = FeatureParams(0.05)


def sim_tape(symbol: str = "BTCUSDT", *, seed: int = 3, duration_s: int = 300, start_us: int = T0) -> MarketTape:
    return simulate(SimConfig(symbol=symbol, seed=seed, duration_s=duration_s, start_us=start_us))


def trade(tid: int, ts: int, price: float = 60_000.0, qty: float = 0.01, *, buyer_maker: bool = False,
          symbol: str = "BTCUSDT") -> Trade:
    return Trade(symbol, tid, ts, round(price * 1e8), round(qty * 1e8), buyer_maker)


def batch_frame(tape: MarketTape, params: FeatureParams, *, bars_from: int, end_us: int) -> FeatureFrame:
    """The batch builder's rows ``bars_from + 1 s … end_us − 1 s`` with history known from ``bars_from``."""
    with_book = params.with_spread and tape.best_bid_asks is not None
    best_bid_ask = BestBidAskArrays.from_tape(tape.best_bid_asks) if with_book else None
    return build_features(TradeArrays.from_tape(tape.trades), params, start_us=bars_from + SEC, end_us=end_us,
                          history_start_us=bars_from, best_bid_ask=best_bid_ask)


def last_trade_row(tape: MarketTape) -> int:
    """The row that describes the second of the tape's last trade."""
    return floor_sec(int(tape.trades.ts_event[-1])) + SEC


def same(a: Iterable[float], b: Iterable[float]) -> bool:
    x, y = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    return bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))


def mismatches(rows: Mapping[int, tuple[float, ...]], frame: FeatureFrame) -> list[int]:
    """Seconds of ``frame`` whose online row is missing or differs in any value."""
    return [int(t) for i, t in enumerate(frame.ts_sec.tolist())
            if t not in rows or not same(rows[t], frame.columns[:, i])]


def collect(into: dict[int, tuple[float, ...]]):  # type: ignore[no-untyped-def]
    def on_rows(vectors: list[FeatureVector1s]) -> None:
        for v in vectors:
            into[v.ts_sec] = v.values

    return on_rows
