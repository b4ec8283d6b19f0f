"""The order book at any exchange time, rebuilt from a tape's initial snapshot and its depth diffs.

This is what ``/api/v3/depth`` answers: the book after the last diff with ``ts_event <= now``, with that
diff's ``u`` as ``lastUpdateId`` — consistent with the diff stream, so a client bootstrapping a local
book from the snapshot plus buffered diffs ends with the same book. Diffs already inside the initial
snapshot (``u <= lastUpdateId``, the recording case) are skipped, as Binance's bootstrap rule says.
A tape without depth diffs answers from its best bid/ask (one level a side).

Diffs are applied forward from a cursor, so a replay that asks again and again costs only the new diffs.
"""

from __future__ import annotations

import threading

import numpy as np

from btcpipe.domain.records import DepthSnapshot, Level
from btcpipe.domain.tape import MarketTape


class BookReplayer:
    def __init__(self, tape: MarketTape) -> None:
        self.symbol = tape.symbol
        self._tape = tape
        self._lock = threading.Lock()
        depth = tape.depth
        self._depth_ts = np.maximum.accumulate(depth.ts_event) if depth is not None and len(depth) else None
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._last_update_id = 0
        self._cursor = 0
        self._reset()

    def _reset(self) -> None:
        initial, depth = self._tape.initial_book, self._tape.depth
        self._bids = dict(initial.bids) if initial else {}
        self._asks = dict(initial.asks) if initial else {}
        if initial is not None:
            self._last_update_id = initial.last_update_id
        elif depth is not None and len(depth):
            self._last_update_id = int(depth.first_update_id[0]) - 1
        else:
            self._last_update_id = 0
        self._cursor = 0
        if depth is not None and initial is not None:
            # Skip the diffs the snapshot already contains.
            self._cursor = int(np.searchsorted(depth.last_update_id, initial.last_update_id, side="right"))

    def _apply_until(self, stop: int) -> None:
        depth = self._tape.depth
        assert depth is not None
        if stop <= self._cursor:
            return
        lo, hi = int(depth.offsets[self._cursor]), int(depth.offsets[stop])
        is_ask = depth.level_is_ask[lo:hi].tolist()
        prices = depth.level_price[lo:hi].tolist()
        qtys = depth.level_qty[lo:hi].tolist()
        # Levels of consecutive diffs applied in order give the same book as diff by diff.
        for ask, price, qty in zip(is_ask, prices, qtys, strict=True):
            side = self._asks if ask else self._bids
            if qty == 0:
                side.pop(price, None)
            else:
                side[price] = qty
        self._last_update_id = max(self._last_update_id, int(depth.last_update_id[stop - 1]))
        self._cursor = stop

    def snapshot(self, now_us: int, limit: int) -> DepthSnapshot:
        """The book as of ``now_us``, ``limit`` levels a side (bids high→low, asks low→high)."""
        if self._depth_ts is None:
            return self._ticker_snapshot(now_us)
        with self._lock:
            stop = int(np.searchsorted(self._depth_ts, now_us, side="right"))
            if stop < self._cursor:
                self._reset()
            self._apply_until(max(stop, self._cursor))
            bids: tuple[Level, ...] = tuple(sorted(self._bids.items(), reverse=True)[:limit])
            asks: tuple[Level, ...] = tuple(sorted(self._asks.items())[:limit])
            return DepthSnapshot(self.symbol, self._last_update_id, bids, asks, ts_event=now_us)

    def _ticker_snapshot(self, now_us: int) -> DepthSnapshot:
        tickers = self._tape.book_tickers
        initial = self._tape.initial_book
        if tickers is None or len(tickers) == 0:
            if initial is not None:
                return initial
            return DepthSnapshot(self.symbol, 0, (), (), ts_event=now_us)
        i = int(np.searchsorted(np.maximum.accumulate(tickers.ts_event), now_us, side="right")) - 1
        if i < 0:
            return DepthSnapshot(self.symbol, 0, (), (), ts_event=now_us)
        return DepthSnapshot(
            self.symbol,
            int(tickers.update_id[i]),
            ((int(tickers.bid_price[i]), int(tickers.bid_qty[i])),),
            ((int(tickers.ask_price[i]), int(tickers.ask_qty[i])),),
            ts_event=now_us,
        )
