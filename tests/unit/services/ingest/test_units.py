"""Pure parts of the ingestor: de-duplication, trade-id gaps, message decoding, bronze tables, backoff."""

from __future__ import annotations

import random

import orjson
import pytest

from btcpipe.binance import sbe
from btcpipe.binance.rest_parsing import rest_trades
from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_client import DeliveredFilter, MarketStreamClient, StreamSettings
from btcpipe.binance.ws_messages import decode_binary, decode_text, normalize, stream_names
from btcpipe.cli.ingest import stream_urls
from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.errors import ConfigError, DecodeError, MalformedRecordError
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade
from btcpipe.lake.schemas import BRONZE_DEPTH, BRONZE_TRADES
from btcpipe.services.ingest.bronze import book_ticker_table, depth_table, trades_table
from btcpipe.services.ingest.trades import TradeSequencer

S = "BTCUSDT"


def trade(i: int, price: int = 6_180_000_000_000, qty: int = 12_300_000) -> Trade:
    return Trade(S, i, 1_723_161_255_000_000 + i, price, qty, i % 2 == 0)


def event(*ids: int) -> TradesEvent:
    return TradesEvent(S, 1, 1, tuple(trade(i) for i in ids))


def diff(first: int, last: int) -> DepthDiff:
    return DepthDiff(S, 5, first, last, ((100, 1),), ((101, 0),))


# --- de-duplication ---------------------------------------------------------------------------------------
def test_delivered_filter_drops_repeats_and_keeps_the_new_part_of_an_overlapping_batch() -> None:
    f = DeliveredFilter()
    assert f.admit(event(1, 2, 3)) == event(1, 2, 3)
    assert f.admit(event(2, 3)) is None
    partial = f.admit(event(3, 4, 5))
    assert isinstance(partial, TradesEvent)
    assert [t.id for t in partial.trades] == [4, 5]
    assert f.admit(diff(10, 12)) is not None
    assert f.admit(diff(10, 12)) is None
    assert f.admit(diff(13, 13)) is not None
    bba = BestBidAsk(S, 1, 7, 1, 1, 2, 1)
    assert f.admit(bba) is bba
    assert f.admit(bba) is None


def test_delivered_filter_keeps_symbols_and_kinds_apart() -> None:
    f = DeliveredFilter()
    assert f.admit(event(5)) is not None
    other = TradesEvent("ETHUSDT", 1, 1, (Trade("ETHUSDT", 5, 1, 1, 1, False),))
    assert f.admit(other) is other
    assert f.admit(diff(1, 5)) is not None, "depth ids are not trade ids"


# --- trade-id gaps ----------------------------------------------------------------------------------------
def test_sequencer_reports_gaps_between_and_inside_batches_and_skips_seen_ids() -> None:
    seq = TradeSequencer(S)
    fresh, gaps = seq.accept([trade(10), trade(11)], 99)
    assert [t.id for t in fresh] == [10, 11]
    assert gaps == []
    fresh, gaps = seq.accept([trade(11), trade(14), trade(15), trade(18)], 100)
    assert [t.id for t in fresh] == [14, 15, 18]
    assert [(g.first_missing, g.last_missing, g.ts_detected) for g in gaps] == [(12, 13, 100), (16, 17, 100)]
    assert seq.last_id == 18


def test_rest_trades_parses_ms_and_us_pages_and_refuses_bad_items() -> None:
    ms_page = [{"id": 8, "price": "61800.01", "qty": "0.001", "quoteQty": "61.80001", "time": 1723161255000,
                "isBuyerMaker": True, "isBestMatch": True}]
    us_page = [{"id": 7, "price": "61800.00", "qty": "0.5", "quoteQty": "30900", "time": 1723161254999123,
                "isBuyerMaker": False, "isBestMatch": True}]
    trades = rest_trades(us_page, S, ts_recv=5) + rest_trades(ms_page, S, ts_recv=5)
    assert [(t.id, t.ts_event, t.price_mantissa, t.qty_mantissa, t.ts_recv) for t in trades] == [
        (7, 1723161254999123, 6_180_000_000_000, 50_000_000, 5),
        (8, 1723161255000000, 6_180_001_000_000, 100_000, 5),
    ]
    assert [t.id for t in rest_trades([*ms_page, dict(ms_page[0], id=3)], S)] == [3, 8], "id order"
    with pytest.raises(MalformedRecordError):
        rest_trades([{"id": 1}], S)
    with pytest.raises(MalformedRecordError):
        rest_trades({"code": -1121}, S)  # type: ignore[arg-type]
    with pytest.raises(MalformedRecordError, match="mix milliseconds and microseconds"):
        rest_trades(ms_page + us_page, S)  # one page has one unit; guessing per item would hide a broken answer


# --- message decoding -------------------------------------------------------------------------------------
def test_text_frames_decode_controls_markets_and_refuse_garbage() -> None:
    assert decode_text('{"e":"serverShutdown","E":1}', 0) == "server_shutdown"
    assert decode_text('{"result":null,"id":1}', 0) == "ignored"
    msg = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1723161255000001, "s": S, "t": 9,
                                               "p": "61800.01", "q": "0.001", "T": 1723161255000000, "m": True}}
    decoded = decode_text(orjson.dumps(msg), 77)
    assert isinstance(decoded, TradesEvent)
    assert decoded.trades == (Trade(S, 9, 1723161255000000, 6_180_001_000_000, 100_000, True, ts_recv=77),)
    ms = {"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": 1723161255000, "s": S, "U": 1, "u": 2,
                                                   "b": [["1.0", "2.0"]], "a": []}}
    depth = decode_text(orjson.dumps(ms), 0)
    assert isinstance(depth, DepthDiff)
    assert depth.ts_event == 1723161255000000, "a server ignoring timeUnit=MICROSECOND still gives µs"
    for bad in ("{not json", "[1,2]", '{"stream":"btcusdt@trade"}', '{"stream":"btcusdt@nope","data":{}}',
                '{"stream":"btcusdt@trade","data":{"e":"trade"}}'):
        with pytest.raises(MalformedRecordError):
            decode_text(bad, 0)


def test_binary_frames_normalize_other_exponents_exactly_and_refuse_garbage() -> None:
    frame = sbe.encode_best_bid_ask(BestBidAsk(S, 1, 2, 6_180_001, 5, 6_180_002, 7, price_exponent=-2,
                                               qty_exponent=-3))
    bba = decode_binary(frame, 9)
    assert isinstance(bba, BestBidAsk)
    assert (bba.bid_price_mantissa, bba.bid_qty_mantissa, bba.price_exponent, bba.ts_recv) == (
        6_180_001_000_000, 500_000, -8, 9)
    with pytest.raises(DecodeError):
        decode_binary(b"\x00\x01garbage", 0)
    assert normalize(bba) is bba


def test_stream_names_follow_each_wire() -> None:
    assert stream_names(("BTCUSDT",), ("trade", "bestBidAsk", "depth"), "sbe") == [
        "btcusdt@trade", "btcusdt@bestBidAsk", "btcusdt@depth"]
    assert stream_names(("BTCUSDT",), ("trade", "bestBidAsk", "depth"), "json") == [
        "btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms"]


# --- bronze tables ----------------------------------------------------------------------------------------
def test_bronze_tables_keep_mantissas_exact() -> None:
    trades = [trade(1), trade(2, price=6_180_012_345_678, qty=1)]
    table = trades_table(trades)
    assert table.schema == BRONZE_TRADES
    assert list(decimal_mantissas(table.column("price"))) == [t.price_mantissa for t in trades]
    assert list(decimal_mantissas(table.column("quote_qty"))) == [
        t.price_mantissa * t.qty_mantissa // 10**8 for t in trades]
    bba = BestBidAsk(S, 1, 2, 3, 4, 5, 6, ts_recv=7)
    assert book_ticker_table([bba]).column("ask_qty").to_pylist()[0].as_tuple().digits == (6,)
    depth = depth_table([diff(1, 2), DepthDiff(S, 6, 3, 4, (), ((7, 8), (9, 0)))])
    assert depth.schema == BRONZE_DEPTH
    asks = depth.column("asks").to_pylist()
    assert [len(a) for a in asks] == [1, 2]
    assert asks[1][1]["qty"] == 0


# --- client settings --------------------------------------------------------------------------------------
def test_backoff_is_exponential_capped_and_jittered() -> None:
    client = MarketStreamClient([S], StreamSettings("ws://127.0.0.1:1", "ws://127.0.0.1:1/json", api_key="k",
                                                    backoff_base_s=0.5, backoff_cap_s=4.0), rng=random.Random(1))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)]:
        delays = [client._backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100, "jittered"


def test_settings_refuse_nonsense_and_hide_the_key() -> None:
    with pytest.raises(ConfigError, match="unknown stream kind"):
        StreamSettings("ws://a", "ws://b", kinds=("trades",))
    with pytest.raises(ConfigError, match="cap at least the base"):
        StreamSettings("ws://a", "ws://b", backoff_base_s=2.0, backoff_cap_s=1.0)
    with pytest.raises(ConfigError, match="rotate_before_s"):
        StreamSettings("ws://a", "ws://b", max_connection_age_s=10, rotate_before_s=10)
    assert "s3cr3t" not in repr(StreamSettings("ws://a", "ws://b", api_key="s3cr3t"))


def test_stream_urls_derive_from_the_exchange_url() -> None:
    assert stream_urls("http://127.0.0.1:8080", None, None) == ("ws://127.0.0.1:8080", "ws://127.0.0.1:8080/json")
    assert stream_urls("https://x.example", "wss://sbe", None) == ("wss://sbe", "wss://x.example/json")
    with pytest.raises(ConfigError):
        stream_urls("127.0.0.1:8080", None, None)
