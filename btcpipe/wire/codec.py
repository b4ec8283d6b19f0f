"""Avro encoding of bus messages: domain records ↔ bytes, one schema per message type.

Wire format is Avro single-object encoding: ``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint, then
the schemaless Avro body. The fingerprint lets a reader refuse a payload written with another schema
(``PayloadSchemaError``) instead of misreading it; anything else that cannot be decoded raises
``PayloadDecodeError``. Schemas are the ``.avsc`` files in ``btcpipe/schemas/avro``.

Trades travel in batches because the per-message overhead of Avro dominates for single trades:
``MarketTradeColumns`` (one symbol's trades as columns, see ``btcpipe.wire.trade_columns``) is what
``encode_trades`` writes; ``MarketTradeBatch`` (an array of records) and ``MarketTrade`` (one trade) are
older forms that ``decode_trades``, ``decode_trade_columns`` and ``decode_trade_batches`` (a whole poll at
once, ``btcpipe.wire.trade_batches``) still read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from btcpipe.domain.decimal import check_exponent
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.messages import FeatureVector1s, Heartbeat, Prediction1s
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade
from btcpipe.wire.avro_wire import (
    BEST_BID_ASK,
    DEPTH_DELTA,
    FEATURE_VECTOR_1S,
    HEADER_LEN,
    HEARTBEAT,
    MARKET_TRADE,
    MARKET_TRADE_BATCH,
    MARKET_TRADE_COLUMNS,
    PREDICTION_1S,
    SINGLE_OBJECT_MARKER,
    TRADE_SCHEMAS,
    WIRE_SCHEMAS,
    WireSchema,
    schema_of,
)
from btcpipe.wire.avro_wire import read as _read_record
from btcpipe.wire.avro_wire import write as _write
from btcpipe.wire.trade_batches import BULK_FROM_BYTES, TradeBatches, decode_trade_batches, decode_trade_columns
from btcpipe.wire.trade_columns import TradeColumns, decode_trade_list, encode_trade_columns, encode_trade_list

__all__ = [
    "BEST_BID_ASK", "DEPTH_DELTA", "FEATURE_VECTOR_1S", "HEADER_LEN", "HEARTBEAT", "MARKET_TRADE",
    "MARKET_TRADE_BATCH", "MARKET_TRADE_COLUMNS", "PREDICTION_1S", "SINGLE_OBJECT_MARKER", "TRADE_SCHEMAS",
    "WIRE_SCHEMAS", "Message", "TradeBatches", "TradeColumns", "WireSchema", "decode_best_bid_ask",
    "decode_depth_delta", "decode_feature_vector", "decode_heartbeat", "decode_message", "decode_prediction",
    "decode_trade_batches", "decode_trade_columns", "decode_trades", "encode_best_bid_ask", "encode_depth_delta",
    "encode_feature_vector", "encode_heartbeat", "encode_prediction", "encode_trade", "encode_trade_columns",
    "encode_trades", "schema_of",
]


def _read(payload: bytes, expected: tuple[WireSchema, ...]) -> tuple[WireSchema, dict[str, Any]]:
    return _read_record(payload, expected)


# --- trades -----------------------------------------------------------------------------------------
def encode_trade(trade: Trade) -> bytes:
    """One trade as a ``MarketTrade`` (kept for single events; batches use ``encode_trades``)."""
    check_exponent(trade.price_exponent)
    check_exponent(trade.qty_exponent)
    return _write(
        MARKET_TRADE,
        {
            "symbol": trade.symbol,
            "id": trade.id,
            "ts_event": trade.ts_event,
            "ts_recv": trade.ts_recv,
            "price_mantissa": trade.price_mantissa,
            "price_exponent": trade.price_exponent,
            "qty_mantissa": trade.qty_mantissa,
            "qty_exponent": trade.qty_exponent,
            "is_buyer_maker": trade.is_buyer_maker,
        },
    )


def encode_trades(trades: Sequence[Trade]) -> bytes:
    """One message for trades of one symbol: ``MarketTradeColumns`` when they share their exponents (every
    SBE frame and REST page does), else a ``MarketTradeBatch`` so each trade keeps its exact decimal."""
    if not trades:
        raise MalformedRecordError("a trade batch needs at least one trade")
    t0 = trades[0]
    symbol, pe, qe = t0.symbol, t0.price_exponent, t0.qty_exponent
    uniform = True
    for t in trades:
        if t.symbol != symbol:
            raise MalformedRecordError(f"a trade batch holds one symbol: {symbol} and {t.symbol} mixed")
        if t.price_exponent != pe or t.qty_exponent != qe:
            uniform = False
    if uniform:
        return encode_trade_list(trades)
    return _encode_trade_batch(symbol, trades)


def _encode_trade_batch(symbol: str, trades: Sequence[Trade]) -> bytes:
    # The reader puts a batch's trades at one exponent pair (TradeColumns.from_trades): refuse here, at the
    # writer, the exponents and mantissas it would refuse, rather than publish a payload nobody can read.
    TradeColumns.from_trades(trades)
    items = [
        {
            "id": t.id,
            "ts_event": t.ts_event,
            "ts_recv": t.ts_recv,
            "price_mantissa": t.price_mantissa,
            "price_exponent": t.price_exponent,
            "qty_mantissa": t.qty_mantissa,
            "qty_exponent": t.qty_exponent,
            "is_buyer_maker": t.is_buyer_maker,
        }
        for t in trades
    ]
    return _write(MARKET_TRADE_BATCH, {"symbol": symbol, "trades": items})


def decode_trades(payload: bytes) -> list[Trade]:
    """Trades of any trade payload (``MarketTradeColumns``, ``MarketTradeBatch``, ``MarketTrade``), in the
    order written, each with its exact mantissas and exponents."""
    if payload[:HEADER_LEN] == MARKET_TRADE_COLUMNS.header:
        if len(payload) >= BULK_FROM_BYTES:
            return decode_trade_columns(payload).to_trades()
        return decode_trade_list(payload)
    schema, r = _read(payload, (MARKET_TRADE_BATCH, MARKET_TRADE, MARKET_TRADE_COLUMNS))
    if schema is MARKET_TRADE:
        return [
            Trade(
                r["symbol"], r["id"], r["ts_event"], r["price_mantissa"], r["qty_mantissa"],
                r["is_buyer_maker"], r["price_exponent"], r["qty_exponent"], r["ts_recv"],
            )
        ]
    symbol = r["symbol"]
    return [
        Trade(
            symbol, i["id"], i["ts_event"], i["price_mantissa"], i["qty_mantissa"],
            i["is_buyer_maker"], i["price_exponent"], i["qty_exponent"], i["ts_recv"],
        )
        for i in r["trades"]
    ]


# --- book -------------------------------------------------------------------------------------------
def encode_best_bid_ask(bba: BestBidAsk) -> bytes:
    check_exponent(bba.price_exponent)  # the reader refuses what it cannot convert to float
    check_exponent(bba.qty_exponent)
    return _write(
        BEST_BID_ASK,
        {
            "symbol": bba.symbol,
            "ts_event": bba.ts_event,
            "ts_recv": bba.ts_recv,
            "update_id": bba.update_id,
            "bid_price_mantissa": bba.bid_price_mantissa,
            "bid_qty_mantissa": bba.bid_qty_mantissa,
            "ask_price_mantissa": bba.ask_price_mantissa,
            "ask_qty_mantissa": bba.ask_qty_mantissa,
            "price_exponent": bba.price_exponent,
            "qty_exponent": bba.qty_exponent,
        },
    )


def decode_best_bid_ask(payload: bytes) -> BestBidAsk:
    _, r = _read(payload, (BEST_BID_ASK,))
    return BestBidAsk(
        r["symbol"], r["ts_event"], r["update_id"], r["bid_price_mantissa"], r["bid_qty_mantissa"],
        r["ask_price_mantissa"], r["ask_qty_mantissa"], r["price_exponent"], r["qty_exponent"], r["ts_recv"],
    )


def encode_depth_delta(diff: DepthDiff) -> bytes:
    return _write(
        DEPTH_DELTA,
        {
            "symbol": diff.symbol,
            "ts_event": diff.ts_event,
            "ts_recv": diff.ts_recv,
            "first_update_id": diff.first_update_id,
            "last_update_id": diff.last_update_id,
            "price_exponent": diff.price_exponent,
            "qty_exponent": diff.qty_exponent,
            "bids": [{"price_mantissa": p, "qty_mantissa": q} for p, q in diff.bids],
            "asks": [{"price_mantissa": p, "qty_mantissa": q} for p, q in diff.asks],
        },
    )


def decode_depth_delta(payload: bytes) -> DepthDiff:
    _, r = _read(payload, (DEPTH_DELTA,))
    return DepthDiff(
        r["symbol"], r["ts_event"], r["first_update_id"], r["last_update_id"],
        tuple((lv["price_mantissa"], lv["qty_mantissa"]) for lv in r["bids"]),
        tuple((lv["price_mantissa"], lv["qty_mantissa"]) for lv in r["asks"]),
        r["price_exponent"], r["qty_exponent"], r["ts_recv"],
    )


# --- features and predictions ------------------------------------------------------------------------
def encode_feature_vector(vector: FeatureVector1s) -> bytes:
    return _write(
        FEATURE_VECTOR_1S,
        {
            "symbol": vector.symbol,
            "ts_sec": vector.ts_sec,
            "schema_hash": vector.schema_hash,
            "values": [float(v) for v in vector.values],
            "ts_computed": vector.ts_computed,
        },
    )


def decode_feature_vector(payload: bytes) -> FeatureVector1s:
    _, r = _read(payload, (FEATURE_VECTOR_1S,))
    return FeatureVector1s(r["symbol"], r["ts_sec"], r["schema_hash"], tuple(r["values"]), r["ts_computed"])


def encode_prediction(prediction: Prediction1s) -> bytes:
    return _write(
        PREDICTION_1S,
        {
            "symbol": prediction.symbol,
            "ts_sec": prediction.ts_sec,
            "yhat": prediction.yhat,
            "latency_ms": prediction.latency_ms,
            "model_version": prediction.model_version,
            "uncertainty": prediction.uncertainty,
            "feature_age_ms": prediction.feature_age_ms,
            "ts_pred": prediction.ts_pred,
        },
    )


def decode_prediction(payload: bytes) -> Prediction1s:
    _, r = _read(payload, (PREDICTION_1S,))
    return Prediction1s(
        r["symbol"], r["ts_sec"], r["yhat"], r["latency_ms"], r["model_version"], r["uncertainty"],
        r["feature_age_ms"], r["ts_pred"],
    )


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    return _write(HEARTBEAT, {"symbol": heartbeat.symbol, "ts_event": heartbeat.ts_event})


def decode_heartbeat(payload: bytes) -> Heartbeat:
    _, r = _read(payload, (HEARTBEAT,))
    return Heartbeat(r["symbol"], r["ts_event"])


Message = list[Trade] | BestBidAsk | DepthDiff | FeatureVector1s | Prediction1s | Heartbeat

_DECODERS: dict[str, Callable[[bytes], Message]] = {
    MARKET_TRADE.name: decode_trades,
    MARKET_TRADE_BATCH.name: decode_trades,
    MARKET_TRADE_COLUMNS.name: decode_trades,
    BEST_BID_ASK.name: decode_best_bid_ask,
    DEPTH_DELTA.name: decode_depth_delta,
    FEATURE_VECTOR_1S.name: decode_feature_vector,
    PREDICTION_1S.name: decode_prediction,
    HEARTBEAT.name: decode_heartbeat,
}


def decode_message(payload: bytes) -> Message:
    """Decode any bus payload by its fingerprint (trades always come back as a list)."""
    return _DECODERS[schema_of(payload).name](payload)
