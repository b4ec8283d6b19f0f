"""The simulated book: update ids, U/u continuity, and diffs replayed on the initial book = the bbo stream."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from btcpipe.domain.errors import DataError
from btcpipe.domain.records import DepthSnapshot
from btcpipe.domain.tape import MarketTape
from btcpipe.market.simulator import SimConfig, book_at, simulate


@pytest.fixture(scope="module", params=[100_000, 0], ids=["depth@100ms", "every-update"])
def tape(request: pytest.FixtureRequest) -> MarketTape:
    return simulate(SimConfig(seed=11, duration_s=600, depth_interval_us=request.param))


def _replay(tape: MarketTape) -> list[tuple[int, dict[int, int], dict[int, int]]]:
    """The book after each diff, by dictionary replay (the way a client maintains a local book)."""
    assert tape.initial_book is not None
    assert tape.depth is not None
    depth = tape.depth
    bids, asks = dict(tape.initial_book.bids), dict(tape.initial_book.asks)
    out = []
    for i in range(len(depth)):
        lo, hi = int(depth.offsets[i]), int(depth.offsets[i + 1])
        for is_ask, price, qty in zip(
            depth.level_is_ask[lo:hi].tolist(),
            depth.level_price[lo:hi].tolist(),
            depth.level_qty[lo:hi].tolist(),
            strict=True,
        ):
            side = asks if is_ask else bids
            if qty == 0:
                side.pop(price, None)
            else:
                side[price] = qty
        out.append((int(depth.last_update_id[i]), dict(bids), dict(asks)))
    return out


def test_book_ticker_update_ids_strictly_increase_and_times_never_go_back(tape: MarketTape) -> None:
    best_bid_ask = tape.best_bid_asks
    assert best_bid_ask is not None
    assert bool(np.all(np.diff(best_bid_ask.update_id) > 0))
    assert bool(np.all(np.diff(best_bid_ask.ts_event) >= 0))
    assert bool(np.all(best_bid_ask.bid_price < best_bid_ask.ask_price))


def test_depth_diffs_are_continuous_from_the_initial_book(tape: MarketTape) -> None:
    depth, initial = tape.depth, tape.initial_book
    assert depth is not None
    assert initial is not None
    assert depth.first_update_id[0] == initial.last_update_id + 1
    assert bool(np.all(depth.first_update_id[1:] == depth.last_update_id[:-1] + 1))  # U = previous u + 1
    assert bool(np.all(depth.last_update_id >= depth.first_update_id))
    assert bool(np.all(np.diff(depth.ts_event) >= 0))
    assert bool(np.all(np.diff(depth.offsets) > 0))  # no empty diff
    best_bid_ask = tape.best_bid_asks
    assert best_bid_ask is not None
    assert depth.last_update_id[-1] == best_bid_ask.update_id[-1]


def test_depth_diffs_of_the_100ms_stream_cover_one_window_each() -> None:
    cfg = SimConfig(seed=11, duration_s=120)
    depth = simulate(cfg).depth
    assert depth is not None
    windows = (depth.ts_event - cfg.start_us) // 100_000
    assert bool(np.all(np.diff(windows) > 0))
    assert len(depth) <= 1200


def test_replayed_diffs_reproduce_the_best_bid_and_ask_at_every_diff(tape: MarketTape) -> None:
    best_bid_ask = tape.best_bid_asks
    assert best_bid_ask is not None
    position = {uid: i for i, uid in enumerate(best_bid_ask.update_id.tolist())}
    checked = 0
    for last_id, bids, asks in _replay(tape):
        i = position[last_id]
        assert max(bids) == best_bid_ask.bid_price[i]
        assert bids[max(bids)] == best_bid_ask.bid_qty[i]
        assert min(asks) == best_bid_ask.ask_price[i]
        assert asks[min(asks)] == best_bid_ask.ask_qty[i]
        assert max(bids) < min(asks)
        checked += 1
    assert checked == len(tape.depth or ())
    if checked == len(best_bid_ask) - 1:  # one diff per update: every ticker but the initial one was checked
        assert tape.initial_book is not None
        assert tape.initial_book.bids[0] == (int(best_bid_ask.bid_price[0]), int(best_bid_ask.bid_qty[0]))


def test_the_book_keeps_its_depth_on_both_sides_and_no_stale_levels(tape: MarketTape) -> None:
    levels = 5
    for _, bids, asks in _replay(tape)[::50]:
        assert len(bids) == levels
        assert len(asks) == levels
        assert max(bids) - min(bids) == (levels - 1) * 1_000_000
        assert max(asks) - min(asks) == (levels - 1) * 1_000_000


def test_book_at_equals_the_replayed_book_at_every_sampled_diff(tape: MarketTape) -> None:
    replayed = _replay(tape)
    for last_id, bids, asks in replayed[:: max(1, len(replayed) // 40)]:
        snap = book_at(tape, last_id)
        assert snap.last_update_id == last_id
        assert snap.bids == tuple(sorted(bids.items(), reverse=True))
        assert snap.asks == tuple(sorted(asks.items()))


def test_book_at_an_id_inside_a_diff_answers_the_book_of_the_diff_before() -> None:
    tape = simulate(SimConfig(seed=11, duration_s=60))
    depth = tape.depth
    assert depth is not None
    wide = int(np.flatnonzero(depth.last_update_id > depth.first_update_id)[1])
    inside = int(depth.first_update_id[wide])
    snap = book_at(tape, inside)
    assert snap.last_update_id == depth.last_update_id[wide - 1]
    assert snap == book_at(tape, int(depth.last_update_id[wide - 1]))
    assert (
        book_at(tape, int(depth.last_update_id[wide]), limit=2).bids
        == book_at(tape, int(depth.last_update_id[wide])).bids[:2]
    )


def test_book_at_the_initial_id_is_the_initial_book() -> None:
    tape = simulate(SimConfig(seed=3, duration_s=30))
    assert tape.initial_book is not None
    snap = book_at(tape, tape.initial_book.last_update_id)
    assert (snap.bids, snap.asks) == (tape.initial_book.bids, tape.initial_book.asks)


def test_book_at_refuses_an_id_before_the_initial_book_or_a_tape_without_depth() -> None:
    tape = simulate(SimConfig(seed=3, duration_s=30))
    assert tape.initial_book is not None
    with pytest.raises(DataError, match="before the initial book"):
        book_at(tape, tape.initial_book.last_update_id - 1)
    with pytest.raises(DataError, match="no initial book"):
        book_at(dataclasses.replace(tape, depth=None), tape.initial_book.last_update_id)


def test_initial_book_is_a_snapshot_one_id_before_the_first_diff() -> None:
    cfg = SimConfig(seed=3, duration_s=30)
    tape = simulate(cfg)
    initial = tape.initial_book
    assert isinstance(initial, DepthSnapshot)
    assert initial.last_update_id == cfg.first_update_id - 1
    assert initial.ts_event == cfg.start_us
    assert len(initial.bids) == cfg.depth_levels == len(initial.asks)
