"""The order book at any exchange time or update id, rebuilt from a tape's initial snapshot and its depth diffs.

This is what ``/api/v3/depth`` answers: the book after the last diff with ``ts_event <= now``, with that
diff's ``u`` as ``lastUpdateId`` — consistent with the diff stream, so a client bootstrapping a local
book from the snapshot plus buffered diffs ends with the same book. Diffs already inside the initial
snapshot (``u <= lastUpdateId``, the recording case) are skipped, as Binance's bootstrap rule says.
A tape without depth diffs answers from its best bid/ask (one level a side), or from its initial book.

The book is ``btcpipe.binance.order_book.OrderBook``, the one the live ingestor keeps, and diffs go into it
through ``apply_depth_diffs``. They are applied forward from a cursor, so a replay that asks again and
again costs only the new diffs, and an answer whose diffs are the same as the last one's reuses its levels.
The ``depth20`` stream (``stream_timeline.StreamBook``) keeps a replayer of its own, asked forward on a grid.
"""

from __future__ import annotations

import threading

import numpy as np

from btcpipe.binance.order_book import OrderBook
from btcpipe.domain.records import DepthSnapshot
from btcpipe.domain.tape import DepthTape, MarketTape


def apply_depth_diffs(book: OrderBook, depth: DepthTape, start: int, stop: int, *, exponent: int) -> None:
    """Apply diffs ``start..stop-1`` of ``depth`` (levels at ``exponent``) to ``book``; its id becomes the last u.

    Sequencing is the caller's job, as for ``OrderBook.apply``. The diffs' levels go in as one batch a side:
    within a side they keep their order, and the sides never touch each other, so the book is the one that
    diff-by-diff application would give.
    """
    if stop <= start:
        return
    lo, hi = int(depth.offsets[start]), int(depth.offsets[stop])
    is_ask = depth.level_is_ask[lo:hi]
    is_bid = ~is_ask
    price, qty = depth.level_price[lo:hi], depth.level_qty[lo:hi]
    book.set_levels(
        zip(price[is_bid].tolist(), qty[is_bid].tolist(), strict=True),
        zip(price[is_ask].tolist(), qty[is_ask].tolist(), strict=True),
        price_exponent=exponent,
        qty_exponent=exponent,
    )
    book.last_update_id = int(depth.last_update_id[stop - 1])


class BookReplayer:
    """One symbol's book, answerable at any exchange time (``snapshot``) or update id (``at_update_id``)."""

    def __init__(self, tape: MarketTape) -> None:
        self.symbol = tape.symbol
        self._tape = tape
        self._lock = threading.Lock()
        depth, tickers = tape.depth, tape.best_bid_asks
        self._depth_ts = np.maximum.accumulate(depth.ts_event) if depth is not None and len(depth) else None
        self._tickers_ts = (
            np.maximum.accumulate(tickers.ts_event) if tickers is not None and len(tickers) else None
        )
        self._first_cursor = 0
        if depth is not None and tape.initial_book is not None:
            # Skip the diffs the snapshot already contains.
            self._first_cursor = int(
                np.searchsorted(depth.last_update_id, tape.initial_book.last_update_id, side="right")
            )
        self._book = self._initial_book()
        self._cursor = self._first_cursor
        # The last answer of ``snapshot`` and the (cursor, limit) it was for: the book at a cursor is always the same.
        self._last: tuple[tuple[int, int], DepthSnapshot] | None = None

    def _initial_book(self) -> OrderBook:
        initial, depth = self._tape.initial_book, self._tape.depth
        if initial is not None:
            return OrderBook.from_snapshot(initial)
        first_id = int(depth.first_update_id[0]) - 1 if depth is not None and len(depth) else 0
        exponent = self._tape.exponent
        return OrderBook(self.symbol, last_update_id=first_id, price_exponent=exponent, qty_exponent=exponent)

    def _replay_to(self, stop: int) -> None:
        """The book after the first ``stop`` diffs (at least those the snapshot holds); caller holds the lock."""
        depth = self._tape.depth
        assert depth is not None
        stop = max(stop, self._first_cursor)
        if stop < self._cursor:
            self._book = self._initial_book()
            self._cursor = self._first_cursor
        apply_depth_diffs(self._book, depth, self._cursor, stop, exponent=self._tape.exponent)
        self._cursor = max(self._cursor, stop)

    def snapshot(self, now_us: int, limit: int) -> DepthSnapshot:
        """The book as of ``now_us``, ``limit`` levels a side (bids high→low, asks low→high)."""
        if self._depth_ts is None:
            return self._ticker_snapshot(now_us, limit)
        with self._lock:
            self._replay_to(int(self._depth_ts.searchsorted(now_us, side="right")))
            key = (self._cursor, limit)
            if self._last is not None and self._last[0] == key:
                b = self._last[1]  # restamped field by field: dataclasses.replace costs more than the rest of the call
                return DepthSnapshot(b.symbol, b.last_update_id, b.bids, b.asks, now_us, b.price_exponent,
                                     b.qty_exponent)
            answer = self._book.to_snapshot(limit, ts_event=now_us)
            self._last = (key, answer)
            return answer

    def at_update_id(self, update_id: int, limit: int | None = None) -> DepthSnapshot:
        """The book after the last diff with ``u <= update_id``, stamped with that diff's time.

        An id inside a diff's ``[U, u]`` answers the book of the diff before it. Without depth diffs (or
        before the first one past the snapshot) it is the initial book.
        """
        depth, initial = self._tape.depth, self._tape.initial_book
        with self._lock:
            if depth is None or len(depth) == 0:
                return self._book.to_snapshot(limit, ts_event=initial.ts_event if initial else 0)
            stop = int(np.searchsorted(depth.last_update_id, update_id, side="right"))
            self._replay_to(stop)
            if self._cursor > self._first_cursor:
                ts = int(depth.ts_event[self._cursor - 1])
            else:
                ts = initial.ts_event if initial is not None else 0
            return self._book.to_snapshot(limit, ts_event=ts)

    def _ticker_snapshot(self, now_us: int, limit: int) -> DepthSnapshot:
        tickers = self._tape.best_bid_asks
        if tickers is None or self._tickers_ts is None:
            if self._tape.initial_book is not None:
                with self._lock:  # no diffs: the book is the initial one, never replayed
                    return self._book.to_snapshot(limit, ts_event=now_us)
            return DepthSnapshot(self.symbol, 0, (), (), ts_event=now_us)
        i = int(self._tickers_ts.searchsorted(now_us, side="right")) - 1
        if i < 0:
            return DepthSnapshot(self.symbol, 0, (), (), ts_event=now_us)
        return DepthSnapshot(
            self.symbol,
            int(tickers.update_id[i]),
            ((int(tickers.bid_price[i]), int(tickers.bid_qty[i])),),
            ((int(tickers.ask_price[i]), int(tickers.ask_qty[i])),),
            ts_event=now_us,
        )
