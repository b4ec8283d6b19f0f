"""The Flink job's plain-data elements: keys and event times of bus payloads, exact row lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.processor import trade

from btcpipe.domain.errors import DataError
from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.records import BestBidAsk
from btcpipe.domain.time import US_PER_SEC
from btcpipe.engines.flink.elements import (
    BEST_BID_ASK_KIND,
    HEARTBEAT_KIND,
    TRADES,
    apply_payloads,
    element_of,
    encode_line,
    parse_row_line,
    row_line,
)
from btcpipe.features.spec import FeatureParams
from btcpipe.features.streaming import FeatureRow
from btcpipe.features.symbol_state import SymbolFeatureState
from btcpipe.wire.codec import encode_best_bid_ask, encode_heartbeat, encode_trades

T0 = 1_723_075_200 * US_PER_SEC


def test_trade_payload_is_keyed_by_symbol_and_timed_by_its_newest_trade() -> None:
    line = encode_line(encode_trades([trade(1, T0 + 100_000), trade(2, T0 + 1_700_500)]))
    e = element_of(line, 0)
    assert e is not None
    assert (e.symbol, e.kind, e.ts_ms) == ("BTCUSDT", TRADES, (T0 + 1_700_500) // 1000)
    assert e.timer_ms == (T0 + 2 * US_PER_SEC) // 1000  # the end of the row the newest trade belongs to


def test_heartbeat_moves_the_bounded_watermark_exactly_to_its_time() -> None:
    t = T0 + 5 * US_PER_SEC
    e = element_of(encode_line(encode_heartbeat(Heartbeat("BTCUSDT", t))), 250)
    assert e is not None
    assert e.kind == HEARTBEAT_KIND
    # Flink's watermark is the newest timestamp − bound − 1 ms: it reaches t, closing the row ending at t
    assert e.ts_ms - 250 - 1 == t // 1000 == e.timer_ms


def test_best_bid_ask_payload_is_timed_by_its_event() -> None:
    bba = BestBidAsk("ETHUSDT", T0 + 2_000_001, 7, 3_000_000_000_000, 1, 3_000_100_000_000, 1, -8, -8)
    e = element_of(encode_line(encode_best_bid_ask(bba)), 0)
    assert e is not None
    assert (e.symbol, e.kind, e.ts_ms) == ("ETHUSDT", BEST_BID_ASK_KIND, (T0 + 2_000_001) // 1000)


def test_a_line_that_is_not_a_payload_is_a_data_error() -> None:
    with pytest.raises(DataError):
        element_of("not base64 !!", 0)
    with pytest.raises(DataError):
        element_of(encode_line(b"\xc3\x01garbage"), 0)


def test_row_lines_round_trip_every_bit_nan_included() -> None:
    values = np.array([0.1 + 0.2, math.nan, -0.0, 5e-324, 1e308])
    row = FeatureRow("BTCUSDT", T0, values, tuple("abcde"), 3)
    back = parse_row_line(row_line(row))
    assert back.ts_sec == T0
    assert back.n_trades == 3
    assert np.array_equal(np.array(back.values).view(np.int64), values.view(np.int64))


def test_payloads_applied_in_runs_give_the_rows_of_the_same_trades_fed_directly() -> None:
    params = FeatureParams(trade_size_p95=0.05)
    trades = [trade(i, T0 + i * 150_000, 60_000.0 + i, 0.01 * (1 + i % 3)) for i in range(1, 80)]
    direct = SymbolFeatureState("BTCUSDT", params, lateness_us=0)
    direct.add_trades(trades)
    via = SymbolFeatureState("BTCUSDT", params, lateness_us=0)
    lines = [encode_line(encode_trades(trades[i:i + 7])) for i in range(0, len(trades), 7)]
    apply_payloads(via, [TRADES] * len(lines), lines)
    end = T0 + 12 * US_PER_SEC
    a, b = direct.close_until(end), via.close_until(end)
    assert len(a) == len(b) > 0
    assert all(np.array_equal(x.values, y.values, equal_nan=True) for x, y in zip(a, b, strict=True))
