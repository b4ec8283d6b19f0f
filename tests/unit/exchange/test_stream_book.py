"""The depth20 stream's book is the REST book: same replay, same answers, forward on its grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from btcpipe.binance.recording import load_recording
from btcpipe.domain.tape import BestBidAskTape, MarketTape
from btcpipe.exchange.book import BookReplayer
from btcpipe.exchange.streams.timeline import KIND_DEPTH20, SymbolTimeline
from btcpipe.market.handmade import market_tape, snapshot

T0 = 1_735_689_600_000_000
SYMBOL = "BTCUSDT"


def _tape(*, diffs: bool = True, tickers: bool = True) -> MarketTape:
    bids = [(f"{99 - i * 0.01:.2f}", "1") for i in range(30)]
    asks = [(f"{100 + i * 0.01:.2f}", "2") for i in range(30)]
    # ts_event, update_id, bid price, bid qty, ask price, ask qty (mantissas)
    rows = [(T0 + 40_000, 11, 9_900_000_000, 100_000_000, 10_000_000_000, 200_000_000),
            (T0 + 160_000, 12, 9_901_000_000, 300_000_000, 10_000_000_000, 100_000_000)]
    best_bid_asks = BestBidAskTape(*np.array(rows, dtype=np.int64).T.copy())
    return market_tape(
        SYMBOL,
        [(1, T0 + 10_000, "100.00", "1", False), (2, T0 + 200_000, "100.00", "1", True)],
        diffs=[
            (T0 + 60_000, 11, 11, [(False, "99.01", "3")]),
            (T0 + 170_000, 12, 12, [(True, "100.00", "0")]),
        ] if diffs else [],
        initial_book=snapshot(SYMBOL, 10, bids, asks, ts_event=T0),
        best_bid_asks=best_bid_asks if tickers else None,
    )


def _grid(timeline: SymbolTimeline) -> list[int]:
    return [int(g) for g in timeline.index[timeline.kind == KIND_DEPTH20]]


def test_depth20_equals_the_rest_book_at_each_grid_time_on_the_real_recording(recording_paths: list[Path]) -> None:
    tape = load_recording(recording_paths).to_tape()
    timeline = SymbolTimeline(tape)
    grid = _grid(timeline)
    rest = BookReplayer(tape)
    # REST is asked at its own times (backwards too) in between; the stream's book never rewinds with it.
    checked = 0
    for k, grid_us in enumerate(grid):
        stream = timeline.depth20(grid_us)
        if k % 200 == 0:
            if k % 3000 == 0:
                rest.snapshot(grid[k // 2], 5)
            assert stream == rest.snapshot(grid_us, 20)
            assert stream is not None
            assert len(stream.bids) == len(stream.asks) == 20
            checked += 1
    assert checked >= 60


def test_depth20_between_diffs_keeps_its_levels_with_each_grid_time() -> None:
    timeline = SymbolTimeline(_tape(), depth20_interval_us=50_000)
    assert _grid(timeline) == [T0 + 50_000, T0 + 100_000, T0 + 150_000, T0 + 200_000]
    at_100, at_150, at_200 = (timeline.depth20(t) for t in _grid(timeline)[1:])
    assert at_100 is not None
    assert at_150 is not None
    assert at_200 is not None
    assert (at_100.last_update_id, at_100.ts_event) == (11, T0 + 100_000)
    assert (at_150.last_update_id, at_150.ts_event) == (11, T0 + 150_000)
    assert (at_150.bids, at_150.asks) == (at_100.bids, at_100.asks)
    assert at_100.bids[0] == (9_901_000_000, 300_000_000)  # the diff at 60 ms added a better bid
    assert at_200.last_update_id == 12
    assert at_200.asks[0] == (10_001_000_000, 200_000_000)  # the diff at 170 ms removed the best ask


def test_depth20_without_diffs_is_the_best_bid_ask_as_of_the_grid_time() -> None:
    timeline = SymbolTimeline(_tape(diffs=False), depth20_interval_us=50_000)
    at_50, at_100, at_150 = (timeline.depth20(t) for t in _grid(timeline)[:3])
    assert at_50 is not None
    assert at_150 is not None
    assert (at_50.last_update_id, at_50.bids, at_50.asks) == (11, ((9_900_000_000, 100_000_000),),
                                                              ((10_000_000_000, 200_000_000),))
    assert at_100 == dataclasses.replace(at_50, ts_event=T0 + 100_000)
    assert at_150.last_update_id == 11
    assert timeline.depth20(T0 + 170_000) == dataclasses.replace(
        at_50, last_update_id=12, bids=((9_901_000_000, 300_000_000),), asks=((10_000_000_000, 100_000_000),),
        ts_event=T0 + 170_000)
    assert SymbolTimeline(_tape(diffs=False)).depth20(T0 + 30_000) is None, "before the first best bid/ask"


def test_depth20_of_a_tape_with_only_its_initial_book_is_that_books_top_20() -> None:
    tape = _tape(diffs=False, tickers=False)
    assert tape.initial_book is not None
    snap = SymbolTimeline(tape).depth20(T0 + 50_000)
    assert snap is not None
    assert snap.last_update_id == 10
    assert snap.ts_event == T0 + 50_000
    assert (snap.bids, snap.asks) == (tape.initial_book.bids[:20], tape.initial_book.asks[:20])
    # REST depth on such a tape honours its limit the same way.
    assert BookReplayer(tape).snapshot(T0, 3).bids == tape.initial_book.bids[:3]
