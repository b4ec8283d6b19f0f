"""Arrow schemas of the lake's tables, and exact conversions between decimals and mantissas.

Bronze keeps prices and quantities exact as ``decimal128(·, 8)`` (Binance prints 8 decimals); silver
holds float64 converted by ``btcpipe.domain.decimal.to_float_array`` so batch and live floats agree
to the bit. Times are int64 µs UTC everywhere.
"""

from __future__ import annotations

import pyarrow as pa

from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE


def _required(name: str, type_: pa.DataType) -> pa.Field:
    """A column every row has: Parquet stores it REQUIRED (no definition levels to write or decode, which
    is a third of a trades day's read time), and a null there is refused when the table is built."""
    return pa.field(name, type_, nullable=False)


BRONZE_TRADES = pa.schema(
    [
        _required("id", pa.int64()),
        _required("ts_event", pa.int64()),
        _required("price", PRICE),
        _required("qty", QTY),
        ("quote_qty", QUOTE),
        _required("is_buyer_maker", pa.bool_()),
        ("is_best_match", pa.bool_()),
        ("ts_recv", pa.int64()),
    ]
)

BRONZE_AGG_TRADES = pa.schema(
    [
        _required("agg_id", pa.int64()),
        _required("ts_event", pa.int64()),
        _required("price", PRICE),
        _required("qty", QTY),
        _required("first_trade_id", pa.int64()),
        _required("last_trade_id", pa.int64()),
        _required("is_buyer_maker", pa.bool_()),
        ("is_best_match", pa.bool_()),
    ]
)

BRONZE_KLINES = pa.schema(
    [
        _required("open_time", pa.int64()),
        _required("close_time", pa.int64()),
        ("open", PRICE),
        ("high", PRICE),
        ("low", PRICE),
        ("close", PRICE),
        ("volume", QUOTE),
        ("quote_volume", QUOTE),
        ("n_trades", pa.int64()),
        ("taker_buy_base", QUOTE),
        ("taker_buy_quote", QUOTE),
    ]
)

BRONZE_BOOK_TICKER = pa.schema(
    [
        _required("update_id", pa.int64()),
        _required("ts_event", pa.int64()),
        _required("bid_price", PRICE),
        _required("bid_qty", QTY),
        _required("ask_price", PRICE),
        _required("ask_qty", QTY),
        ("ts_recv", pa.int64()),
    ]
)

_LEVEL = pa.struct([("price", PRICE), ("qty", QTY)])
BRONZE_DEPTH = pa.schema(
    [
        _required("first_update_id", pa.int64()),
        _required("last_update_id", pa.int64()),
        _required("ts_event", pa.int64()),
        ("bids", pa.list_(_LEVEL)),
        ("asks", pa.list_(_LEVEL)),
        ("ts_recv", pa.int64()),
    ]
)

SILVER_TRADES = pa.schema(
    [
        _required("id", pa.int64()),
        _required("ts_event", pa.int64()),
        _required("price", pa.float64()),
        _required("qty", pa.float64()),
        _required("is_buyer_maker", pa.bool_()),
    ]
)

# The id column that orders and de-duplicates each bronze kind.
ID_COLUMN = {
    "trades": "id",
    "aggTrades": "agg_id",
    "klines": "open_time",
    "bookTicker": "update_id",
    "depth": "last_update_id",
}
BRONZE_SCHEMAS = {
    "trades": BRONZE_TRADES,
    "aggTrades": BRONZE_AGG_TRADES,
    "klines": BRONZE_KLINES,
    "bookTicker": BRONZE_BOOK_TICKER,
    "depth": BRONZE_DEPTH,
}
