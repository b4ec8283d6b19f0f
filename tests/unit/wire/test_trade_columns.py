"""MarketTradeColumns: standard Avro that fastavro reads, the numpy poll reader equal to the exact path,
old trade schemas still read, and corrupt payloads reported per payload without losing the good ones."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpipe.binance.recording import load_recording
from btcpipe.domain.errors import MalformedRecordError, PayloadDecodeError, PayloadSchemaError
from btcpipe.domain.records import Trade
from btcpipe.wire import avro_wire
from btcpipe.wire.avro_varint import append_long, encode_longs
from btcpipe.wire.codec import (
    TradeColumns,
    decode_message,
    decode_trade_batches,
    decode_trade_columns,
    decode_trades,
    encode_trade,
    encode_trade_columns,
    encode_trades,
    schema_of,
)
from btcpipe.wire.trade_batches import BULK_FROM_BYTES
from btcpipe.wire.trade_columns import decode_trade_columns_exact

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EXP = st.integers(min_value=-18, max_value=18)
T0 = 1_723_100_000_000_000


def make_trades(n: int, *, start_id: int = 4_000_000_000, symbol: str = "BTCUSDT", seed: int = 0) -> list[Trade]:
    rng = random.Random(seed)
    return [Trade(symbol, start_id + i, T0 + 300 * i, 6_183_763_000_000 + rng.randrange(-10**9, 10**9),
                  rng.randrange(1, 10**9), rng.random() < 0.5, ts_recv=T0 + 300 * i + rng.randrange(2_000))
            for i in range(n)]


def fastavro_body(payload: bytes) -> dict[str, object]:
    buf = io.BytesIO(payload[avro_wire.HEADER_LEN :])
    record = schemaless_reader(buf, avro_wire.MARKET_TRADE_COLUMNS.parsed, None)
    assert buf.read() == b""
    assert isinstance(record, dict)
    return record


def same_columns(a: TradeColumns, b: TradeColumns) -> bool:
    return (a.symbol, a.price_exponent, a.qty_exponent) == (b.symbol, b.price_exponent, b.qty_exponent) and all(
        np.array_equal(getattr(a, c), getattr(b, c))
        for c in ("id", "ts_event", "ts_recv", "price_mantissa", "qty_mantissa", "is_buyer_maker"))


@settings(max_examples=60)
@given(st.lists(st.tuples(I64, I64, I64, I64, I64, st.booleans()), min_size=1, max_size=40), EXP, EXP,
       st.text(min_size=1, max_size=12))
def test_encode_trades_writes_columns_that_fastavro_reads_back_exactly(
    rows: list[tuple[int, int, int, int, int, bool]], pe: int, qe: int, symbol: str
) -> None:
    trades = [Trade(symbol, i, t, p, q, b, pe, qe, r) for i, t, r, p, q, b in rows]
    payload = encode_trades(trades)
    assert schema_of(payload) is avro_wire.MARKET_TRADE_COLUMNS
    record = fastavro_body(payload)
    assert record["symbol"] == symbol
    assert (record["price_exponent"], record["qty_exponent"]) == (pe, qe)
    assert record["id"] == [t.id for t in trades]
    assert record["ts_recv"] == [t.ts_recv for t in trades]
    assert record["price_mantissa"] == [t.price_mantissa for t in trades]
    assert record["is_buyer_maker"] == bytes(int(t.is_buyer_maker) for t in trades)
    assert decode_trades(payload) == trades
    assert decode_trade_batches([payload, payload]).batch(1).to_trades() == trades


@pytest.mark.parametrize("n", [400, 1_000, 5_000])
def test_numpy_encoder_writes_the_same_bytes_as_fastavro(n: int) -> None:
    trades = make_trades(n, seed=n)
    cols = TradeColumns.from_trades(trades)
    payload = encode_trade_columns(cols)
    buf = io.BytesIO()
    buf.write(avro_wire.MARKET_TRADE_COLUMNS.header)
    schemaless_writer(buf, avro_wire.MARKET_TRADE_COLUMNS.parsed, {
        "symbol": "BTCUSDT", "price_exponent": -8, "qty_exponent": -8, "id": cols.id.tolist(),
        "ts_event": cols.ts_event.tolist(), "ts_recv": cols.ts_recv.tolist(),
        "price_mantissa": cols.price_mantissa.tolist(), "qty_mantissa": cols.qty_mantissa.tolist(),
        "is_buyer_maker": bytes(cols.is_buyer_maker.astype(np.uint8)),
    })
    assert payload == buf.getvalue()
    assert decode_trade_columns(payload).to_trades() == trades  # large: the numpy reader


def test_varint_encoders_agree_at_the_edges_of_every_length() -> None:
    values = [0, -1, 1, 2**63 - 1, -(2**63)]
    for k in range(1, 10):
        values += [2 ** (7 * k - 1) - 1, 2 ** (7 * k - 1), -(2 ** (7 * k - 1)), -(2 ** (7 * k - 1)) - 1]
    expected = bytearray()
    for v in values:
        append_long(expected, v)
    assert encode_longs(np.array(values, dtype=np.int64)) == bytes(expected)
    with pytest.raises(MalformedRecordError):
        append_long(bytearray(), 2**63)


def test_a_poll_of_many_payloads_decodes_like_each_payload_alone() -> None:
    trades = make_trades(6_000, seed=3)
    payloads, k, rng = [], 0, random.Random(4)
    while k < len(trades):
        n = rng.choice([1, 1, 2, 3, 7, 150])
        payloads.append(encode_trades(trades[k : k + n]))
        k += n
    batches = decode_trade_batches(payloads)
    assert not batches.errors
    assert batches.id.tolist() == [t.id for t in trades]
    assert [len(decode_trades(p)) for p in payloads] == batches.counts.tolist()
    for i in (0, 1, len(payloads) // 2, len(payloads) - 1):
        assert same_columns(batches.batch(i), decode_trade_columns_exact(payloads[i]))
    # Floats are the one conversion of each trade's exact decimal, bit for bit.
    assert batches.price.tolist() == [t.price for t in trades]
    assert batches.qty.tolist() == [t.qty for t in trades]


def test_old_trade_schemas_still_decode_in_order_beside_columns() -> None:
    a, b = make_trades(3, start_id=1), make_trades(2, start_id=4)
    mixed = [Trade("BTCUSDT", 6, T0, 61_837_63, 5, True, -2, -8), Trade("BTCUSDT", 7, T0, 6_183_763_000_000, 1, False)]
    old_batch = avro_wire.write(avro_wire.MARKET_TRADE_BATCH, {"symbol": "BTCUSDT", "trades": [
        {"id": t.id, "ts_event": t.ts_event, "ts_recv": t.ts_recv, "price_mantissa": t.price_mantissa,
         "price_exponent": t.price_exponent, "qty_mantissa": t.qty_mantissa, "qty_exponent": t.qty_exponent,
         "is_buyer_maker": t.is_buyer_maker} for t in a]})
    payloads = [old_batch, encode_trade(b[0]), encode_trades(b[1:]), encode_trades(mixed)] + [encode_trades(b)] * 300
    assert schema_of(payloads[3]) is avro_wire.MARKET_TRADE_BATCH  # mixed exponents keep their exact decimals
    assert decode_trades(payloads[3]) == mixed
    batches = decode_trade_batches(payloads)
    assert not batches.errors
    assert batches.id.tolist()[:7] == [1, 2, 3, 4, 5, 6, 7]
    assert batches.batch(0).to_trades() == a
    assert batches.batch(1).to_trades() == [b[0]]
    # The mixed batch as columns: rescaled exactly to the finer exponent, same values.
    mixed_cols = batches.batch(3)
    assert mixed_cols.price_exponent == -8
    assert mixed_cols.price_mantissa.tolist() == [6_183_763_000_000, 6_183_763_000_000]
    assert batches.price[5:7].tolist() == [t.price for t in mixed]


def test_arrays_written_in_several_blocks_are_read_too() -> None:
    """Avro lets a writer split an array into blocks (a negative count carries the block's byte size)."""
    trades = make_trades(5)
    out = bytearray(avro_wire.MARKET_TRADE_COLUMNS.header)
    append_long(out, 7)
    out += b"BTCUSDT"
    append_long(out, -8)
    append_long(out, -8)
    for column in ("id", "ts_event", "ts_recv", "price_mantissa", "qty_mantissa"):
        values = [getattr(t, column) for t in trades]
        head, tail = encode_longs(np.array(values[:2])), encode_longs(np.array(values[2:]))
        append_long(out, -2)
        append_long(out, len(head))
        out += head
        append_long(out, 3)
        out += tail
        out.append(0)
    append_long(out, 5)
    out += bytes(int(t.is_buyer_maker) for t in trades)
    payload = bytes(out)
    assert fastavro_body(payload)["id"] == [t.id for t in trades]
    batches = decode_trade_batches([payload] + [encode_trades(trades)] * 400)  # big enough for the numpy reader
    assert not batches.errors
    assert batches.batch(0).to_trades() == trades
    assert batches.batch(400).to_trades() == trades


def test_corrupt_payloads_in_a_poll_are_reported_and_the_rest_decoded() -> None:
    good = [encode_trades(make_trades(3, start_id=10 * i, seed=i)) for i in range(400)]
    bad_flags = bytearray(good[5])
    bad_flags[-1] = 7  # a buyer-maker flag that is neither 0 nor 1
    payloads = list(good)
    payloads[5] = bytes(bad_flags)
    payloads[9] = good[9][:-4]  # truncated
    payloads[11] = good[11] + b"\x00"  # padded
    payloads[13] = encode_trades(make_trades(2))[:2] + bytes(8) + good[13][10:]  # unknown fingerprint
    batches = decode_trade_batches(payloads)
    assert sorted(batches.errors) == [5, 9, 11, 13]
    assert isinstance(batches.errors[13], PayloadSchemaError)
    assert all(isinstance(batches.errors[i], PayloadDecodeError) for i in (5, 9, 11))
    assert batches.counts[[5, 9, 11, 13]].tolist() == [0, 0, 0, 0]
    kept = [i for i in range(400) if i not in (5, 9, 11, 13)]
    assert batches.id.tolist() == [t.id for i in kept for t in decode_trades(good[i])]
    with pytest.raises(PayloadDecodeError):
        decode_trades(bytes(bad_flags))


def test_random_mutations_of_columns_never_escape_as_other_errors() -> None:
    rng = random.Random(20240901)
    seeds = [encode_trades(make_trades(n, seed=n)) for n in (1, 2, 5, 40)]
    polls = 0
    for _ in range(60):
        payloads = []
        for _ in range(200):
            data = bytearray(rng.choice(seeds))
            if rng.random() < 0.5:
                for _ in range(rng.randint(1, 3)):
                    data[rng.randrange(avro_wire.HEADER_LEN, len(data))] = rng.randrange(256)
            payloads.append(bytes(data))
        batches = decode_trade_batches(payloads)  # never raises
        for i, p in enumerate(payloads):
            if i in batches.errors:
                with pytest.raises(PayloadDecodeError):
                    decode_trades(p)
            else:
                assert batches.batch(i).to_trades() == decode_trade_columns_exact(p).to_trades() == decode_trades(p)
        polls += len(batches.errors) > 0
    assert polls > 50
    with pytest.raises(PayloadDecodeError):
        decode_message(seeds[0][:-1])


def test_columns_refuse_mixed_lengths_and_symbols() -> None:
    z = np.zeros(2, dtype=np.int64)
    with pytest.raises(MalformedRecordError):
        TradeColumns("BTCUSDT", z, z, z, z, np.zeros(3, dtype=np.int64), np.zeros(2, dtype=np.bool_))
    with pytest.raises(MalformedRecordError, match="one symbol"):
        TradeColumns.from_trades([Trade("BTCUSDT", 1, 2, 3, 4, True), Trade("ETHUSDT", 2, 2, 3, 4, True)])
    with pytest.raises(MalformedRecordError):
        encode_trades([Trade("BTCUSDT", 2**64, 2, 3, 4, True)])


def test_real_recording_trades_survive_the_poll_reader(recording_paths: list[Path]) -> None:
    trades = load_recording(recording_paths[:1]).trades[:30_000]
    assert trades
    payloads = [encode_trades(trades[i : i + 3]) for i in range(0, len(trades), 3)]
    batches = decode_trade_batches(payloads)
    assert not batches.errors
    assert [t for i in range(len(payloads)) for t in batches.batch(i).to_trades()] == trades
    assert batches.price.tolist() == [t.price for t in trades]


def _batch_payload(exponents: list[tuple[int, int]]) -> bytes:
    """A ``MarketTradeBatch`` written straight with fastavro, the way a foreign or older writer could."""
    items = [{"id": 10 + i, "ts_event": 1_000 + i, "ts_recv": 2_000 + i, "price_mantissa": 5, "price_exponent": pe,
              "qty_mantissa": 1, "qty_exponent": qe, "is_buyer_maker": False} for i, (pe, qe) in enumerate(exponents)]
    return avro_wire.write(avro_wire.MARKET_TRADE_BATCH, {"symbol": "BTCUSDT", "trades": items})


@pytest.mark.parametrize("exponents", [[(18, -8), (-8, -8)], [(-8, -8), (-8, 12)], [(11, -8), (-8, -8)]])
def test_a_batch_whose_exponents_cannot_meet_is_reported_per_payload_not_raised(
    exponents: list[tuple[int, int]],
) -> None:
    good = encode_trades([Trade("BTCUSDT", 1, 1_000, 5, 1, False)])
    bad = _batch_payload(exponents)
    batches = decode_trade_batches([good, bad, good])
    assert set(batches.errors) == {1}
    assert isinstance(batches.errors[1], PayloadDecodeError)
    assert batches.counts.tolist() == [1, 0, 1]


def test_the_writer_refuses_a_batch_its_reader_would_refuse() -> None:
    trades = [Trade("BTCUSDT", 1, 1_000, 5, 1, False, 18, -8), Trade("BTCUSDT", 2, 1_000, 5, 1, False, -8, -8)]
    with pytest.raises(MalformedRecordError):
        encode_trades(trades)
    with pytest.raises(MalformedRecordError):
        encode_trades([Trade("BTCUSDT", 1, 1_000, 5, 1, False, 19, -8)])
    with pytest.raises(MalformedRecordError):
        TradeColumns.from_trades(trades)


def test_a_symbol_length_near_2_pow_63_is_a_bad_lane_not_an_index_error() -> None:
    """Found by bench/fuzz_decoders.py: pos + symbol length wrapped round int64 in the vectorised reader."""
    trades = [Trade("BTCUSDT", 3735683259 + i, 1723161255342000, 6183763000000 + i, 2000000 * (i + 1), i % 2 == 0,
                    ts_recv=1723161255342900 + i) for i in range(700)]
    good = encode_trade_columns(TradeColumns.from_trades(trades))
    assert 2 * len(good) >= BULK_FROM_BYTES  # the poll goes through the vectorised reader
    bad = bytes.fromhex(  # a MarketTradeColumns payload with the varint of 2^63 - 1 inserted before the symbol
        "c3013ff003c0fbe811eafeffffffffffffffff010e425443555344540f0f06f682d0ea1bf882d0ea1bfa82d0ea1b0006e0be9fe897"
        "cd8f06e0be9fe897cd8f06e0be9fe897cd8f060006e8cc9fe897cd8f06eacc9fe897cd8f06eccc9fe897cd8f06000680ebf9cff8e7"
        "0282ebf9cff8e70284ebf9cff8e70200068092f40180a4e80380b6dc050006010001")
    batches = decode_trade_batches([good, bad, good])
    assert set(batches.errors) == {1}
    assert isinstance(batches.errors[1], PayloadDecodeError)
    assert batches.counts.tolist() == [700, 0, 700]
