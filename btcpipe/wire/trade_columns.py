"""Columnar trade batches on the bus: ``MarketTradeColumns`` payloads ↔ numpy arrays.

A trade batch is one symbol's trades as columns (``TradeColumns``): ids, times, exact mantissas at one
price and one quantity exponent, and buyer-maker flags. On the wire it is standard Avro (the
``MarketTradeColumns`` schema, single-object encoding), so fastavro or any Avro reader can read it;
btcpipe reads it with a hand-written numpy reader (``trade_batches``) because fastavro materialises one
Python int per value (about 0.3 µs each), which is most of a processor's budget at 100 000 trades/s.

This module holds the columns, the encoders and the exact (fastavro) decoder of one payload, which
also reads the older ``MarketTradeBatch``/``MarketTrade`` messages; ``btcpipe.wire.trade_batches`` reads
a whole poll at once. Floats come from ``btcpipe.domain.decimal.to_float_array``, the one conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import MAX_EXPONENT, STD_EXPONENT, rescale, to_float_array
from btcpipe.domain.errors import MalformedRecordError, PayloadDecodeError
from btcpipe.domain.records import Trade
from btcpipe.wire import avro_wire as wire
from btcpipe.wire.avro_varint import append_long, encode_longs

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

COLUMNS = ("id", "ts_event", "ts_recv", "price_mantissa", "qty_mantissa")
# From this many trades the numpy encoder beats fastavro (whose cost is ~0.5 µs per value here).
_NUMPY_ENCODE_FROM = 400


@dataclass(frozen=True, slots=True, eq=False)
class TradeColumns:
    """Trades of one symbol as columns, row i = trade i; prices/quantities exact at one exponent each."""

    symbol: str
    id: I64
    ts_event: I64
    ts_recv: I64
    price_mantissa: I64
    qty_mantissa: I64
    is_buyer_maker: Bools
    price_exponent: int = STD_EXPONENT
    qty_exponent: int = STD_EXPONENT

    def __post_init__(self) -> None:
        _check_exponents(self.price_exponent, self.qty_exponent)
        n = self.id.shape[0]
        if any(getattr(self, c).shape != (n,) for c in (*COLUMNS, "is_buyer_maker")):
            raise MalformedRecordError("trade columns must be one-dimensional and of equal length")

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @property
    def price(self) -> F64:
        return to_float_array(self.price_mantissa, self.price_exponent)

    @property
    def qty(self) -> F64:
        return to_float_array(self.qty_mantissa, self.qty_exponent)

    def to_trades(self) -> list[Trade]:
        s, pe, qe = self.symbol, self.price_exponent, self.qty_exponent
        return [
            Trade(s, i, t, p, q, b, pe, qe, r)
            for i, t, p, q, b, r in zip(
                self.id.tolist(), self.ts_event.tolist(), self.price_mantissa.tolist(),
                self.qty_mantissa.tolist(), self.is_buyer_maker.tolist(), self.ts_recv.tolist(), strict=True,
            )
        ]

    @classmethod
    def from_trades(cls, trades: Sequence[Trade]) -> TradeColumns:
        """One symbol; mixed exponents are rescaled exactly to the smallest one."""
        if not trades:
            raise MalformedRecordError("a trade batch needs at least one trade")
        symbol = trades[0].symbol
        if any(t.symbol != symbol for t in trades):
            raise MalformedRecordError(f"a trade batch holds one symbol: {symbol} mixed with others")
        pe = min(t.price_exponent for t in trades)
        qe = min(t.qty_exponent for t in trades)
        try:
            return cls(
                symbol,
                np.array([t.id for t in trades], dtype=np.int64),
                np.array([t.ts_event for t in trades], dtype=np.int64),
                np.array([t.ts_recv for t in trades], dtype=np.int64),
                np.array([rescale(t.price_mantissa, t.price_exponent, pe) for t in trades], dtype=np.int64),
                np.array([rescale(t.qty_mantissa, t.qty_exponent, qe) for t in trades], dtype=np.int64),
                np.array([t.is_buyer_maker for t in trades], dtype=np.bool_),
                pe,
                qe,
            )
        except OverflowError as exc:
            raise MalformedRecordError(f"a trade value does not fit int64: {exc}") from exc


# --- encoding ----------------------------------------------------------------------------------------
def _check_exponents(price_exponent: int, qty_exponent: int) -> None:
    if abs(price_exponent) > MAX_EXPONENT or abs(qty_exponent) > MAX_EXPONENT:
        raise MalformedRecordError(f"exponents {price_exponent}, {qty_exponent} outside ±{MAX_EXPONENT}")


def _prefix(symbol: str, price_exponent: int, qty_exponent: int) -> bytearray:
    _check_exponents(price_exponent, qty_exponent)
    out = bytearray(wire.MARKET_TRADE_COLUMNS.header)
    name = symbol.encode("utf-8")
    append_long(out, len(name))
    out += name
    append_long(out, price_exponent)
    append_long(out, qty_exponent)
    return out


def encode_trade_columns(columns: TradeColumns) -> bytes:
    """One ``MarketTradeColumns`` payload (standard Avro: each array one block, then the end marker)."""
    n = len(columns)
    if n == 0:
        raise MalformedRecordError("a trade batch needs at least one trade")
    if n < _NUMPY_ENCODE_FROM:
        return _encode_record(columns.symbol, columns.price_exponent, columns.qty_exponent,
                              [getattr(columns, c).tolist() for c in COLUMNS],
                              np.ascontiguousarray(columns.is_buyer_maker, dtype=np.bool_).view(np.uint8).tobytes())
    out = _prefix(columns.symbol, columns.price_exponent, columns.qty_exponent)
    for c in COLUMNS:
        append_long(out, n)
        out += encode_longs(getattr(columns, c))
        out.append(0)
    append_long(out, n)
    out += np.ascontiguousarray(columns.is_buyer_maker, dtype=np.bool_).view(np.uint8).tobytes()
    return bytes(out)


def _encode_record(symbol: str, price_exponent: int, qty_exponent: int, columns: list[list[int]],
                   is_buyer_maker: bytes) -> bytes:
    record: dict[str, object] = dict(zip(COLUMNS, columns, strict=True))
    record.update(symbol=symbol, price_exponent=price_exponent, qty_exponent=qty_exponent,
                  is_buyer_maker=is_buyer_maker)
    return wire.write(wire.MARKET_TRADE_COLUMNS, record)


def encode_trade_list(trades: Sequence[Trade]) -> bytes:
    """``MarketTradeColumns`` straight from trades of one symbol and one exponent pair (no numpy)."""
    t0 = trades[0]
    _check_exponents(t0.price_exponent, t0.qty_exponent)
    return _encode_record(
        t0.symbol, t0.price_exponent, t0.qty_exponent,
        [[t.id for t in trades], [t.ts_event for t in trades], [t.ts_recv for t in trades],
         [t.price_mantissa for t in trades], [t.qty_mantissa for t in trades]],
        bytes(1 if t.is_buyer_maker else 0 for t in trades),
    )


# --- decoding one payload exactly (fastavro) ----------------------------------------------------------
def make_columns(symbol: str, columns: list[I64], ibm: Bools, price_exponent: int, qty_exponent: int) -> TradeColumns:
    ids, ts, recv, pm, qm = columns
    return TradeColumns(symbol, ids, ts, recv, pm, qm, ibm, price_exponent, qty_exponent)


def _columns_from_record(record: dict[str, object]) -> TradeColumns:
    flags = record["is_buyer_maker"]
    assert isinstance(flags, bytes)
    ibm = np.frombuffer(flags, dtype=np.uint8)
    if ibm.size and int(ibm.max()) > 1:
        raise PayloadDecodeError("corrupt MarketTradeColumns payload: buyer-maker flags other than 0/1")
    try:
        arrays = [np.array(record[c], dtype=np.int64) for c in COLUMNS]
        symbol, pe, qe = record["symbol"], record["price_exponent"], record["qty_exponent"]
        assert isinstance(symbol, str)
        assert isinstance(pe, int)
        assert isinstance(qe, int)
        return make_columns(symbol, arrays, ibm.astype(np.bool_), pe, qe)
    except MalformedRecordError as exc:
        raise PayloadDecodeError(f"corrupt MarketTradeColumns payload: {exc}") from exc


def decode_trade_list(payload: bytes) -> list[Trade]:
    """A ``MarketTradeColumns`` payload straight to ``Trade`` records via fastavro (no numpy in between:
    the cheaper way for the small payloads of a consumer that wants records)."""
    _, record = wire.read(payload, (wire.MARKET_TRADE_COLUMNS,))
    symbol, pe, qe, flags = record["symbol"], record["price_exponent"], record["qty_exponent"], record["is_buyer_maker"]
    columns = [record[c] for c in COLUMNS]
    if any(len(c) != len(flags) for c in columns) or any(f > 1 for f in flags):
        raise PayloadDecodeError("corrupt MarketTradeColumns payload: columns of different lengths or bad flags")
    if abs(pe) > MAX_EXPONENT or abs(qe) > MAX_EXPONENT:
        raise PayloadDecodeError(f"corrupt MarketTradeColumns payload: exponents beyond ±{MAX_EXPONENT}")
    ids, ts, recv, pm, qm = columns
    return [Trade(symbol, i, t, p, q, f == 1, pe, qe, r)
            for i, t, r, p, q, f in zip(ids, ts, recv, pm, qm, flags, strict=True)]


def decode_trade_columns_exact(payload: bytes) -> TradeColumns:
    """The trades of one trade payload (any trade schema, any layout Avro allows) as columns, via fastavro."""
    schema, record = wire.read(payload, wire.TRADE_SCHEMAS)
    if schema is wire.MARKET_TRADE_COLUMNS:
        return _columns_from_record(record)
    if schema is wire.MARKET_TRADE:
        items, symbol = [record], record["symbol"]
    else:
        items, symbol = record["trades"], record["symbol"]
        if not items:
            raise PayloadDecodeError("corrupt MarketTradeBatch payload: no trades")
    assert isinstance(symbol, str)
    try:
        return TradeColumns.from_trades([
            Trade(symbol, i["id"], i["ts_event"], i["price_mantissa"], i["qty_mantissa"], i["is_buyer_maker"],
                  i["price_exponent"], i["qty_exponent"], i["ts_recv"])
            for i in items
        ])
    except MalformedRecordError as exc:
        raise PayloadDecodeError(f"corrupt {schema.name} payload: {exc}") from exc
