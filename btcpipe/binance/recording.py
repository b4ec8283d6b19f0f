"""Recordings of Binance's combined JSON streams: ``<receive time ns|µs> <JSON>`` per line, gzip or plain.

The format of ``shared/data/recordings``: combined-stream wrappers for ``@trade``, ``@bookTicker`` and
``@depth@100ms``, plus bare REST ``/depth`` snapshot bodies. Loaded into a ``MarketTape``.

JSON ``bookTicker`` has no event time, so its time is the receive time moved onto the exchange clock.
The recorder's clock need not agree with Binance's (the shared recordings run ~1.27 s behind), so the
offset is estimated from trades, whose exchange time ``E`` is known: the 99th percentile of
``E − receive`` is the offset at (near) minimal network latency. Without that, best bid/ask would lag
the trades by the whole offset and mid-based labels would be shifted.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from btcpipe.binance.json_messages import (
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_trade,
    stream_kind,
    trade_event_time,
)
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpipe.domain.tape import BestBidAskTape, DepthTape, MarketTape, TradeTape
from btcpipe.domain.time import to_us


@dataclass(frozen=True, slots=True)
class RecordedLine:
    """One line of a recording: a raw stream message and when the recorder received it."""

    ts_recv: int  # µs on the recorder's clock
    message: dict[str, object]


def _recv_us(token: bytes) -> int:
    value = int(token)
    # ns values have 19 digits for today's epochs; µs have 16.
    return value // 1000 if value >= 10**18 else to_us(value)


def iter_lines(paths: Iterable[str | Path]) -> Iterator[RecordedLine]:
    """Yield each line of one or more recording files in order; malformed lines raise with their place."""
    for path in paths:
        p = Path(path)
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                raw = line.strip()
                if not raw:
                    continue
                head, _, body = raw.partition(b" ")
                try:
                    yield RecordedLine(_recv_us(head), orjson.loads(body))
                except (ValueError, orjson.JSONDecodeError) as exc:
                    raise MalformedRecordError(f"{p}:{lineno}: not '<time> <JSON>': {exc}") from exc


@dataclass(slots=True)
class Recording:
    """The parsed records of a recording, in file order, with the estimated clock offset."""

    symbol: str
    trades: list[Trade]
    best_bid_asks: list[BestBidAsk]
    depth_diffs: list[DepthDiff]
    snapshots: list[DepthSnapshot]
    clock_offset_us: int  # exchange time − recorder time
    # Per trade, the stream's event time ``E`` (µs) and, when the stream carried the buyer/seller order
    # ids (``b``/``a``), the taker's order id: a replay keeps both, so it is the recording.
    trade_event_times: list[int] = field(default_factory=list)
    taker_orders: list[int] | None = None

    def to_tape(self) -> MarketTape:
        return MarketTape(
            symbol=self.symbol,
            trades=trades_to_tape(self.trades, event_times=self.trade_event_times, taker_orders=self.taker_orders),
            best_bid_asks=book_tickers_to_tape(self.best_bid_asks),
            depth=depth_to_tape(self.depth_diffs),
            initial_book=self.snapshots[0] if self.snapshots else None,
        )


def load_recording(paths: Iterable[str | Path]) -> Recording:
    lines = list(iter_lines(paths))
    offsets = [
        int(d["E"]) * 1000 - ln.ts_recv
        for ln in lines
        if isinstance(d := ln.message.get("data"), dict) and d.get("e") == "trade"
    ]
    clock_offset = int(np.percentile(np.asarray(offsets, dtype=np.int64), 99)) if offsets else 0
    trades: list[Trade] = []
    tickers: list[BestBidAsk] = []
    diffs: list[DepthDiff] = []
    snapshots: list[DepthSnapshot] = []
    event_times: list[int] = []
    takers: list[int] = []
    symbol = ""
    for ln in lines:
        msg = ln.message
        if "lastUpdateId" in msg:
            snapshots.append(parse_depth_snapshot(msg, symbol or "BTCUSDT", ts_recv=ln.ts_recv))
            continue
        data = msg.get("data")
        if not isinstance(data, dict):
            raise MalformedRecordError(f"recording line is neither a stream message nor a snapshot: {msg!r:.200}")
        kind = stream_kind(str(msg.get("stream", "")))
        if kind == "trade":
            trade = parse_trade(data, ts_recv=ln.ts_recv)
            trades.append(trade)
            event_times.append(trade_event_time(data, trade))
            taker = data.get("a" if trade.is_buyer_maker else "b")
            if isinstance(taker, int):
                takers.append(taker)
        elif kind == "bookTicker":
            tickers.append(
                parse_book_ticker(data, ts_event=ln.ts_recv + clock_offset, ts_recv=ln.ts_recv)
            )
        elif kind == "depth":
            diffs.append(parse_depth_update(data, ts_recv=ln.ts_recv))
        else:
            continue
        symbol = symbol or str(data.get("s", ""))
    snapshots = [
        DepthSnapshot(symbol or s.symbol, s.last_update_id, s.bids, s.asks, s.ts_event, ts_recv=s.ts_recv)
        for s in snapshots
    ]
    return Recording(
        symbol or "BTCUSDT", trades, tickers, diffs, snapshots, clock_offset, event_times,
        takers if trades and len(takers) == len(trades) else None,  # all or nothing: a column, not a guess
    )


def trades_to_tape(
    trades: list[Trade], *, event_times: list[int] | None = None, taker_orders: list[int] | None = None
) -> TradeTape:
    """Trades as columns; ``event_times``/``taker_orders``, when given, are per trade."""
    n = len(trades)
    return TradeTape(
        id=np.fromiter((t.id for t in trades), np.int64, len(trades)),
        ts_event=np.fromiter((t.ts_event for t in trades), np.int64, len(trades)),
        price=np.fromiter((t.price_mantissa for t in trades), np.int64, len(trades)),
        qty=np.fromiter((t.qty_mantissa for t in trades), np.int64, len(trades)),
        is_buyer_maker=np.fromiter((t.is_buyer_maker for t in trades), np.bool_, len(trades)),
        ts_recv=np.fromiter((t.ts_recv for t in trades), np.int64, len(trades)),
        taker_order=None if not taker_orders or len(taker_orders) != n else np.asarray(taker_orders, np.int64),
        event_time=None if not event_times or len(event_times) != n else np.asarray(event_times, np.int64),
    )


def book_tickers_to_tape(tickers: list[BestBidAsk]) -> BestBidAskTape:
    n = len(tickers)
    return BestBidAskTape(
        ts_event=np.fromiter((b.ts_event for b in tickers), np.int64, n),
        update_id=np.fromiter((b.update_id for b in tickers), np.int64, n),
        bid_price=np.fromiter((b.bid_price_mantissa for b in tickers), np.int64, n),
        bid_qty=np.fromiter((b.bid_qty_mantissa for b in tickers), np.int64, n),
        ask_price=np.fromiter((b.ask_price_mantissa for b in tickers), np.int64, n),
        ask_qty=np.fromiter((b.ask_qty_mantissa for b in tickers), np.int64, n),
        ts_recv=np.fromiter((b.ts_recv for b in tickers), np.int64, n),
    )


def depth_to_tape(diffs: list[DepthDiff]) -> DepthTape:
    sizes = [len(d.bids) + len(d.asks) for d in diffs]
    offsets = np.zeros(len(diffs) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    is_ask = np.fromiter((a for d in diffs for a in [False] * len(d.bids) + [True] * len(d.asks)), np.bool_)
    price = np.fromiter((lv[0] for d in diffs for lv in (*d.bids, *d.asks)), np.int64)
    qty = np.fromiter((lv[1] for d in diffs for lv in (*d.bids, *d.asks)), np.int64)
    n = len(diffs)
    return DepthTape(
        ts_event=np.fromiter((d.ts_event for d in diffs), np.int64, n),
        first_update_id=np.fromiter((d.first_update_id for d in diffs), np.int64, n),
        last_update_id=np.fromiter((d.last_update_id for d in diffs), np.int64, n),
        offsets=offsets,
        level_is_ask=is_ask,
        level_price=price,
        level_qty=qty,
        ts_recv=np.fromiter((d.ts_recv for d in diffs), np.int64, n),
    )
