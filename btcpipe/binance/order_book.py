"""A local order book and Binance's snapshot + buffered-diffs procedure to keep it in sync.

Pure: no IO, no clock. The synchronizer says when it needs a REST snapshot (``needs_snapshot``), the
caller fetches one and hands it over (``on_snapshot``); diffs from the depth stream go to ``on_diff``.

The procedure (``shared/binance/SBE.md`` §Local order book, same for SBE and JSON diffs):
buffer diffs; a snapshot older than the first buffered diff is refused (fetch again); drop diffs with
``u <= lastUpdateId``; apply the rest in order, ignoring ``u`` <= the book's id; a diff with
``U > book id + 1`` means one was missed: discard the book, count a resync and start buffering again.
Binance words the first-diff check as "``lastUpdateId`` in ``[U; u]``" and the stale-snapshot check as
"``lastUpdateId`` < first ``U``"; here every diff, the first included, passes the one contiguity rule
(``u > id``, else dropped; ``U <= id + 1``, else missed), and a snapshot is stale when
``lastUpdateId + 1 < U``. The only difference is the boundary of a snapshot taken exactly between two
diffs (``U = lastUpdateId + 1``): contiguous, so it is accepted instead of refetched.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from btcpipe.domain.decimal import STD_EXPONENT, rescale
from btcpipe.domain.errors import DataError, MalformedRecordError
from btcpipe.domain.records import DepthDiff, DepthSnapshot, Level


class OrderBook:
    """Price mantissa → quantity mantissa per side, at the book's exponents, as of ``last_update_id``."""

    __slots__ = ("_ask_stale", "_best_ask", "_best_bid", "_bid_stale", "asks", "bids", "last_update_id",
                 "price_exponent", "qty_exponent", "symbol")

    def __init__(
        self,
        symbol: str,
        *,
        last_update_id: int = 0,
        price_exponent: int = STD_EXPONENT,
        qty_exponent: int = STD_EXPONENT,
    ) -> None:
        self.symbol = symbol
        self.last_update_id = last_update_id
        self.price_exponent = price_exponent
        self.qty_exponent = qty_exponent
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        # Best prices are cached; removing the best level marks the side stale (recomputed on demand).
        self._best_bid: int | None = None
        self._best_ask: int | None = None
        self._bid_stale = False
        self._ask_stale = False

    @classmethod
    def from_snapshot(cls, snapshot: DepthSnapshot) -> OrderBook:
        book = cls(
            snapshot.symbol,
            last_update_id=snapshot.last_update_id,
            price_exponent=snapshot.price_exponent,
            qty_exponent=snapshot.qty_exponent,
        )
        book.set_levels(snapshot.bids, snapshot.asks)
        return book

    def set_levels(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        *,
        price_exponent: int | None = None,
        qty_exponent: int | None = None,
    ) -> None:
        """Set each level's quantity (0 removes it); levels at other exponents are rescaled exactly."""
        pe = self.price_exponent if price_exponent is None else price_exponent
        qe = self.qty_exponent if qty_exponent is None else qty_exponent
        if (pe, qe) != (self.price_exponent, self.qty_exponent):
            bids = self._rescaled(bids, pe, qe)
            asks = self._rescaled(asks, pe, qe)
        self._set_side(bids, is_bid=True)
        self._set_side(asks, is_bid=False)

    def apply(self, diff: DepthDiff) -> None:
        """Apply a diff unconditionally (sequencing is the synchronizer's job); book id := ``u``."""
        self.set_levels(diff.bids, diff.asks, price_exponent=diff.price_exponent, qty_exponent=diff.qty_exponent)
        self.last_update_id = diff.last_update_id

    def _rescaled(self, levels: Iterable[Level], pe: int, qe: int) -> list[Level]:
        return [(rescale(p, pe, self.price_exponent), rescale(q, qe, self.qty_exponent)) for p, q in levels]

    def _set_side(self, levels: Iterable[Level], *, is_bid: bool) -> None:
        # The hot loop of every book (live diffs, snapshots, the exchange's replay): the best-price cache is
        # kept in locals and written back even when a bad level stops the loop, so it describes what was set.
        side = self.bids if is_bid else self.asks
        best, stale = (self._best_bid, self._bid_stale) if is_bid else (self._best_ask, self._ask_stale)
        try:
            for price, qty in levels:
                if qty > 0:
                    side[price] = qty
                    if not stale and (best is None or (price > best if is_bid else price < best)):
                        best = price
                elif qty == 0:
                    if side.pop(price, None) is not None and price == best:
                        stale = True  # the best left: recomputed on demand
                else:
                    what = "bid" if is_bid else "ask"
                    raise MalformedRecordError(f"{self.symbol}: negative {what} quantity {qty} at {price}")
        finally:
            if is_bid:
                self._best_bid, self._bid_stale = best, stale
            else:
                self._best_ask, self._ask_stale = best, stale

    def best_bid(self) -> Level | None:
        if self._bid_stale:
            self._best_bid = max(self.bids) if self.bids else None
            self._bid_stale = False
        return None if self._best_bid is None else (self._best_bid, self.bids[self._best_bid])

    def best_ask(self) -> Level | None:
        if self._ask_stale:
            self._best_ask = min(self.asks) if self.asks else None
            self._ask_stale = False
        return None if self._best_ask is None else (self._best_ask, self.asks[self._best_ask])

    def top(self, n: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """The best ``n`` levels per side: bids high → low, asks low → high."""
        # Select on the price keys (int compares, half the cost of (price, qty) tuples), then look up quantities.
        bids, asks = self.bids, self.asks
        return (
            tuple([(p, bids[p]) for p in heapq.nlargest(n, bids)]),
            tuple([(p, asks[p]) for p in heapq.nsmallest(n, asks)]),
        )

    def to_snapshot(self, depth: int | None = None, *, ts_event: int = 0) -> DepthSnapshot:
        """The book (or its best ``depth`` levels a side) as a ``DepthSnapshot`` at ``last_update_id``."""
        if depth is None:
            bids = tuple(sorted(self.bids.items(), reverse=True))
            asks = tuple(sorted(self.asks.items()))
        else:
            bids, asks = self.top(depth)
        return DepthSnapshot(
            symbol=self.symbol,
            last_update_id=self.last_update_id,
            bids=bids,
            asks=asks,
            ts_event=ts_event,
            price_exponent=self.price_exponent,
            qty_exponent=self.qty_exponent,
        )


class DiffOutcome(Enum):
    """What applying one depth diff did to the local book."""

    BUFFERED = "buffered"  # waiting for a snapshot
    APPLIED = "applied"
    DROPPED = "dropped"  # stale: u <= the book's update id
    RESYNC = "resync"  # a diff was missed: book discarded, buffering again (this diff is the first buffered)


class SnapshotOutcome(Enum):
    """What applying a REST depth snapshot did to the local book."""

    SYNCED = "synced"  # the book is live
    STALE = "stale"  # older than the first buffered diff: fetch another
    RESYNC = "resync"  # the buffer itself has a gap: buffering again from it
    IGNORED = "ignored"  # already in sync


@dataclass(slots=True)
class SyncCounters:
    """Counts of the book's synchronisation events since it was created (resyncs, applied and dropped diffs)."""

    resyncs: int = 0
    diffs_applied: int = 0
    diffs_dropped: int = 0  # stale diffs, and the oldest buffered ones pushed out by max_buffer
    snapshots_refused: int = 0


class BookSynchronizer:
    """Binance's local order book procedure for one symbol (see the module docstring)."""

    def __init__(self, symbol: str, *, max_buffer: int = 50_000) -> None:
        self.symbol = symbol
        self.max_buffer = max_buffer
        self.counters = SyncCounters()
        self._buffer: deque[DepthDiff] = deque()
        self._book: OrderBook | None = None

    @property
    def synced(self) -> bool:
        return self._book is not None

    @property
    def book(self) -> OrderBook | None:
        """The live book, or None while (re)synchronizing."""
        return self._book

    @property
    def needs_snapshot(self) -> bool:
        """True once a diff is buffered and no book is live: fetch a REST snapshot and call ``on_snapshot``."""
        return self._book is None and bool(self._buffer)

    @property
    def first_buffered_update_id(self) -> int | None:
        """``U`` of the first buffered diff: a snapshot's ``lastUpdateId`` must reach at least ``U - 1``."""
        return self._buffer[0].first_update_id if self._buffer else None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Discard book and buffer (e.g. the caller knows the stream broke); counted as a resync."""
        self._book = None
        self._buffer.clear()
        self.counters.resyncs += 1

    def on_diff(self, diff: DepthDiff) -> DiffOutcome:
        self._check_symbol(diff.symbol)
        if self._book is None:
            self._buffer.append(diff)
            if len(self._buffer) > self.max_buffer:
                self._buffer.popleft()
                self.counters.diffs_dropped += 1
            return DiffOutcome.BUFFERED
        return self._apply(self._book, diff)

    def on_snapshot(self, snapshot: DepthSnapshot) -> SnapshotOutcome:
        self._check_symbol(snapshot.symbol)
        if self._book is not None:
            return SnapshotOutcome.IGNORED
        first = self.first_buffered_update_id
        if first is not None and snapshot.last_update_id + 1 < first:
            self.counters.snapshots_refused += 1
            return SnapshotOutcome.STALE
        book = OrderBook.from_snapshot(snapshot)
        self._book = book
        while self._buffer:
            if self._apply(book, self._buffer.popleft()) is DiffOutcome.RESYNC:
                return SnapshotOutcome.RESYNC
        return SnapshotOutcome.SYNCED

    def _apply(self, book: OrderBook, diff: DepthDiff) -> DiffOutcome:
        if diff.last_update_id <= book.last_update_id:
            self.counters.diffs_dropped += 1
            return DiffOutcome.DROPPED
        if diff.first_update_id > book.last_update_id + 1:
            # Missed diff(s): this one starts the new buffer, followed by any still buffered.
            self._book = None
            self._buffer.appendleft(diff)
            self.counters.resyncs += 1
            return DiffOutcome.RESYNC
        book.apply(diff)
        self.counters.diffs_applied += 1
        return DiffOutcome.APPLIED

    def _check_symbol(self, symbol: str) -> None:
        if symbol != self.symbol:
            raise DataError(f"{symbol} depth data sent to the {self.symbol} book synchronizer")
