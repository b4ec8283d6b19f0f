"""The simulator's order book as streams: best bid/ask updates, depth diffs and snapshots.

The book is a sequence of atomic updates, one update id each. Update 0 is the initial book. A price move
re-quotes both sides (``depth_levels`` consecutive ticks from the best, fresh quantities); a taker order
is followed by its side's makers refilling the levels it took (fresh quantities, same prices). Every
update yields one best bid/ask; depth diffs carry, per window, every level whose final state differs
from the window's start (removed levels with quantity 0), so replaying them reproduces the book.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError
from btcpipe.domain.records import DepthSnapshot
from btcpipe.domain.tape import BestBidAskTape, DepthTape, MarketTape
from btcpipe.exchange.book import BookReplayer

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BookPath:
    """The book after each atomic update k (k = 0 is the initial book), in ticks and steps."""

    ts: I64
    bid_ticks: I64  # best bid price in ticks
    ask_ticks: I64
    bid_row: I64  # row of bid_qty holding the bid side's level quantities after update k
    ask_row: I64
    bid_qty: I64  # (rows, depth_levels) quantities in steps, level 0 = best
    ask_qty: I64
    tick_mantissa: int
    qty_step_mantissa: int
    first_update_id: int  # the id of update 1; update k has id first_update_id - 1 + k

    @property
    def depth_levels(self) -> int:
        return int(self.bid_qty.shape[1])


def best_bid_asks(book: BookPath) -> BestBidAskTape:
    return BestBidAskTape(
        ts_event=book.ts.copy(),
        update_id=book.first_update_id - 1 + np.arange(book.ts.shape[0], dtype=np.int64),
        bid_price=book.bid_ticks * book.tick_mantissa,
        bid_qty=book.bid_qty[book.bid_row, 0] * book.qty_step_mantissa,
        ask_price=book.ask_ticks * book.tick_mantissa,
        ask_qty=book.ask_qty[book.ask_row, 0] * book.qty_step_mantissa,
    )


def initial_snapshot(book: BookPath, symbol: str) -> DepthSnapshot:
    levels = np.arange(book.depth_levels, dtype=np.int64)
    bid_p = (int(book.bid_ticks[0]) - levels) * book.tick_mantissa
    ask_p = (int(book.ask_ticks[0]) + levels) * book.tick_mantissa
    bid_q = book.bid_qty[book.bid_row[0]] * book.qty_step_mantissa
    ask_q = book.ask_qty[book.ask_row[0]] * book.qty_step_mantissa
    return DepthSnapshot(
        symbol=symbol,
        last_update_id=book.first_update_id - 1,
        bids=tuple(zip(bid_p.tolist(), bid_q.tolist(), strict=True)),
        asks=tuple(zip(ask_p.tolist(), ask_q.tolist(), strict=True)),
        ts_event=int(book.ts[0]),
    )


# Windows handled at once: bounds the (windows × 4·levels) temporaries to a few tens of MB.
_WINDOWS_PER_CHUNK = 65_536


def depth_diffs(book: BookPath, start_us: int, interval_us: int) -> DepthTape:
    """Depth diffs over windows of ``interval_us`` (each update its own diff when ``interval_us <= 0``)."""
    n_updates = book.ts.shape[0] - 1
    ks = np.arange(1, n_updates + 1, dtype=np.int64)
    window = (book.ts[1:] - start_us) // interval_us if interval_us > 0 else ks
    boundary = np.flatnonzero(window[1:] != window[:-1])
    first_k = np.concatenate(([1], boundary + 2)).astype(np.int64)
    last_k = np.concatenate((boundary + 1, [n_updates])).astype(np.int64)
    parts = [
        _window_levels(book, first_k[i : i + _WINDOWS_PER_CHUNK] - 1, last_k[i : i + _WINDOWS_PER_CHUNK])
        for i in range(0, last_k.shape[0], _WINDOWS_PER_CHUNK)
    ]
    counts = np.concatenate([p[0] for p in parts])
    return DepthTape(
        ts_event=book.ts[last_k].copy(),
        first_update_id=book.first_update_id - 1 + first_k,
        last_update_id=book.first_update_id - 1 + last_k,
        offsets=np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
        level_is_ask=np.concatenate([p[1] for p in parts]),
        level_price=np.concatenate([p[2] for p in parts]) * book.tick_mantissa,
        level_qty=np.concatenate([p[3] for p in parts]) * book.qty_step_mantissa,
    )


def _window_levels(book: BookPath, prev_k: I64, last_k: I64) -> tuple[I64, Bools, I64, I64]:
    """(levels per window, is_ask, price ticks, qty steps) from the state before each window to its end.

    Per window: removed bids, the bid ladder, removed asks, the ask ladder — a side only if it changed.
    """
    n_levels = book.depth_levels
    j = np.arange(n_levels, dtype=np.int64)

    def side(ticks: I64, rows: I64, table: I64, sign: int) -> tuple[I64, I64, I64, Bools, Bools]:
        changed = rows[last_k] != rows[prev_k]
        old_p = ticks[prev_k][:, None] + sign * j
        new_top = ticks[last_k][:, None]
        # An old level still inside the new ladder (from the new best to n_levels ticks beyond) stays.
        depth_from_new_top = (old_p - new_top) * sign
        removed = changed[:, None] & ((depth_from_new_top < 0) | (depth_from_new_top >= n_levels))
        listed = np.broadcast_to(changed[:, None], old_p.shape)
        return old_p, new_top + sign * j, table[rows[last_k]], removed, listed

    bo_p, bn_p, bn_q, b_rm, b_new = side(book.bid_ticks, book.bid_row, book.bid_qty, -1)
    ao_p, an_p, an_q, a_rm, a_new = side(book.ask_ticks, book.ask_row, book.ask_qty, +1)
    valid = np.concatenate((b_rm, b_new, a_rm, a_new), axis=1)
    mask = valid.ravel()
    zeros = np.zeros_like(bo_p)
    price = np.concatenate((bo_p, bn_p, ao_p, an_p), axis=1).ravel()[mask]
    qty = np.concatenate((zeros, bn_q, zeros, an_q), axis=1).ravel()[mask]
    is_ask = np.zeros(valid.shape, dtype=np.bool_)
    is_ask[:, 2 * n_levels :] = True
    return valid.sum(axis=1, dtype=np.int64), is_ask.ravel()[mask], price, qty


def book_at(tape: MarketTape, update_id: int, limit: int | None = None) -> DepthSnapshot:
    """The book after the last depth diff with ``u <= update_id`` (its ``u`` is the snapshot's id).

    Diffs aggregate several updates, so an id inside a diff's ``[U, u]`` answers the book at the diff
    before it; a client applying diffs from ``lastUpdateId + 1`` on ends in the same book either way.
    A thin wrapper over the exchange's ``btcpipe.exchange.book.BookReplayer``: one call replays from the
    initial book (a few seconds for a simulated day, ``bench/bench_book_replay.py``); to ask many times,
    keep a replayer, which only applies the diffs since its last answer.
    """
    initial, depth = tape.initial_book, tape.depth
    if initial is None or depth is None:
        raise DataError("the tape has no initial book and depth diffs to rebuild the book from")
    if update_id < initial.last_update_id:
        raise DataError(f"update id {update_id} is before the initial book ({initial.last_update_id})")
    return BookReplayer(tape).at_update_id(update_id, limit)
