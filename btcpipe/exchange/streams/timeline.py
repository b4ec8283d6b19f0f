"""A tape as the stream of events Binance's WebSockets would have sent, in ``ts_event`` order.

``SymbolTimeline`` merges four event kinds of one symbol into one sorted index (built once, numpy):
trade groups (the fills of one match: same transact time and, when known, the same taker order — one SBE
``TradesStreamEvent`` each), best bid/ask updates, depth diffs, and ``depth20`` snapshots on a fixed grid of
tape time (50 ms by default) taken from the book the diffs build (the REST book's replay, ``exchange.book``).
The replay asks for the events up to the exchange's now and materialises only those (and only the kinds
someone subscribed to).

Ties in time keep a fixed order (trade, best bid/ask, depth diff, depth20) and each kind keeps its own
tape order (trade id, update id), so the sort key is each column's running maximum of ``ts_event``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade
from btcpipe.domain.tape import I64, AggTradeTape, MarketTape
from btcpipe.exchange.book import BookReplayer

KIND_TRADE = 0
KIND_BBA = 1
KIND_DEPTH = 2
KIND_DEPTH20 = 3
KIND_AGG_TRADE = 4  # after its last fill's other events on a tie: an aggTrade is known once its taker is done
DEPTH20_LEVELS = 20


def _running_max(ts: I64) -> I64:
    return np.maximum.accumulate(ts) if ts.shape[0] else ts


class StreamBook:
    """The book at increasing grid times (the ``depth20`` stream's source): the REST book's replay, its own copy.

    A ``BookReplayer`` of its own, so REST queries at other times never rewind it; asked forward on the grid it
    applies only the new diffs and reuses its levels while none arrived. Without diffs it answers from the
    best bid/ask, then from the initial book, like ``/api/v3/depth``; None where that book is empty.
    """

    def __init__(self, tape: MarketTape) -> None:
        self.symbol = tape.symbol.upper()
        self._replayer = BookReplayer(tape)
        depth, tickers = tape.depth, tape.best_bid_asks
        self.has_source = bool(
            (depth is not None and len(depth)) or (tickers is not None and len(tickers)) or tape.initial_book
        )

    def snapshot_at(self, ts_us: int, levels: int = DEPTH20_LEVELS) -> DepthSnapshot | None:
        """The top ``levels`` of the book as of ``ts_us`` (None while the tape has no book yet)."""
        snap = self._replayer.snapshot(ts_us, levels)
        if not snap.bids and not snap.asks:
            return None
        return snap if snap.symbol == self.symbol else replace(snap, symbol=self.symbol)


class SymbolTimeline:
    """One symbol's stream events: ``key`` (µs, sorted), ``kind`` and ``index`` (into the kind's column)."""

    def __init__(
        self, tape: MarketTape, *, depth20_interval_us: int = 50_000, aggs: AggTradeTape | None = None
    ) -> None:
        if depth20_interval_us <= 0:
            raise ConfigError(f"depth20 interval must be positive, got {depth20_interval_us}")
        self.symbol = tape.symbol.upper()
        self.tape = tape
        self.exponent = tape.exponent
        trades = tape.trades
        n = len(trades)
        new_group = np.ones(n, dtype=np.bool_)
        if n > 1:
            new_group[1:] = trades.ts_event[1:] != trades.ts_event[:-1]
            if trades.taker_order is not None:
                new_group[1:] |= trades.taker_order[1:] != trades.taker_order[:-1]
            if trades.event_time is not None:
                new_group[1:] |= trades.event_time[1:] != trades.event_time[:-1]
        self.group_start: I64 = np.flatnonzero(new_group).astype(np.int64)
        self.group_stop: I64 = np.append(self.group_start[1:], n).astype(np.int64)
        # A trade goes out at its event time when the tape has one (as depth diffs, keyed by their E), so the
        # replay keeps the recording's order of trades against book updates.
        sent_at = trades.ts_event if trades.event_time is None else trades.event_time
        sent_key = _running_max(sent_at)
        keys = [sent_key[self.group_start]]
        kinds = [np.full(len(self.group_start), KIND_TRADE, dtype=np.int8)]
        idx = [np.arange(len(self.group_start), dtype=np.int64)]
        self.aggs = aggs
        self.agg_last_trade: I64 = np.zeros(0, dtype=np.int64)
        if aggs is not None and len(aggs):
            self.agg_last_trade = np.searchsorted(trades.id, aggs.last_trade_id).astype(np.int64)
            keys.append(sent_key[self.agg_last_trade])
            kinds.append(np.full(len(aggs), KIND_AGG_TRADE, dtype=np.int8))
            idx.append(np.arange(len(aggs), dtype=np.int64))
        tickers, depth = tape.best_bid_asks, tape.depth
        if tickers is not None and len(tickers):
            keys.append(_running_max(tickers.ts_event))
            kinds.append(np.full(len(tickers), KIND_BBA, dtype=np.int8))
            idx.append(np.arange(len(tickers), dtype=np.int64))
        if depth is not None and len(depth):
            keys.append(_running_max(depth.ts_event))
            kinds.append(np.full(len(depth), KIND_DEPTH, dtype=np.int8))
            idx.append(np.arange(len(depth), dtype=np.int64))
        self.book = StreamBook(tape)
        all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        if self.book.has_source and all_keys.shape[0]:
            lo, hi = int(all_keys.min()), int(all_keys.max())
            first = -(-lo // depth20_interval_us) * depth20_interval_us
            grid = np.arange(first, hi + 1, depth20_interval_us, dtype=np.int64)
            keys.append(grid)
            kinds.append(np.full(len(grid), KIND_DEPTH20, dtype=np.int8))
            idx.append(grid)  # a depth20 event's "index" is its grid time
        key = np.concatenate(keys)
        kind = np.concatenate(kinds)
        index = np.concatenate(idx)
        order = np.lexsort((index, kind, key))
        self.key: I64 = key[order]
        self.kind = kind[order]
        self.index: I64 = index[order]

    def __len__(self) -> int:
        return int(self.key.shape[0])

    def position_after(self, now_us: int) -> int:
        """The index of the first event that happens after ``now_us``."""
        return int(np.searchsorted(self.key, now_us, side="right"))

    # --- materialising one event ----------------------------------------------------------------------
    def trades_of_group(self, group: int) -> list[Trade]:
        t = self.tape.trades
        lo, hi = int(self.group_start[group]), int(self.group_stop[group])
        ts = int(t.ts_event[lo])
        e = self.exponent
        return [
            Trade(self.symbol, tid, ts, p, q, bool(m), e, e)
            for tid, p, q, m in zip(
                t.id[lo:hi].tolist(), t.price[lo:hi].tolist(), t.qty[lo:hi].tolist(), t.is_buyer_maker[lo:hi].tolist(),
                strict=True,
            )
        ]

    def group_event_time(self, group: int) -> int:
        """The stream's event time ``E`` of a trade group: the recording's own, else the trade time."""
        t = self.tape.trades
        lo = int(self.group_start[group])
        return int(t.ts_event[lo] if t.event_time is None else t.event_time[lo])

    def trades_event(self, trades: list[Trade], event_time: int) -> TradesEvent:
        return TradesEvent(self.symbol, event_time, trades[0].ts_event, tuple(trades), self.exponent, self.exponent)

    def agg_trade(self, i: int) -> tuple[tuple[int, int, int, int, int, int, bool], int]:
        """(aggTrade i as (a, p, q, f, l, T, m), its event time: that of its last fill)."""
        a = self.aggs
        assert a is not None
        t = self.tape.trades
        last = int(self.agg_last_trade[i])
        event = int(t.ts_event[last] if t.event_time is None else t.event_time[last])
        row = (int(a.agg_id[i]), int(a.price[i]), int(a.qty[i]), int(a.first_trade_id[i]), int(a.last_trade_id[i]),
               int(a.ts_event[i]), bool(a.is_buyer_maker[i]))
        return row, event

    def best_bid_ask(self, i: int) -> BestBidAsk:
        b = self.tape.best_bid_asks
        assert b is not None
        return BestBidAsk(
            self.symbol, int(b.ts_event[i]), int(b.update_id[i]), int(b.bid_price[i]), int(b.bid_qty[i]),
            int(b.ask_price[i]), int(b.ask_qty[i]), self.exponent, self.exponent,
        )

    def depth_diff(self, i: int) -> DepthDiff:
        d = self.tape.depth
        assert d is not None
        lo, hi = int(d.offsets[i]), int(d.offsets[i + 1])
        bids: list[Level] = []
        asks: list[Level] = []
        for ask, price, qty in zip(
            d.level_is_ask[lo:hi].tolist(), d.level_price[lo:hi].tolist(), d.level_qty[lo:hi].tolist(), strict=True
        ):
            (asks if ask else bids).append((price, qty))
        return DepthDiff(
            self.symbol, int(d.ts_event[i]), int(d.first_update_id[i]), int(d.last_update_id[i]),
            tuple(bids), tuple(asks), self.exponent, self.exponent,
        )

    def depth20(self, grid_us: int) -> DepthSnapshot | None:
        return self.book.snapshot_at(grid_us)
