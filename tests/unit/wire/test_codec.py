"""Avro payloads: exact round trips, the schema fingerprint header, and refusal of bad payloads."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btcpipe.binance.recording import load_recording
from btcpipe.domain.errors import MalformedRecordError, PayloadDecodeError, PayloadSchemaError
from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade
from btcpipe.wire import codec
from btcpipe.wire.codec import (
    decode_best_bid_ask,
    decode_depth_delta,
    decode_feature_vector,
    decode_message,
    decode_prediction,
    decode_trades,
    encode_best_bid_ask,
    encode_depth_delta,
    encode_feature_vector,
    encode_prediction,
    encode_trade,
    encode_trades,
)
from btcpipe.wire.trade_batches import decode_trade_batches
from btcpipe.wire.trade_columns import TradeColumns

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EXP = st.integers(min_value=-18, max_value=18)
SYMBOL = st.text(min_size=1, max_size=12)

trades = st.builds(Trade, SYMBOL, I64, I64, I64, I64, st.booleans(), EXP, EXP, I64)
levels = st.lists(st.tuples(I64, I64), max_size=30).map(tuple)
depths = st.builds(DepthDiff, SYMBOL, I64, I64, I64, levels, levels, EXP, EXP, I64)
bbas = st.builds(BestBidAsk, SYMBOL, I64, I64, I64, I64, I64, I64, EXP, EXP, I64)


@given(trades)
def test_a_single_trade_round_trips_exactly(t: Trade) -> None:
    assert decode_trades(encode_trade(t)) == [t]


@given(SYMBOL, st.lists(trades, min_size=1, max_size=50))
def test_a_trade_batch_round_trips_in_order_or_is_refused_by_the_encoder(symbol: str, ts: list[Trade]) -> None:
    batch = [Trade(symbol, *(getattr(t, f) for f in Trade.__slots__[1:])) for t in ts]  # type: ignore[attr-defined]
    try:
        payload = encode_trades(batch)
    except MalformedRecordError:
        # Refused only when the reader could not put the batch at one exponent pair.
        with pytest.raises(MalformedRecordError):
            TradeColumns.from_trades(batch)
        return
    assert decode_trades(payload) == batch
    assert not decode_trade_batches([payload]).errors  # what the writer accepts, the processor's reader reads


@given(bbas)
def test_best_bid_ask_round_trips_exactly(b: BestBidAsk) -> None:
    assert decode_best_bid_ask(encode_best_bid_ask(b)) == b


@given(depths)
def test_depth_delta_round_trips_exactly(d: DepthDiff) -> None:
    assert decode_depth_delta(encode_depth_delta(d)) == d


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=25))
def test_feature_vector_round_trips_bit_for_bit_with_nan(values: list[float]) -> None:
    v = FeatureVector1s("BTCUSDT", 1_723_100_000_000_000, "ab12" * 16, tuple(values), 1_723_100_000_012_345)
    back = decode_feature_vector(encode_feature_vector(v))
    assert (back.symbol, back.ts_sec, back.schema_hash, back.ts_computed) == (v.symbol, v.ts_sec, v.schema_hash,
                                                                             v.ts_computed)
    assert len(back.values) == len(values)
    for a, b in zip(back.values, values, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("uncertainty", [None, 0.000123])
def test_prediction_round_trips(uncertainty: float | None) -> None:
    ts = 1_723_100_001_000_000
    p = Prediction1s("BTCUSDT", ts, -1.5e-5, 0.42, "mlp-v3", uncertainty, 120.5, ts + 420)
    assert decode_prediction(encode_prediction(p)) == p
    assert decode_message(encode_prediction(p)) == p


def test_real_recording_records_round_trip_through_avro(recording_paths: list[Path]) -> None:
    rec = load_recording(recording_paths[:1])
    trades_ = rec.trades[:20_000]
    assert trades_, "the recording holds trades"
    for i in range(0, len(trades_), 97):
        chunk = trades_[i : i + 97]
        assert decode_trades(encode_trades(chunk)) == chunk
    assert all(decode_trades(encode_trade(t)) == [t] for t in trades_[:2_000])
    assert all(decode_best_bid_ask(encode_best_bid_ask(b)) == b for b in rec.best_bid_asks[:5_000])
    assert all(decode_depth_delta(encode_depth_delta(d)) == d for d in rec.depth_diffs[:2_000])


def _rabin_crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification writes it out, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("schema", list(codec.WIRE_SCHEMAS.values()), ids=lambda s: s.name)
def test_payload_header_is_avro_single_object_encoding(schema: codec.WireSchema) -> None:
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(schema.parsed).encode()
    expected = b"\xc3\x01" + _rabin_crc64_avro(canonical).to_bytes(8, "little")
    assert schema.header == expected


def test_each_decoder_refuses_another_schemas_payload() -> None:
    bba = encode_best_bid_ask(BestBidAsk("BTCUSDT", 1, 2, 3, 4, 5, 6))
    with pytest.raises(PayloadSchemaError, match="BestBidAsk"):
        decode_trades(bba)
    with pytest.raises(PayloadSchemaError):
        decode_depth_delta(encode_trade(Trade("BTCUSDT", 1, 2, 3, 4, True)))


def test_an_unknown_fingerprint_is_refused_as_a_schema_error() -> None:
    good = encode_trade(Trade("BTCUSDT", 1, 2, 3, 4, True))
    with pytest.raises(PayloadSchemaError, match="unknown schema"):
        decode_trades(good[:2] + bytes(8) + good[10:])


@pytest.mark.parametrize("bad", [b"", b"\xc3", b"{\"e\":\"trade\"}", bytes(40)])
def test_payloads_without_a_header_are_decode_errors(bad: bytes) -> None:
    with pytest.raises(PayloadDecodeError, match="header"):
        decode_message(bad)


def test_truncated_and_padded_bodies_are_decode_errors() -> None:
    good = encode_trades([Trade("BTCUSDT", i, 2, 3, 4, True) for i in range(3)])
    for cut in range(codec.HEADER_LEN, len(good)):
        with pytest.raises(PayloadDecodeError):
            decode_trades(good[:cut])
    with pytest.raises(PayloadDecodeError, match="left over"):
        decode_trades(good + b"\x00")


def test_random_mutations_raise_only_payload_decode_errors() -> None:
    rng = random.Random(20240808)
    seeds = [
        encode_trades([Trade("BTCUSDT", i, 2, 3, 4, True) for i in range(5)]),
        encode_depth_delta(DepthDiff("BTCUSDT", 1, 2, 3, ((1, 2), (3, 4)), ((5, 6),))),
        encode_feature_vector(FeatureVector1s("BTCUSDT", 1_723_100_000_000_000, "h", (1.0, math.nan), 5)),
        encode_prediction(Prediction1s("BTCUSDT", 1_723_100_000_000_000, 0.1, 1.0, "v", None, 2.0, 3)),
    ]
    failures = 0
    for _ in range(20_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(codec.HEADER_LEN, len(data))
            data[pos] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(codec.HEADER_LEN, len(data)) :]
        try:
            decode_message(bytes(data))
        except PayloadDecodeError:
            failures += 1
    assert failures > 1_000  # the mutations did break payloads, and every break was a typed error


def test_a_trade_batch_holds_one_symbol_and_at_least_one_trade() -> None:
    with pytest.raises(MalformedRecordError, match="one symbol"):
        encode_trades([Trade("BTCUSDT", 1, 2, 3, 4, True), Trade("ETHUSDT", 1, 2, 3, 4, True)])
    with pytest.raises(MalformedRecordError):
        encode_trades([])


def test_values_out_of_avro_range_are_refused_when_encoding() -> None:
    with pytest.raises(MalformedRecordError):
        encode_trade(Trade("BTCUSDT", 2**64, 2, 3, 4, True))
