"""The real recording's REST snapshot + depth diffs, through Binance's procedure, against its bookTicker."""

from __future__ import annotations

from pathlib import Path

import pytest

from btcpipe.binance.order_book import BookSynchronizer, DiffOutcome, SnapshotOutcome
from btcpipe.binance.recording import Recording, load_recording
from btcpipe.domain.records import DepthDiff, DepthSnapshot, Level


@pytest.fixture(scope="module")
def recording(recording_paths: list[Path]) -> Recording:
    return load_recording(recording_paths)


def _events_in_receive_order(rec: Recording) -> list[DepthDiff | DepthSnapshot]:
    """Diffs and the snapshot in the order the recorder received them: the snapshot lands after 3 diffs."""
    (snapshot,) = rec.snapshots
    events: list[DepthDiff | DepthSnapshot] = [*rec.depth_diffs, snapshot]
    return sorted(events, key=lambda e: e.ts_recv)


def _top_at_update_id(rec: Recording) -> dict[int, tuple[Level, Level]]:
    return {
        t.update_id: ((t.bid_price_mantissa, t.bid_qty_mantissa), (t.ask_price_mantissa, t.ask_qty_mantissa))
        for t in rec.best_bid_asks
    }


def test_recorded_snapshot_and_diffs_give_a_book_whose_top_equals_the_recorded_book_ticker(
    recording: Recording,
) -> None:
    tickers = _top_at_update_id(recording)
    sync = BookSynchronizer(recording.symbol)
    compared = 0
    for event in _events_in_receive_order(recording):
        if isinstance(event, DepthSnapshot):
            assert sync.needs_snapshot
            assert sync.on_snapshot(event) is SnapshotOutcome.SYNCED
            continue
        outcome = sync.on_diff(event)
        book = sync.book
        if outcome is not DiffOutcome.APPLIED or book is None:
            continue
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None
        assert ask is not None
        assert bid[0] < ask[0], f"crossed book at update {book.last_update_id}"
        expected = tickers.get(book.last_update_id)
        if expected is not None:
            assert (bid, ask) == expected, f"top of book differs from bookTicker at update {book.last_update_id}"
            compared += 1
    assert compared > 1000  # 1072 bookTicker updates share their id with the end of a depth diff
    assert sync.counters.resyncs == 0
    assert sync.counters.diffs_dropped == 2  # the two diffs wholly before the snapshot's lastUpdateId
    assert sync.counters.diffs_applied == len(recording.depth_diffs) - 2


def _reference(recording: Recording, keep: set[int]) -> tuple[BookSynchronizer, dict[int, DepthSnapshot]]:
    """The book run over all diffs, and its states at the ``keep`` update ids as a REST call would return them."""
    sync = BookSynchronizer(recording.symbol)
    states: dict[int, DepthSnapshot] = {}
    for event in _events_in_receive_order(recording):
        if isinstance(event, DepthSnapshot):
            sync.on_snapshot(event)
        elif sync.on_diff(event) is DiffOutcome.APPLIED and sync.book and sync.book.last_update_id in keep:
            states[sync.book.last_update_id] = sync.book.to_snapshot()
    return sync, states


def test_a_missing_recorded_diff_triggers_a_resync_that_recovers_the_same_book(recording: Recording) -> None:
    diffs = recording.depth_diffs
    lost, fresh_snapshot_after = 3000, 3005
    reference, states = _reference(recording, {diffs[fresh_snapshot_after].last_update_id})
    sync = BookSynchronizer(recording.symbol)
    outcomes: list[DiffOutcome] = []
    for i, event in enumerate(_events_in_receive_order(recording)):
        if isinstance(event, DepthSnapshot):
            sync.on_snapshot(event)
            continue
        if event is diffs[lost]:
            continue
        outcomes.append(sync.on_diff(event))
        if event is diffs[fresh_snapshot_after]:
            assert sync.needs_snapshot
            assert sync.on_snapshot(states[event.last_update_id]) is SnapshotOutcome.SYNCED
        if 1000 <= i < 1010:  # a replayed older diff on the way is stale and dropped
            assert sync.on_diff(diffs[i - 500]) is DiffOutcome.DROPPED
    assert outcomes.count(DiffOutcome.RESYNC) == 1
    assert sync.counters.resyncs == 1
    assert sync.book is not None
    assert reference.book is not None
    assert sync.book.to_snapshot() == reference.book.to_snapshot()
    assert sync.book.last_update_id == diffs[-1].last_update_id
