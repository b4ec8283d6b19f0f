"""Local order book and Binance's snapshot + buffered diffs procedure: synthetic cases and a property test."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btcpipe.binance.order_book import BookSynchronizer, DiffOutcome, OrderBook, SnapshotOutcome
from btcpipe.domain.errors import DataError, MalformedRecordError
from btcpipe.domain.records import DepthDiff, DepthSnapshot

SYM = "BTCUSDT"


Levels = tuple[tuple[int, int], ...]


def _diff(first: int, last: int, bids: Levels = (), asks: Levels = ()) -> DepthDiff:
    return DepthDiff(SYM, 0, first, last, bids, asks)


def _snapshot(last: int, bids: Levels = ((100, 1),), asks: Levels = ((101, 1),)) -> DepthSnapshot:
    return DepthSnapshot(SYM, last, bids, asks)


# --- OrderBook -----------------------------------------------------------------------------------------


def test_book_keeps_best_levels_through_adds_and_removals_of_the_best() -> None:
    book = OrderBook.from_snapshot(_snapshot(10, bids=((100, 5), (99, 6), (98, 7)), asks=((101, 1), (103, 2))))
    assert book.best_bid() == (100, 5)
    assert book.best_ask() == (101, 1)
    book.set_levels([(100, 0), (97, 3)], [(101, 0), (102, 9)])
    assert book.best_bid() == (99, 6)
    assert book.best_ask() == (102, 9)
    book.set_levels([(99, 0), (98, 0), (97, 0)], [(102, 0), (103, 0)])
    assert book.best_bid() is None
    assert book.best_ask() is None
    book.set_levels([(90, 1)], [(95, 2)])
    assert (book.best_bid(), book.best_ask()) == ((90, 1), (95, 2))


def test_removing_an_absent_level_changes_nothing() -> None:
    book = OrderBook.from_snapshot(_snapshot(10, bids=((100, 5),)))
    book.set_levels([(50, 0)], [(500, 0)])
    assert book.bids == {100: 5}
    assert book.best_bid() == (100, 5)


def test_top_and_to_snapshot_order_bids_down_and_asks_up() -> None:
    book = OrderBook(SYM, last_update_id=7)
    book.set_levels([(p, p) for p in (3, 9, 1, 7)], [(p, p) for p in (20, 11, 15)])
    assert book.top(2) == (((9, 9), (7, 7)), ((11, 11), (15, 15)))
    snap = book.to_snapshot(ts_event=123)
    assert snap == DepthSnapshot(SYM, 7, ((9, 9), (7, 7), (3, 3), (1, 1)), ((11, 11), (15, 15), (20, 20)), 123)
    assert book.to_snapshot(depth=1).bids == ((9, 9),)


def test_diff_at_another_exponent_is_rescaled_exactly_and_refused_if_digits_would_be_lost() -> None:
    book = OrderBook.from_snapshot(_snapshot(1, bids=((6_183_763_000_000, 100_000_000),), asks=()))
    book.apply(DepthDiff(SYM, 0, 2, 2, ((6_183_763, 2),), (), price_exponent=-2, qty_exponent=0))
    assert book.bids == {6_183_763_000_000: 200_000_000}
    assert book.last_update_id == 2
    with pytest.raises(MalformedRecordError):
        book.apply(DepthDiff(SYM, 0, 3, 3, ((1, 1),), (), price_exponent=-9))


def test_negative_quantity_is_refused() -> None:
    with pytest.raises(MalformedRecordError, match="negative"):
        OrderBook(SYM).set_levels([(1, -1)], [])


def test_levels_set_before_a_refused_one_keep_the_best_prices_true() -> None:
    book = OrderBook.from_snapshot(_snapshot(1, bids=((100, 5),), asks=((105, 1),)))
    with pytest.raises(MalformedRecordError, match="negative ask"):
        book.set_levels([(101, 2), (100, 0)], [(104, 3), (103, -1)])
    assert book.best_bid() == (101, 2)
    assert book.best_ask() == (104, 3)


# --- BookSynchronizer ----------------------------------------------------------------------------------


def test_synchronizer_buffers_until_snapshot_and_drops_diffs_the_snapshot_covers() -> None:
    sync = BookSynchronizer(SYM)
    assert not sync.needs_snapshot
    assert sync.on_diff(_diff(5, 8, bids=((99, 1),))) is DiffOutcome.BUFFERED
    assert sync.needs_snapshot
    assert sync.first_buffered_update_id == 5
    assert sync.on_diff(_diff(9, 12, bids=((98, 1),))) is DiffOutcome.BUFFERED
    assert sync.on_diff(_diff(13, 15, asks=((102, 4),))) is DiffOutcome.BUFFERED

    assert sync.on_snapshot(_snapshot(10)) is SnapshotOutcome.SYNCED

    book = sync.book
    assert book is not None
    assert book.last_update_id == 15
    assert book.bids == {100: 1, 98: 1}  # (99, 1) came in the dropped diff 5..8, before the snapshot
    assert book.asks == {101: 1, 102: 4}
    assert (sync.counters.diffs_dropped, sync.counters.diffs_applied, sync.counters.resyncs) == (1, 2, 0)
    assert not sync.needs_snapshot


def test_snapshot_older_than_first_buffered_diff_is_refused_and_another_is_needed() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(100, 110))
    assert sync.on_snapshot(_snapshot(98)) is SnapshotOutcome.STALE
    assert sync.needs_snapshot
    assert sync.counters.snapshots_refused == 1
    # A snapshot just before the first buffered update is contiguous with it.
    assert sync.on_snapshot(_snapshot(99)) is SnapshotOutcome.SYNCED
    assert sync.book is not None
    assert sync.book.last_update_id == 110


def test_stale_diffs_after_sync_are_dropped_and_leave_the_book_alone() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(1, 3))
    sync.on_snapshot(_snapshot(2))
    assert sync.on_diff(_diff(4, 6, bids=((100, 9),))) is DiffOutcome.APPLIED
    before = sync.book.to_snapshot() if sync.book else None
    assert sync.on_diff(_diff(4, 6, bids=((100, 1),))) is DiffOutcome.DROPPED  # a repeat
    assert sync.on_diff(_diff(1, 2, asks=((101, 0),))) is DiffOutcome.DROPPED  # an old one
    assert sync.book is not None
    assert sync.book.to_snapshot() == before
    assert sync.counters.diffs_dropped == 2


def test_diff_overlapping_the_book_id_is_applied() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(1, 3))
    sync.on_snapshot(_snapshot(3))
    assert sync.on_diff(_diff(2, 7, bids=((100, 4),))) is DiffOutcome.APPLIED
    assert sync.book is not None
    assert sync.book.bids[100] == 4


def test_missed_diff_discards_the_book_counts_a_resync_and_buffers_again() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(1, 3))
    sync.on_snapshot(_snapshot(2))
    assert sync.on_diff(_diff(5, 9)) is DiffOutcome.RESYNC  # 4 never arrived
    assert sync.book is None
    assert sync.needs_snapshot
    assert sync.first_buffered_update_id == 5
    assert sync.counters.resyncs == 1
    assert sync.on_diff(_diff(10, 12)) is DiffOutcome.BUFFERED
    assert sync.on_snapshot(_snapshot(9)) is SnapshotOutcome.SYNCED
    assert sync.book is not None
    assert sync.book.last_update_id == 12


def test_gap_inside_the_buffer_makes_the_snapshot_resync_from_the_gap() -> None:
    sync = BookSynchronizer(SYM)
    for first, last in ((1, 3), (4, 6), (9, 12), (13, 14)):  # 7..8 missing
        sync.on_diff(_diff(first, last))
    assert sync.on_snapshot(_snapshot(4)) is SnapshotOutcome.RESYNC
    assert sync.needs_snapshot
    assert sync.first_buffered_update_id == 9
    assert sync.buffered == 2
    assert sync.counters.resyncs == 1
    assert sync.on_snapshot(_snapshot(10)) is SnapshotOutcome.SYNCED
    assert sync.book is not None
    assert sync.book.last_update_id == 14


def test_snapshot_newer_than_every_buffered_diff_syncs_and_checks_the_next_diff() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(1, 3))
    assert sync.on_snapshot(_snapshot(20)) is SnapshotOutcome.SYNCED
    assert sync.counters.diffs_dropped == 1
    assert sync.on_diff(_diff(15, 21)) is DiffOutcome.APPLIED
    assert sync.on_diff(_diff(23, 25)) is DiffOutcome.RESYNC


def test_buffer_is_bounded_and_counts_what_it_pushes_out() -> None:
    sync = BookSynchronizer(SYM, max_buffer=3)
    for i in range(5):
        sync.on_diff(_diff(10 * i + 1, 10 * i + 10))
    assert sync.buffered == 3
    assert sync.first_buffered_update_id == 21
    assert sync.counters.diffs_dropped == 2


def test_reset_discards_and_counts_a_resync_and_snapshot_when_synced_is_ignored() -> None:
    sync = BookSynchronizer(SYM)
    sync.on_diff(_diff(1, 3))
    sync.on_snapshot(_snapshot(2))
    assert sync.on_snapshot(_snapshot(50)) is SnapshotOutcome.IGNORED
    sync.reset()
    assert sync.book is None
    assert not sync.needs_snapshot
    assert sync.counters.resyncs == 1


def test_other_symbols_data_is_refused() -> None:
    sync = BookSynchronizer(SYM)
    with pytest.raises(DataError, match="ETHUSDT"):
        sync.on_diff(DepthDiff("ETHUSDT", 0, 1, 2, (), ()))


# --- property: any stream start, any snapshot moment, any split into diffs → the true book ---------------

UPDATES = st.lists(st.tuples(st.booleans(), st.integers(1, 12), st.integers(0, 3)), min_size=1, max_size=80)


def _true_book(updates: list[tuple[bool, int, int]], upto: int) -> tuple[dict[int, int], dict[int, int]]:
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for is_ask, price, qty in updates[:upto]:
        side = asks if is_ask else bids
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)
    return bids, asks


@given(UPDATES, st.data())
def test_synchronized_book_equals_the_true_book_or_asks_for_a_newer_snapshot(
    updates: list[tuple[bool, int, int]], data: st.DataObject
) -> None:
    n = len(updates)  # update k (1-based) is updates[k - 1]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=n)))) if n > 1 else []
    bounds = [0, *cuts, n]
    diffs = []
    for lo, hi in pairwise(bounds):
        latest: dict[tuple[bool, int], int] = {}
        for is_ask, price, qty in updates[lo:hi]:
            latest[(is_ask, price)] = qty
        bids = tuple((p, q) for (a, p), q in latest.items() if not a)
        asks = tuple((p, q) for (a, p), q in latest.items() if a)
        diffs.append(DepthDiff(SYM, 0, lo + 1, hi, bids, asks))
    start = data.draw(st.integers(0, len(diffs) - 1))  # the stream opened late
    fetched_after = data.draw(st.integers(1, len(diffs) - start))  # diffs buffered before the snapshot arrives
    snap_id = data.draw(st.integers(0, diffs[start + fetched_after - 1].last_update_id))
    snap_bids, snap_asks = _true_book(updates, snap_id)
    snapshot = DepthSnapshot(SYM, snap_id, tuple(snap_bids.items()), tuple(snap_asks.items()))

    sync = BookSynchronizer(SYM)
    for d in diffs[start : start + fetched_after]:
        assert sync.on_diff(d) is DiffOutcome.BUFFERED
    outcome = sync.on_snapshot(snapshot)
    if snap_id < diffs[start].first_update_id - 1:
        assert outcome is SnapshotOutcome.STALE
        return
    assert outcome is SnapshotOutcome.SYNCED
    for d in diffs[start + fetched_after :]:
        assert sync.on_diff(d) is DiffOutcome.APPLIED
    assert sync.book is not None
    true_bids, true_asks = _true_book(updates, n)
    assert (sync.book.bids, sync.book.asks) == (true_bids, true_asks)
    assert sync.book.best_bid() == (max(true_bids.items()) if true_bids else None)
    assert sync.book.best_ask() == (min(true_asks.items()) if true_asks else None)
    assert sync.book.last_update_id == n
    assert sync.counters.resyncs == 0
