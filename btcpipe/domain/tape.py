"""Columnar market history: what the simulator produces, a recording holds and the local exchange serves.

Arrays, not objects, so a day of 1.5 M trades is cheap to build, slice and serve. Prices and quantities
are int64 mantissas at ``STD_EXPONENT`` (exact); ``to_float_array`` gives float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import STD_EXPONENT
from btcpipe.domain.records import DepthSnapshot

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TradeTape:
    """Raw trades sorted by id (ids contiguous unless the source has gaps)."""

    id: I64
    ts_event: I64
    price: I64
    qty: I64
    is_buyer_maker: Bools
    # The taker order each fill belongs to, when known (the simulator knows; a recording knows when the
    # stream carried the buyer/seller order ids ``b``/``a``).
    taker_order: I64 | None = None
    ts_recv: I64 | None = None
    # The stream's event time ``E`` of each fill (µs), when recorded; a replay sends it unchanged.
    event_time: I64 | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def slice(self, start: int, stop: int) -> TradeTape:
        return TradeTape(
            self.id[start:stop],
            self.ts_event[start:stop],
            self.price[start:stop],
            self.qty[start:stop],
            self.is_buyer_maker[start:stop],
            None if self.taker_order is None else self.taker_order[start:stop],
            None if self.ts_recv is None else self.ts_recv[start:stop],
            None if self.event_time is None else self.event_time[start:stop],
        )


@dataclass(frozen=True, slots=True)
class AggTradeTape:
    """Aggregated trades as columns: the fills of one taker order at one price, with their trade id range."""

    agg_id: I64
    ts_event: I64
    price: I64
    qty: I64
    first_trade_id: I64
    last_trade_id: I64
    is_buyer_maker: Bools

    def __len__(self) -> int:
        return int(self.agg_id.shape[0])


@dataclass(frozen=True, slots=True)
class BestBidAskTape:
    """Best bid/ask updates in update-id order."""

    ts_event: I64
    update_id: I64
    bid_price: I64
    bid_qty: I64
    ask_price: I64
    ask_qty: I64
    ts_recv: I64 | None = None

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])


@dataclass(frozen=True, slots=True)
class DepthTape:
    """Depth diffs; the levels of diff i are ``level_*[offsets[i]:offsets[i+1]]``.

    ``level_is_ask`` tells the side; a quantity of 0 removes the level.
    """

    ts_event: I64
    first_update_id: I64
    last_update_id: I64
    offsets: I64  # length n + 1
    level_is_ask: Bools
    level_price: I64
    level_qty: I64
    ts_recv: I64 | None = None

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])


@dataclass(frozen=True, slots=True)
class MarketTape:
    """Everything one symbol's market produced over a span."""

    symbol: str
    trades: TradeTape
    best_bid_asks: BestBidAskTape | None = None
    depth: DepthTape | None = None
    # The book just before the first depth diff (its last_update_id = first diff's U - 1), when known.
    initial_book: DepthSnapshot | None = None
    exponent: int = STD_EXPONENT

    @property
    def start_us(self) -> int:
        return int(self.trades.ts_event[0]) if len(self.trades) else 0

    @property
    def end_us(self) -> int:
        return int(self.trades.ts_event[-1]) if len(self.trades) else 0


def aggregate_trades(trades: TradeTape, first_agg_id: int = 1) -> AggTradeTape:
    """Group raw trades into aggTrades the way Binance does: the fills of one taker order at one price.

    Without taker order ids (a recording), consecutive fills with the same time, side and price are
    taken as one taker order, which is what Binance's aggregation yields for them.
    """
    n = len(trades)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return AggTradeTape(empty, empty, empty, empty, empty, empty, np.zeros(0, dtype=np.bool_))
    new_group = np.ones(n, dtype=np.bool_)
    same_price = trades.price[1:] == trades.price[:-1]
    if trades.taker_order is not None:
        same_order = trades.taker_order[1:] == trades.taker_order[:-1]
    else:
        same_order = (trades.ts_event[1:] == trades.ts_event[:-1]) & (
            trades.is_buyer_maker[1:] == trades.is_buyer_maker[:-1]
        )
    contiguous = trades.id[1:] == trades.id[:-1] + 1
    new_group[1:] = ~(same_price & same_order & contiguous)
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], n) - 1
    qty = np.add.reduceat(trades.qty, starts)
    return AggTradeTape(
        agg_id=np.arange(first_agg_id, first_agg_id + starts.shape[0], dtype=np.int64),
        ts_event=trades.ts_event[starts].copy(),
        price=trades.price[starts].copy(),
        qty=qty.astype(np.int64),
        first_trade_id=trades.id[starts].copy(),
        last_trade_id=trades.id[ends].copy(),
        is_buyer_maker=trades.is_buyer_maker[starts].copy(),
    )
