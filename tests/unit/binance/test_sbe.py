"""SBE codec: real frame prefixes, round trips of every template, schema evolution, typed errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpipe.binance.sbe import (
    MessageHeader,
    TradesEvent,
    decode,
    decode_header,
    decode_prefix,
    encode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
    encode_trades_event,
)
from btcpipe.domain.errors import (
    DecodeError,
    GroupOverrunError,
    MalformedFrameError,
    MalformedRecordError,
    SchemaIdError,
    SchemaVersionError,
    TruncatedFrameError,
    UnknownTemplateError,
)
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade

I64 = st.integers(-(2**63), 2**63 - 1)
I8 = st.integers(-128, 127)
SYMBOLS = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode("utf-8")) <= 255)
LEVELS = st.lists(st.tuples(I64, I64), max_size=40).map(tuple)

BTC = "BTCUSDT"


def _real_prefixes(shared_data: Path) -> dict[str, dict[str, object]]:
    doc = json.loads((shared_data / "sbe" / "real_prefixes.json").read_text())
    return {str(f["message"]).split(" ")[0]: f for f in doc["frames"]}


# --- real frames ---------------------------------------------------------------------------------------


def test_real_best_bid_ask_prefix_decodes_documented_fields_and_reports_truncation(shared_data: Path) -> None:
    frame = _real_prefixes(shared_data)["BestBidAskStreamEvent"]
    data = bytes.fromhex(str(frame["hex"]))
    doc = frame["decoded"]
    assert isinstance(doc, dict)

    report = decode_prefix(data)

    assert report.header == MessageHeader(50, 10001, 1, 0)
    assert report.header._asdict() == {
        "block_length": doc["header"]["blockLength"],
        "template_id": doc["header"]["templateId"],
        "schema_id": doc["header"]["schemaId"],
        "version": doc["header"]["version"],
    }
    assert report.message == "BestBidAskStreamEvent"
    assert report.fields["eventTime"] == doc["eventTime_us"]
    assert report.fields["bookUpdateId"] == doc["bookUpdateId"]
    assert (report.fields["priceExponent"], report.fields["qtyExponent"]) == (doc["priceExponent"], doc["qtyExponent"])
    assert report.truncated
    assert report.missing == "bidPrice"
    assert report.partial == bytes.fromhex(doc["bidPrice_mantissa_first6_bytes_le"])
    assert int.from_bytes(report.partial + b"\0\0", "little") == 12346739000000
    with pytest.raises(TruncatedFrameError, match="root block"):
        decode(data)


def test_real_depth_diff_prefix_decodes_documented_fields_and_reports_truncation(shared_data: Path) -> None:
    frame = _real_prefixes(shared_data)["DepthDiffStreamEvent"]
    data = bytes.fromhex(str(frame["hex"]))
    doc = frame["decoded"]
    assert isinstance(doc, dict)

    report = decode_prefix(data)

    assert report.header == MessageHeader(26, 10003, 1, 0)
    assert report.message == "DepthDiffStreamEvent"
    assert report.fields["eventTime"] == doc["eventTime_us"]
    assert report.fields["firstBookUpdateId"] == doc["firstBookUpdateId"]
    assert report.fields["lastBookUpdateId"] == doc["lastBookUpdateId"]
    assert doc["lastBookUpdateId"] - doc["firstBookUpdateId"] + 1 == doc["updates_in_event"]
    assert report.truncated
    assert report.missing == "priceExponent"
    assert report.partial == b""
    assert report.bytes_present == frame["bytes_present"]
    with pytest.raises(TruncatedFrameError):
        decode(data)


def test_real_trades_body_prefix_decodes_documented_fields_and_reports_truncation(shared_data: Path) -> None:
    frame = _real_prefixes(shared_data)["TradesStreamEvent"]
    body = bytes.fromhex(str(frame["hex"]))
    doc = frame["decoded"]
    assert isinstance(doc, dict)
    implied_header = bytes.fromhex("1200102701000000")

    report = decode_prefix(body, header=decode_header(implied_header))

    assert report.message == "TradesStreamEvent"
    assert report.fields["eventTime"] == doc["eventTime_us"]
    assert report.fields["transactTime"] == doc["transactTime_us"]
    assert (report.fields["priceExponent"], report.fields["qtyExponent"]) == (doc["priceExponent"], doc["qtyExponent"])
    assert report.fields["trades.blockLength"] == doc["trades_group"]["blockLength"] == 25
    assert report.fields["trades.numInGroup"] == doc["trades_group"]["numInGroup"] == 1
    assert report.truncated
    assert report.missing == "trades[0].id"
    # With its header the frame announces one 25-byte trade that is not there.
    with pytest.raises(GroupOverrunError):
        decode(implied_header + body)


def test_prefix_shorter_than_header_reports_the_header_field_it_ends_in() -> None:
    report = decode_prefix(bytes.fromhex("320011"))
    assert report.header is None
    assert report.message is None
    assert report.fields == {"header.blockLength": 50}
    assert report.missing == "header.templateId"
    assert report.partial == b"\x11"


# --- round trips ---------------------------------------------------------------------------------------


@st.composite
def trades_events(draw: st.DrawFn) -> TradesEvent:
    symbol, transact, pexp, qexp = draw(SYMBOLS), draw(I64), draw(I8), draw(I8)
    rows = draw(st.lists(st.tuples(I64, I64, I64, st.booleans()), max_size=30))
    trades = tuple(Trade(symbol, i, transact, p, q, m, pexp, qexp) for i, p, q, m in rows)
    return TradesEvent(symbol, draw(I64), transact, trades, pexp, qexp)


best_bid_asks = st.builds(BestBidAsk, SYMBOLS, I64, I64, I64, I64, I64, I64, I8, I8)
depth_snapshots = st.builds(DepthSnapshot, SYMBOLS, I64, LEVELS, LEVELS, I64, I8, I8)
depth_diffs = st.builds(DepthDiff, SYMBOLS, I64, I64, I64, LEVELS, LEVELS, I8, I8)


@given(trades_events(), st.integers(0, 2**62))
def test_trades_event_round_trips(event: TradesEvent, ts_recv: int) -> None:
    back = decode(encode_trades_event(event), ts_recv=ts_recv)
    assert isinstance(back, TradesEvent)
    assert back == TradesEvent(
        event.symbol,
        event.event_time,
        event.transact_time,
        tuple(Trade(t.symbol, t.id, t.ts_event, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker,
                    t.price_exponent, t.qty_exponent, ts_recv) for t in event.trades),
        event.price_exponent,
        event.qty_exponent,
        ts_recv,
    )


@given(best_bid_asks)
def test_best_bid_ask_round_trips(record: BestBidAsk) -> None:
    frame = encode_best_bid_ask(record)
    assert decode(frame) == record
    assert len(frame) == 8 + 50 + 1 + len(record.symbol.encode())


@given(depth_snapshots)
def test_depth_snapshot_round_trips(record: DepthSnapshot) -> None:
    assert decode(encode_depth_snapshot(record)) == record


@given(depth_diffs)
def test_depth_diff_round_trips(record: DepthDiff) -> None:
    assert decode(encode_depth_diff(record)) == record


@given(st.one_of(trades_events(), best_bid_asks, depth_snapshots, depth_diffs))
def test_full_frames_walk_to_complete_prefix_reports_that_agree_with_decode(
    record: TradesEvent | BestBidAsk | DepthSnapshot | DepthDiff,
) -> None:
    frame = encode(record)
    report = decode_prefix(frame)
    assert not report.truncated
    assert report.bytes_present == len(frame)
    assert report.fields["symbol"] == record.symbol
    expected_event_time = record.event_time if isinstance(record, TradesEvent) else record.ts_event
    assert report.fields["eventTime"] == expected_event_time
    # Every proper prefix is reported truncated and refused by the decoder with a typed error.
    for cut in {0, 1, 7, 8, len(frame) // 2, len(frame) - 1}:
        assert decode_prefix(frame[:cut]).truncated
        with pytest.raises(TruncatedFrameError):
            decode(frame[:cut])


def test_single_trade_frame_is_65_bytes_and_event_time_defaults_to_transact_time() -> None:
    trade = Trade(BTC, 3735683259, 1723161255342000, 6183763000000, 2000000, True)
    frame = encode_trades([trade])
    assert len(frame) == 8 + 18 + 6 + 25 + 1 + 7
    event = decode(frame)
    assert isinstance(event, TradesEvent)
    assert event.trades == (trade,)
    assert event.event_time == trade.ts_event
    later = decode(encode_trades([trade], event_time=trade.ts_event + 350))
    assert isinstance(later, TradesEvent)
    assert later.event_time == trade.ts_event + 350


# --- schema evolution: bigger blockLengths are skipped -------------------------------------------------


def _frame_with_appended_fields(record: DepthDiff, root_extra: int, entry_extra: int, tail: bytes) -> bytes:
    """A DepthDiff frame written by hand (not by the encoder) as a later schema would: each block longer."""
    root = struct.pack("<qqqbb", record.ts_event, record.first_update_id, record.last_update_id,
                       record.price_exponent, record.qty_exponent) + b"\xab" * root_extra
    out = struct.pack("<HHHH", 26 + root_extra, 10003, 1, 0) + root
    for side in (record.bids, record.asks):
        out += struct.pack("<HH", 16 + entry_extra, len(side))
        out += b"".join(struct.pack("<qq", p, q) + b"\xcd" * entry_extra for p, q in side)
    sym = record.symbol.encode()
    return out + bytes([len(sym)]) + sym + tail


@given(depth_diffs, st.integers(0, 64), st.integers(0, 64), st.binary(max_size=16))
def test_appended_fields_in_depth_blocks_are_skipped(
    record: DepthDiff, root_extra: int, entry_extra: int, tail: bytes
) -> None:
    assert decode(_frame_with_appended_fields(record, root_extra, entry_extra, tail)) == record


@given(trades_events(), st.integers(1, 40), st.integers(1, 40))
@settings(max_examples=50)
def test_appended_fields_in_trade_blocks_are_skipped(event: TradesEvent, root_extra: int, entry_extra: int) -> None:
    root = struct.pack("<qqbb", event.event_time, event.transact_time, event.price_exponent, event.qty_exponent)
    out = struct.pack("<HHHH", 18 + root_extra, 10000, 1, 0) + root + b"\xee" * root_extra
    out += struct.pack("<HI", 25 + entry_extra, len(event.trades))
    for t in event.trades:
        out += struct.pack("<qqqB", t.id, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) + b"\x07" * entry_extra
    sym = event.symbol.encode()
    assert decode(out + bytes([len(sym)]) + sym) == event


def test_appended_field_in_best_bid_ask_root_is_skipped() -> None:
    record = BestBidAsk(BTC, 1759737766615822, 77453571531, 12346739000000, 5, 12346740000000, 7)
    frame = encode_best_bid_ask(record)
    grown = struct.pack("<H", 58) + frame[2:58] + b"\x01" * 8 + frame[58:]
    assert decode(grown) == record


# --- typed errors ----------------------------------------------------------------------------------------

_BBA = encode_best_bid_ask(BestBidAsk(BTC, 1, 2, 3, 4, 5, 6))
_DIFF = encode_depth_diff(DepthDiff(BTC, 1, 10, 12, ((100, 1),), ((101, 2), (102, 0))))


def _with_header(frame: bytes, **fields: int) -> bytes:
    header = decode_header(frame)._replace(**fields)
    return struct.pack("<HHHH", *header) + frame[8:]


def test_wrong_schema_id_is_refused() -> None:
    with pytest.raises(SchemaIdError, match="schema id 2"):
        decode(_with_header(_BBA, schema_id=2))


def test_unsupported_version_is_refused() -> None:
    with pytest.raises(SchemaVersionError, match="version 1"):
        decode(_with_header(_BBA, version=1))


def test_unknown_template_is_refused() -> None:
    with pytest.raises(UnknownTemplateError, match="10004"):
        decode(_with_header(_BBA, template_id=10004))


def test_group_count_past_the_end_of_the_frame_is_an_overrun() -> None:
    bids_count_at = 8 + 26 + 2
    frame = _DIFF[:bids_count_at] + struct.pack("<H", 60000) + _DIFF[bids_count_at + 2 :]
    with pytest.raises(GroupOverrunError, match="60000 bids"):
        decode(frame)


def test_block_length_below_the_schema_is_malformed() -> None:
    with pytest.raises(MalformedFrameError, match="root blockLength 49"):
        decode(_with_header(_BBA, block_length=49))


def test_symbol_that_is_not_utf8_is_malformed() -> None:
    frame = _BBA[:-7] + b"\xff\xfeUSDTX"
    with pytest.raises(MalformedFrameError, match="UTF-8"):
        decode(frame)


def test_buyer_maker_flag_other_than_0_or_1_is_malformed() -> None:
    frame = bytearray(encode_trades([Trade(BTC, 1, 2, 3, 4, False)]))
    frame[8 + 18 + 6 + 24] = 2
    with pytest.raises(MalformedFrameError, match="isBuyerMaker 2"):
        decode(bytes(frame))


def test_decoder_accepts_bytearray_and_memoryview() -> None:
    assert decode(bytearray(_DIFF)) == decode(memoryview(_DIFF)) == decode(_DIFF)


def test_every_decode_error_is_a_decode_error_subclass() -> None:
    for cls in (TruncatedFrameError, SchemaIdError, SchemaVersionError, UnknownTemplateError, GroupOverrunError,
                MalformedFrameError):
        assert issubclass(cls, DecodeError)


# --- the encoder refuses what the wire cannot carry -------------------------------------------------------


def test_encoder_refuses_mantissa_beyond_int64() -> None:
    with pytest.raises(MalformedRecordError):
        encode_best_bid_ask(BestBidAsk(BTC, 1, 2, 2**63, 4, 5, 6))


def test_encoder_refuses_exponent_beyond_int8() -> None:
    with pytest.raises(MalformedRecordError):
        encode_depth_diff(DepthDiff(BTC, 1, 1, 2, (), (), price_exponent=-200))


def test_encoder_refuses_more_levels_than_group16_counts() -> None:
    levels = tuple((i, 1) for i in range(65536))
    with pytest.raises(MalformedRecordError, match="65536 levels"):
        encode_depth_snapshot(DepthSnapshot(BTC, 1, levels, ()))


def test_encoder_refuses_trades_that_do_not_share_their_event() -> None:
    a = Trade(BTC, 1, 1000, 5, 1, False)
    with pytest.raises(MalformedRecordError, match="trade 2"):
        encode_trades([a, Trade(BTC, 2, 1001, 5, 1, False)])
    with pytest.raises(MalformedRecordError, match="trade 2"):
        encode_trades([a, Trade(BTC, 2, 1000, 5, 1, False, qty_exponent=-6)])
    with pytest.raises(MalformedRecordError, match="at least one"):
        encode_trades([])


def test_encoder_refuses_empty_or_overlong_symbol() -> None:
    for symbol in ("", "X" * 256):
        with pytest.raises(MalformedRecordError, match="symbol"):
            encode_best_bid_ask(BestBidAsk(symbol, 1, 2, 3, 4, 5, 6))


def test_empty_group_with_zero_block_length_decodes_as_no_levels() -> None:
    # Found by the fuzz test: an empty group's blockLength is irrelevant and may be 0.
    empty = encode_depth_diff(DepthDiff(BTC, 1, 5, 5, (), ()))
    bids_at = 8 + 26
    frame = empty[:bids_at] + struct.pack("<HH", 0, 0) + struct.pack("<HH", 0, 0) + empty[bids_at + 8 :]
    assert decode(frame) == DepthDiff(BTC, 1, 5, 5, (), ())
    trade_group_at = 8 + 18
    trades = encode_trades_event(TradesEvent(BTC, 1, 2, ()))
    assert decode(trades[:trade_group_at] + struct.pack("<HI", 0, 0) + trades[trade_group_at + 6 :]) == TradesEvent(
        BTC, 1, 2, ()
    )
