"""The float arrays the feature arithmetic reads, and their construction from tapes.

Floats come from exact mantissas through ``btcpipe.domain.decimal.to_float_array`` — the same
division the live path's ``Trade.price`` performs — so batch and stream see bit-identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import to_float_array
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import BestBidAskTape, TradeTape

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TradeArrays:
    """Raw trades in trade-id order: time (µs), price, base quantity, taker side."""

    ts_event: I64
    price: F64
    qty: F64
    is_buyer_maker: Bools

    def __post_init__(self) -> None:
        n = self.ts_event.shape[0]
        if not (self.price.shape[0] == self.qty.shape[0] == self.is_buyer_maker.shape[0] == n):
            raise DataError("trade columns have different lengths")

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])

    @classmethod
    def from_tape(cls, tape: TradeTape, exponent: int | None = None) -> TradeArrays:
        from btcpipe.domain.decimal import STD_EXPONENT

        exp = STD_EXPONENT if exponent is None else exponent
        return cls(
            np.ascontiguousarray(tape.ts_event, dtype=np.int64),
            to_float_array(tape.price, exp),
            to_float_array(tape.qty, exp),
            np.ascontiguousarray(tape.is_buyer_maker, dtype=np.bool_),
        )

    def between(self, start_us: int, end_us: int) -> TradeArrays:
        """Trades with ``start_us <= ts_event < end_us`` (the input is in time order)."""
        lo, hi = np.searchsorted(self.ts_event, [start_us, end_us], side="left")
        return TradeArrays(self.ts_event[lo:hi], self.price[lo:hi], self.qty[lo:hi], self.is_buyer_maker[lo:hi])

    def check_time_order(self) -> None:
        if len(self) > 1 and bool(np.any(self.ts_event[1:] < self.ts_event[:-1])):
            bad = int(np.flatnonzero(self.ts_event[1:] < self.ts_event[:-1])[0]) + 1
            raise DataError(f"trade {bad} goes back in time ({self.ts_event[bad]} < {self.ts_event[bad - 1]})")


@dataclass(frozen=True, slots=True)
class BestBidAskArrays:
    """Best bid/ask updates in update order: time (µs), bid and ask prices."""

    ts_event: I64
    bid: F64
    ask: F64

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])

    @classmethod
    def from_tape(cls, tape: BestBidAskTape, exponent: int | None = None) -> BestBidAskArrays:
        from btcpipe.domain.decimal import STD_EXPONENT

        exp = STD_EXPONENT if exponent is None else exponent
        return cls(
            np.ascontiguousarray(tape.ts_event, dtype=np.int64),
            to_float_array(tape.bid_price, exp),
            to_float_array(tape.ask_price, exp),
        )

    def check_time_order(self) -> None:
        if len(self) > 1 and bool(np.any(self.ts_event[1:] < self.ts_event[:-1])):
            raise DataError("best bid/ask updates go back in time")
