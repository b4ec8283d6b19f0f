"""Small tapes written by hand (tests, examples): rows of decimal strings in, a ``MarketTape`` out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.records import DepthSnapshot
from btcpipe.domain.tape import BestBidAskTape, DepthTape, MarketTape, TradeTape

# (id, ts_event µs, price, qty, is_buyer_maker)
TradeRow = tuple[int, int, str, str, bool]
# (ts_event µs, U, u, [(is_ask, price, qty), ...])
DiffRow = tuple[int, int, int, Sequence[tuple[bool, str, str]]]


def trade_tape(rows: Sequence[TradeRow], *, taker_orders: Sequence[int] | None = None) -> TradeTape:
    n = len(rows)
    return TradeTape(
        id=np.fromiter((r[0] for r in rows), np.int64, n),
        ts_event=np.fromiter((r[1] for r in rows), np.int64, n),
        price=np.fromiter((parse_decimal(r[2]) for r in rows), np.int64, n),
        qty=np.fromiter((parse_decimal(r[3]) for r in rows), np.int64, n),
        is_buyer_maker=np.fromiter((r[4] for r in rows), np.bool_, n),
        taker_order=None if taker_orders is None else np.asarray(taker_orders, dtype=np.int64),
    )


def depth_tape(diffs: Sequence[DiffRow]) -> DepthTape:
    levels = [lv for d in diffs for lv in d[3]]
    offsets = np.zeros(len(diffs) + 1, dtype=np.int64)
    np.cumsum([len(d[3]) for d in diffs], out=offsets[1:])
    n = len(diffs)
    return DepthTape(
        ts_event=np.fromiter((d[0] for d in diffs), np.int64, n),
        first_update_id=np.fromiter((d[1] for d in diffs), np.int64, n),
        last_update_id=np.fromiter((d[2] for d in diffs), np.int64, n),
        offsets=offsets,
        level_is_ask=np.fromiter((lv[0] for lv in levels), np.bool_, len(levels)),
        level_price=np.fromiter((parse_decimal(lv[1]) for lv in levels), np.int64, len(levels)),
        level_qty=np.fromiter((parse_decimal(lv[2]) for lv in levels), np.int64, len(levels)),
    )


def snapshot(
    symbol: str,
    last_update_id: int,
    bids: Sequence[tuple[str, str]],
    asks: Sequence[tuple[str, str]],
    ts_event: int = 0,
) -> DepthSnapshot:
    return DepthSnapshot(
        symbol,
        last_update_id,
        tuple((parse_decimal(p), parse_decimal(q)) for p, q in bids),
        tuple((parse_decimal(p), parse_decimal(q)) for p, q in asks),
        ts_event=ts_event,
    )


def market_tape(
    symbol: str,
    trades: Sequence[TradeRow],
    *,
    taker_orders: Sequence[int] | None = None,
    diffs: Sequence[DiffRow] = (),
    initial_book: DepthSnapshot | None = None,
    best_bid_asks: BestBidAskTape | None = None,
) -> MarketTape:
    return MarketTape(
        symbol=symbol,
        trades=trade_tape(trades, taker_orders=taker_orders),
        best_bid_asks=best_bid_asks,
        depth=depth_tape(diffs) if diffs else None,
        initial_book=initial_book,
    )


def synthetic_tape(
    symbol: str = "BTCUSDT",
    *,
    n_orders: int = 1000,
    start_us: int = 1_735_689_600_000_000,
    first_trade_id: int = 1_000,
    mean_gap_us: int = 300_000,
    seed: int = 0,
) -> MarketTape:
    """A quick deterministic tape with the structure aggTrades care about: taker orders of 1–4 fills at one
    time, some crossing two price levels (so one order gives two aggTrades), prices on a 0.01 grid and
    quantities on a 0.00001 grid. Not a market model (that is the simulator): a fixture for exact tests."""
    rng = np.random.default_rng(seed)
    fills = rng.integers(1, 5, n_orders)
    order_ts = start_us + np.cumsum(rng.exponential(mean_gap_us, n_orders).astype(np.int64) + 1)
    order_px = 6_000_000 + np.cumsum(rng.integers(-3, 4, n_orders))  # in ticks (0.01)
    is_bm = rng.random(n_orders) < 0.5
    order = np.repeat(np.arange(n_orders, dtype=np.int64), fills)
    n = int(fills.sum())
    pos = np.arange(n) - np.repeat(np.cumsum(fills) - fills, fills)  # fill index within its order
    second_level = (pos >= 2).astype(np.int64)  # the 3rd and 4th fills walk one tick into the book
    step = np.where(is_bm[order], -1, 1)
    return MarketTape(
        symbol=symbol,
        trades=TradeTape(
            id=first_trade_id + np.arange(n, dtype=np.int64),
            ts_event=order_ts[order],
            price=((order_px[order] + step * second_level) * 1_000_000).astype(np.int64),
            qty=rng.integers(1, 50_000, n).astype(np.int64) * 1_000,
            is_buyer_maker=is_bm[order],
            taker_order=order,
        ),
    )
