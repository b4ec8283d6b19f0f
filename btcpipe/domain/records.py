"""Market records as the live path carries them: one event at a time, prices exact.

Prices and quantities are mantissas at a per-record exponent (SBE carries them this way; JSON and
REST strings are parsed to ``STD_EXPONENT``). ``price``/``qty`` give float64 through
``btcpipe.domain.decimal.to_float``, the one conversion every path shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from btcpipe.domain.decimal import STD_EXPONENT, to_float
from btcpipe.domain.errors import MalformedRecordError

# Ids, update ids and µs times are non-negative int64 everywhere btcpipe stores them (bus, lake, arrays).
INT64_MAX = 2**63 - 1


def check_uint63(value: int, what: str) -> int:
    """``value`` if it is a non-negative int64 (an id, an update id, a µs time), else ``MalformedRecordError``."""
    if not 0 <= value <= INT64_MAX:
        raise MalformedRecordError(f"{what} {value} is outside 0..2^63-1")
    return value


@dataclass(frozen=True, slots=True)
class Trade:
    """One raw trade (a fill), as on the ``<symbol>@trade`` stream and in the trades dumps."""

    symbol: str
    id: int
    ts_event: int  # µs, the trade (transact) time
    price_mantissa: int
    qty_mantissa: int
    is_buyer_maker: bool
    price_exponent: int = STD_EXPONENT
    qty_exponent: int = STD_EXPONENT
    ts_recv: int = 0  # µs, when btcpipe received it (0 = unknown)

    @property
    def price(self) -> float:
        return to_float(self.price_mantissa, self.price_exponent)

    @property
    def qty(self) -> float:
        return to_float(self.qty_mantissa, self.qty_exponent)


@dataclass(frozen=True, slots=True)
class BestBidAsk:
    """Top of book (SBE ``bestBidAsk`` / JSON ``bookTicker``)."""

    symbol: str
    ts_event: int
    update_id: int
    bid_price_mantissa: int
    bid_qty_mantissa: int
    ask_price_mantissa: int
    ask_qty_mantissa: int
    price_exponent: int = STD_EXPONENT
    qty_exponent: int = STD_EXPONENT
    ts_recv: int = 0

    @property
    def bid_price(self) -> float:
        return to_float(self.bid_price_mantissa, self.price_exponent)

    @property
    def ask_price(self) -> float:
        return to_float(self.ask_price_mantissa, self.price_exponent)

    @property
    def mid(self) -> float:
        return (self.bid_price + self.ask_price) / 2.0


# A price level: (price mantissa, qty mantissa); qty 0 removes the level in a diff.
Level = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """An order-book diff (SBE ``depth`` / JSON ``depthUpdate``); ``first_update_id``/``last_update_id`` are U/u."""

    symbol: str
    ts_event: int
    first_update_id: int
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    price_exponent: int = STD_EXPONENT
    qty_exponent: int = STD_EXPONENT
    ts_recv: int = 0


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A full or partial book at ``last_update_id`` (REST ``/depth``, SBE ``depth20``)."""

    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_event: int = 0
    price_exponent: int = STD_EXPONENT
    qty_exponent: int = STD_EXPONENT
    ts_recv: int = 0


@dataclass(frozen=True, slots=True)
class TradeGap:
    """Trade ids ``first_missing..last_missing`` (inclusive) were not received on the stream."""

    symbol: str
    first_missing: int
    last_missing: int
    ts_detected: int
    filled: bool = False


@dataclass(frozen=True, slots=True)
class Kline:
    """One candlestick as Binance's REST klines give it (prices kept as decimal strings)."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    n_trades: int
    taker_buy_base: str
    taker_buy_quote: str
    extra: dict[str, str] = field(default_factory=dict)
