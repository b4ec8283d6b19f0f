"""Periodic JSON stream bodies: klines closing between ticks, merged 1000 ms diffs, klines in a time zone."""

from __future__ import annotations

import numpy as np
import orjson

from btcpipe.exchange.klines import kline_table
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.streams.periodic import PeriodicSource
from btcpipe.exchange.streams.timeline import SymbolTimeline
from btcpipe.market.handmade import market_tape, snapshot

T0 = 1_735_689_600_000_000  # 2025-01-01 00:00 UTC
S = 1_000_000


def _source() -> PeriodicSource:
    tape = market_tape(
        "BTCUSDT",
        [(1, T0 + 59 * S, "100.00", "1", False), (2, T0 + 61 * S, "101.00", "2", True)],
        diffs=[(T0 + 59 * S + 100_000, 5, 6, [(False, "99.00", "3")]),
               (T0 + 59 * S + 600_000, 7, 7, [(False, "99.00", "0"), (True, "102.00", "1")])],
        initial_book=snapshot("BTCUSDT", 4, [("99.00", "1"), ("98.00", "1")], [("101.00", "1")]),
    )
    market = SymbolMarket(tape)
    return PeriodicSource(market, SymbolTimeline(tape, aggs=market.aggs))


def test_a_candle_that_closed_since_the_last_tick_is_sent_once_more_closed_then_the_open_one() -> None:
    (closed,) = (orjson.loads(b) for b in _source().body("kline_1m", T0 + 60 * S, T0 + 58 * S, False))
    assert (closed["k"]["t"], closed["k"]["x"], closed["k"]["c"], closed["k"]["n"]) == (
        T0 // 1000, True, "100.00000000", 1)  # right on the boundary: only the closed candle
    closed, current = (orjson.loads(b) for b in _source().body("kline_1m", T0 + 60 * S + 500_000, T0 + 59 * S, False))
    assert closed["k"]["x"]
    # The new candle has no trade yet: flat at the last price, no ids, as Binance shows it.
    assert (current["k"]["t"], current["k"]["x"], current["k"]["o"], current["k"]["n"], current["k"]["f"]) == (
        (T0 + 60 * S) // 1000, False, "100.00000000", 0, -1)
    (later,) = (orjson.loads(b) for b in _source().body("kline_1m", T0 + 62 * S, T0 + 60 * S, False))
    assert (later["k"]["x"], later["k"]["o"], later["k"]["n"], later["E"]) == (
        False, "101.00000000", 1, (T0 + 62 * S) // 1000)


def test_the_1000ms_diff_merges_the_second_s_diffs_with_each_level_s_latest_quantity() -> None:
    (body,) = _source().body("depth@1000ms", T0 + 60 * S, T0 + 59 * S, False)
    msg = orjson.loads(body)
    assert (msg["U"], msg["u"], msg["E"]) == (5, 7, (T0 + 60 * S) // 1000)
    assert msg["b"] == [["99.00000000", "0.00000000"]]
    assert msg["a"] == [["102.00000000", "1.00000000"]]
    assert _source().body("depth@1000ms", T0 + 61 * S, T0 + 60 * S, False) == []  # nothing changed: nothing sent


def test_klines_in_a_time_zone_open_at_that_zone_s_midnight() -> None:
    ts = np.array([T0 - 9 * 3600 * S, T0 - 7 * 3600 * S], dtype=np.int64)  # 15:00 and 17:00 UTC on Dec 31
    table = kline_table(ts, "1d", 8 * 3600 * S)  # UTC+8: the day turns at 16:00 UTC
    assert table.open_time.tolist() == [T0 - 32 * 3600 * S, T0 - 8 * 3600 * S]


def test_utc8_kline_streams_open_their_day_at_16_utc() -> None:
    (current,) = (orjson.loads(b) for b in _source().body("kline_1d@+08:00", T0 + 62 * S, T0 + 60 * S, False))
    assert current["k"]["t"] == (T0 - 8 * 3600 * S) // 1000  # 2024-12-31 16:00 UTC = 2025-01-01 00:00 UTC+8
    assert current["k"]["T"] == (T0 + 16 * 3600 * S) // 1000 - 1
    assert current["k"]["n"] == 2
