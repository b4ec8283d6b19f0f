"""The stream timeline (event order, match grouping, depth20 grid and book) and the connection-attempt window."""

from __future__ import annotations

import numpy as np
import pytest

from btcpipe.domain.tape import BestBidAskTape, MarketTape
from btcpipe.exchange.streams.auth import ApiKeys, ConnectionAttemptLimiter
from btcpipe.exchange.streams.formats import StreamNameError, parse_stream_list
from btcpipe.exchange.streams.timeline import KIND_BBA, KIND_DEPTH, KIND_DEPTH20, KIND_TRADE, SymbolTimeline
from btcpipe.market.handmade import market_tape, snapshot

T0 = 1_735_689_600_000_000


def _tape() -> MarketTape:
    trades = [
        (10, T0 + 1_000, "100.00", "1", False),
        (11, T0 + 1_000, "100.01", "1", False),  # same time, same taker: one match event
        (12, T0 + 1_000, "99.99", "2", True),  # same time, another taker: a new event
        (13, T0 + 60_000, "100.00", "1", False),
    ]
    tickers = BestBidAskTape(
        ts_event=np.array([T0 + 1_000, T0 + 70_000], dtype=np.int64),
        update_id=np.array([5, 9], dtype=np.int64),
        bid_price=np.array([9_999_000_000, 9_999_000_000], dtype=np.int64),
        bid_qty=np.array([100_000_000, 100_000_000], dtype=np.int64),
        ask_price=np.array([10_000_000_000, 10_001_000_000], dtype=np.int64),
        ask_qty=np.array([100_000_000, 100_000_000], dtype=np.int64),
    )
    return market_tape(
        "BTCUSDT",
        trades,
        taker_orders=[1, 1, 2, 3],
        diffs=[
            (T0 + 1_000, 5, 6, [(True, "100.00", "0"), (True, "100.02", "3")]),  # removes the best ask
            (T0 + 80_000, 7, 9, [(False, "99.98", "4")]),
        ],
        initial_book=snapshot("BTCUSDT", 4, [("99.99", "1")], [("100.00", "1"), ("100.05", "2")]),
        best_bid_asks=tickers,
    )


def test_events_are_in_time_order_with_trades_then_tickers_then_diffs_then_depth20_on_a_tie() -> None:
    tl = SymbolTimeline(_tape(), depth20_interval_us=50_000)
    events = list(zip(tl.key.tolist(), tl.kind.tolist(), strict=True))
    tie = T0 + 1_000
    assert events[:4] == [(tie, KIND_TRADE), (tie, KIND_TRADE), (tie, KIND_BBA), (tie, KIND_DEPTH)]
    assert [k for k, kind in events if kind == KIND_DEPTH20] == [T0 + 50_000]  # the grid between first and last event
    assert tl.key.tolist() == sorted(tl.key.tolist())
    assert [[t.id for t in tl.trades_of_group(g)] for g in range(len(tl.group_start))] == [[10, 11], [12], [13]]


def test_depth20_is_the_book_after_the_diffs_so_far() -> None:
    tl = SymbolTimeline(_tape(), depth20_interval_us=50_000)
    snap = tl.depth20(T0 + 50_000)
    assert snap is not None
    assert snap.last_update_id == 6
    assert snap.bids == ((9_999_000_000, 100_000_000),)
    assert snap.asks == ((10_002_000_000, 300_000_000), (10_005_000_000, 200_000_000))


def test_attempt_window_refuses_past_the_limit_and_forgets_old_attempts() -> None:
    now = [1000.0]
    limiter = ConnectionAttemptLimiter(3, 300.0, clock=lambda: now[0])
    assert [limiter.attempt("ip").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.attempt("ip")
    assert not refused.allowed
    assert refused.retry_after_s == 300
    assert limiter.attempt("other").allowed  # per IP
    now[0] += 300.0
    assert limiter.attempt("ip").allowed


def test_api_keys_answer_401_for_none_and_403_for_unknown() -> None:
    keys = ApiKeys({"k"})
    assert (keys.check(None), keys.check(""), keys.check("x"), keys.check("k")) == (401, 401, 403, 200)


@pytest.mark.parametrize("raw", ["btcusdt@trade/btcusdt@depth@100ms/", "btcusdt@bookTicker"])
def test_json_stream_names_parse(raw: str) -> None:
    assert parse_stream_list(raw, "json", ["BTCUSDT"], 10)


def test_too_many_streams_are_refused() -> None:
    with pytest.raises(StreamNameError, match="exceed"):
        parse_stream_list("/".join(["btcusdt@trade"] * 3), "sbe", ["BTCUSDT"], 2)
