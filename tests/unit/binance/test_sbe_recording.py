"""The real recording's trades, book tickers, depth diffs and snapshot survive SBE encode → decode exactly."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import pytest

from btcpipe.binance.recording import Recording, load_recording
from btcpipe.binance.sbe import (
    TradesEvent,
    decode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
)


@pytest.fixture(scope="module")
def recording(recording_paths: list[Path]) -> Recording:
    return load_recording(recording_paths)


def test_every_recorded_trade_encodes_alone_and_decodes_back_equal(recording: Recording) -> None:
    assert len(recording.trades) == 19_904
    for trade in recording.trades:
        event = decode(encode_trades([trade]), ts_recv=trade.ts_recv)
        assert isinstance(event, TradesEvent)
        assert event.trades == (trade,)


def test_recorded_trades_grouped_by_match_time_round_trip_as_multi_trade_events(recording: Recording) -> None:
    events = [list(g) for _, g in groupby(recording.trades, key=lambda t: t.ts_event)]
    assert max(len(e) for e in events) > 100  # the recording has large sweeps
    decoded: list[object] = []
    for group in events:
        event = decode(encode_trades(group, event_time=group[0].ts_event + 1), ts_recv=group[0].ts_recv)
        assert isinstance(event, TradesEvent)
        assert event.event_time == group[0].ts_event + 1
        # ts_recv is per frame on the wire: the group shares its first trade's.
        decoded.extend((t.id, t.ts_event, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) for t in event.trades)
    assert decoded == [(t.id, t.ts_event, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) for t in recording.trades]


def test_every_recorded_book_ticker_round_trips(recording: Recording) -> None:
    assert len(recording.best_bid_asks) > 70_000
    for ticker in recording.best_bid_asks:
        assert decode(encode_best_bid_ask(ticker), ts_recv=ticker.ts_recv) == ticker


def test_every_recorded_depth_diff_round_trips(recording: Recording) -> None:
    assert len(recording.depth_diffs) > 6_000
    for diff in recording.depth_diffs:
        assert decode(encode_depth_diff(diff), ts_recv=diff.ts_recv) == diff


def test_recorded_rest_snapshot_of_1000_levels_round_trips_as_depth_snapshot_frame(recording: Recording) -> None:
    (snapshot,) = recording.snapshots
    assert len(snapshot.bids) == len(snapshot.asks) == 1000
    assert decode(encode_depth_snapshot(snapshot), ts_recv=snapshot.ts_recv) == snapshot
