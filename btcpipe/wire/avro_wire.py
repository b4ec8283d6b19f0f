"""The wire schemas of the bus and Avro single-object framing (``C3 01`` + CRC-64-AVRO fingerprint + body).

Shared by ``btcpipe.wire.codec`` (one message ↔ one domain record, through fastavro) and
``btcpipe.wire.trade_columns`` (columnar trade batches, with a hand-written decoder for that one schema).
A payload whose fingerprint is not a known schema is a ``PayloadSchemaError``; a payload without the
single-object header, or whose body does not decode, is a ``PayloadDecodeError``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from btcpipe.domain.errors import MalformedRecordError, PayloadDecodeError, PayloadSchemaError

SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LEN = 10


@dataclass(frozen=True, slots=True)
class WireSchema:
    """A parsed Avro schema and its fingerprint, as the wire carries it."""

    name: str
    parsed: Any  # fastavro's parsed schema
    header: bytes  # marker + fingerprint: the first HEADER_LEN bytes of every payload of this schema


def load_schema(name: str) -> WireSchema:
    text = (resources.files("btcpipe") / "schemas" / "avro" / f"{name}.avsc").read_text(encoding="utf-8")
    parsed = parse_schema(json.loads(text))
    canonical = to_parsing_canonical_form(parsed)
    # fastavro's hex is already the little-endian byte order the single-object encoding wants.
    header = SINGLE_OBJECT_MARKER + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return WireSchema(name, parsed, header)


MARKET_TRADE = load_schema("MarketTrade")
MARKET_TRADE_BATCH = load_schema("MarketTradeBatch")
MARKET_TRADE_COLUMNS = load_schema("MarketTradeColumns")
BEST_BID_ASK = load_schema("BestBidAsk")
DEPTH_DELTA = load_schema("DepthDelta")
FEATURE_VECTOR_1S = load_schema("FeatureVector1s")
PREDICTION_1S = load_schema("Prediction1s")
HEARTBEAT = load_schema("Heartbeat")
WIRE_SCHEMAS: dict[bytes, WireSchema] = {
    s.header: s
    for s in (MARKET_TRADE, MARKET_TRADE_BATCH, MARKET_TRADE_COLUMNS, BEST_BID_ASK, DEPTH_DELTA, FEATURE_VECTOR_1S,
              PREDICTION_1S, HEARTBEAT)
}
TRADE_SCHEMAS = (MARKET_TRADE_COLUMNS, MARKET_TRADE_BATCH, MARKET_TRADE)


def write(schema: WireSchema, record: dict[str, Any]) -> bytes:
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


def expect_schema(payload: bytes, expected: tuple[WireSchema, ...]) -> WireSchema:
    schema = schema_of(payload)
    if schema not in expected:
        names = "/".join(s.name for s in expected)
        raise PayloadSchemaError(f"expected a {names} payload, got {schema.name}")
    return schema


def read(payload: bytes, expected: tuple[WireSchema, ...]) -> tuple[WireSchema, dict[str, Any]]:
    """Decode with fastavro; the whole body must be consumed."""
    schema = expect_schema(payload, expected)
    buf = io.BytesIO(payload)
    buf.seek(HEADER_LEN)
    try:
        record = schemaless_reader(buf, schema.parsed, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ... on corrupt bodies
        raise PayloadDecodeError(f"corrupt {schema.name} payload: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(payload) or not isinstance(record, dict):
        raise PayloadDecodeError(f"corrupt {schema.name} payload: {len(payload) - buf.tell()} bytes left over")
    return schema, record
