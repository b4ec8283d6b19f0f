"""Avro encoding of bus messages: domain records ↔ bytes, one schema per message type.

Wire format is Avro single-object encoding: ``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint, then
the schemaless Avro body. The fingerprint lets a reader refuse a payload written with another schema
(``PayloadSchemaError``) instead of misreading it; anything else that cannot be decoded raises
``PayloadDecodeError``. Schemas are the ``.avsc`` files in ``btcpipe/schemas/avro``.

Trades have a batch message (``MarketTradeBatch``: the trades of one frame) because the per-message
overhead of Avro dominates for single trades; ``decode_trades`` reads both kinds.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from btcpipe.domain.errors import MalformedRecordError, PayloadDecodeError, PayloadSchemaError
from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade

SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LEN = 10


@dataclass(frozen=True, slots=True)
class WireSchema:
    name: str
    parsed: Any  # fastavro's parsed schema
    header: bytes  # marker + fingerprint: the first HEADER_LEN bytes of every payload of this schema

    @property
    def fingerprint_hex(self) -> str:
        return self.header[2:].hex()


def _load(name: str) -> WireSchema:
    text = (resources.files("btcpipe") / "schemas" / "avro" / f"{name}.avsc").read_text(encoding="utf-8")
    parsed = parse_schema(json.loads(text))
    canonical = to_parsing_canonical_form(parsed)
    # fastavro's hex is already the little-endian byte order the single-object encoding wants.
    header = SINGLE_OBJECT_MARKER + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return WireSchema(name, parsed, header)


MARKET_TRADE = _load("MarketTrade")
MARKET_TRADE_BATCH = _load("MarketTradeBatch")
BEST_BID_ASK = _load("BestBidAsk")
DEPTH_DELTA = _load("DepthDelta")
FEATURE_VECTOR_1S = _load("FeatureVector1s")
PREDICTION_1S = _load("Prediction1s")
WIRE_SCHEMAS: dict[bytes, WireSchema] = {
    s.header: s
    for s in (MARKET_TRADE, MARKET_TRADE_BATCH, BEST_BID_ASK, DEPTH_DELTA, FEATURE_VECTOR_1S, PREDICTION_1S)
}


def _write(schema: WireSchema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(schema.header)
    try:
        schemaless_writer(buf, schema.parsed, record)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise MalformedRecordError(f"cannot encode {schema.name}: {exc}") from exc
    return buf.getvalue()


def schema_of(payload: bytes) -> WireSchema:
    """The schema a payload was written with; ``PayloadSchemaError`` when it is not one we know."""
    header = bytes(payload[:HEADER_LEN])
    schema = WIRE_SCHEMAS.get(header)
    if schema is None:
        if len(header) < HEADER_LEN or not header.startswith(SINGLE_OBJECT_MARKER):
            raise PayloadDecodeError(f"payload of {len(payload)} bytes has no Avro single-object header")
        raise PayloadSchemaError(f"payload written with an unknown schema (fingerprint {header[2:].hex()})")
    return schema


def _read(payload: bytes, expected: tuple[WireSchema, ...]) -> tuple[WireSchema, dict[str, Any]]:
    schema = schema_of(payload)
    if schema not in expected:
        names = "/".join(s.name for s in expected)
        raise PayloadSchemaError(f"expected a {names} payload, got {schema.name}")
    buf = io.BytesIO(payload)
    buf.seek(HEADER_LEN)
    try:
        record = schemaless_reader(buf, schema.parsed, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ... on corrupt bodies
        raise PayloadDecodeError(f"corrupt {schema.name} payload: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(payload) or not isinstance(record, dict):
        raise PayloadDecodeError(f"corrupt {schema.name} payload: {len(payload) - buf.tell()} bytes left over")
    return schema, record


# --- trades -----------------------------------------------------------------------------------------
def encode_trade(trade: Trade) -> bytes:
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
    """One ``MarketTradeBatch`` message; every trade must have the same symbol (the partition key)."""
    if not trades:
        raise MalformedRecordError("a trade batch needs at least one trade")
    symbol = trades[0].symbol
    items = []
    for t in trades:
        if t.symbol != symbol:
            raise MalformedRecordError(f"a trade batch holds one symbol: {symbol} and {t.symbol} mixed")
        items.append(
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
        )
    return _write(MARKET_TRADE_BATCH, {"symbol": symbol, "trades": items})


def decode_trades(payload: bytes) -> list[Trade]:
    """Trades of a ``MarketTrade`` (one) or ``MarketTradeBatch`` payload, in the order written."""
    schema, r = _read(payload, (MARKET_TRADE_BATCH, MARKET_TRADE))
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


Message = list[Trade] | BestBidAsk | DepthDiff | FeatureVector1s | Prediction1s

_DECODERS: dict[str, Callable[[bytes], Message]] = {
    MARKET_TRADE.name: decode_trades,
    MARKET_TRADE_BATCH.name: decode_trades,
    BEST_BID_ASK.name: decode_best_bid_ask,
    DEPTH_DELTA.name: decode_depth_delta,
    FEATURE_VECTOR_1S.name: decode_feature_vector,
    PREDICTION_1S.name: decode_prediction,
}


def decode_message(payload: bytes) -> Message:
    """Decode any bus payload by its fingerprint (trades always come back as a list)."""
    return _DECODERS[schema_of(payload).name](payload)
