"""Synthetic market tapes for the feature tests (no tests here).

Trades at Binance's grids (tick 0.01, step 0.00001) with clustered arrivals, whole quiet seconds and a
silence longer than the feature window, so carry-forward and warm-up paths are exercised; best bid/ask
updates straddle the trade price.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from btcpipe.domain.arrow_decimal import QTY, QUOTE, mantissas_to_decimal
from btcpipe.domain.tape import BestBidAskTape, MarketTape, TradeTape
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.streaming import StreamingFeatureEngine
from btcpipe.lake.schemas import BRONZE_BOOK_TICKER, BRONZE_TRADES

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SEC = 1_000_000


def make_tape(seed: int, start_us: int, duration_s: int, *, rate: float = 8.0, silence_s: int = 90) -> MarketTape:
    rng = np.random.default_rng(seed)
    # Slow busy/quiet spells: smoothed noise, bounded (a random walk would wander off).
    spell = np.convolve(rng.normal(0, 1, duration_s + 299), np.ones(300) / np.sqrt(300), mode="valid")
    activity = np.exp(0.6 * spell)
    counts = rng.poisson(rate * activity * rng.gamma(0.5, 2.0, duration_s))
    quiet = slice(duration_s // 3, duration_s // 3 + silence_s)
    counts[quiet] = 0
    n = int(counts.sum())
    sec = np.repeat(np.arange(duration_s, dtype=np.int64), counts)
    ts = np.sort(start_us + sec * SEC + rng.integers(0, SEC, n))
    # A few trades exactly on a second boundary (they belong to the second that starts there).
    ts[:: max(1, n // 50)] -= ts[:: max(1, n // 50)] % SEC
    ts = np.sort(ts)
    ticks = np.cumsum(rng.choice([-2, -1, 0, 0, 0, 1, 2], n))
    price = (6_000_000 + ticks) * 1_000_000  # 60000.00 USDT at exponent -8
    qty = (rng.lognormal(np.log(300), 1.4, n).astype(np.int64) + 1) * 1_000
    trades = TradeTape(
        id=np.arange(1_000, 1_000 + n, dtype=np.int64),
        ts_event=ts,
        price=price,
        qty=qty,
        is_buyer_maker=rng.random(n) < 0.5,
    )
    m = duration_s * 3
    bts = np.sort(start_us + rng.integers(0, duration_s * SEC, m))
    mid_ticks = 6_000_000 + np.cumsum(rng.choice([-1, 0, 1], m))
    spread = rng.choice([1, 1, 1, 2, 5], m)
    books = BestBidAskTape(
        ts_event=bts,
        update_id=np.arange(50_000, 50_000 + m, dtype=np.int64),
        bid_price=mid_ticks * 1_000_000,
        bid_qty=np.full(m, 100_000, dtype=np.int64),
        ask_price=(mid_ticks + spread) * 1_000_000,
        ask_qty=np.full(m, 100_000, dtype=np.int64),
    )
    return MarketTape("BTCUSDT", trades, books)


def stream_rows(
    engine: StreamingFeatureEngine, trades: TradeArrays, best_bid_ask: BestBidAskArrays | None, seconds: np.ndarray,
    *, one_by_one: bool = False,
) -> np.ndarray:
    """Feed the engine second by second (trades of [t−1s, t) then close t); rows as (n_features, n)."""
    out = np.empty((len(engine.names), seconds.shape[0]))
    i = j = 0
    for k, t in enumerate(seconds.tolist()):
        hi = int(np.searchsorted(trades.ts_event, t, side="left"))
        if one_by_one:
            for q in range(i, hi):
                engine.add_trade(int(trades.ts_event[q]), float(trades.price[q]), float(trades.qty[q]),
                                 bool(trades.is_buyer_maker[q]))
        else:
            engine.add_trades(trades.ts_event[i:hi], trades.price[i:hi], trades.qty[i:hi],
                              trades.is_buyer_maker[i:hi])
        i = hi
        if best_bid_ask is not None:
            hj = int(np.searchsorted(best_bid_ask.ts_event, t, side="left"))
            for q in range(j, hj):
                engine.add_best_bid_ask(int(best_bid_ask.ts_event[q]), float(best_bid_ask.bid[q]),
                                        float(best_bid_ask.ask[q]))
            j = hj
        out[:, k] = engine.close_second(t).values
    return out


def assert_same_rows(a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> None:
    """Every value equal, NaN only where both are NaN."""
    assert a.shape == b.shape
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if not same.all():
        bad = {names[c]: np.flatnonzero(~same[c])[:5].tolist() for c in range(a.shape[0]) if not same[c].all()}
        raise AssertionError(f"rows differ: {bad}")


def same_tables(a: pa.Table, b: pa.Table) -> bool:
    """Equal columns and metadata, NaN equal to NaN (``pa.Table.equals`` says NaN != NaN)."""
    if a.schema != b.schema or a.schema.metadata != b.schema.metadata or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a[name].to_numpy(zero_copy_only=False), b[name].to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            if not ((x == y) | (np.isnan(x) & np.isnan(y))).all():
                return False
        elif not (x == y).all():
            return False
    return True


def bronze_trades_table(tape: TradeTape) -> pa.Table:
    quote = (tape.price.astype(object) * tape.qty.astype(object)) // 10**8
    return pa.table(
        {
            "id": tape.id,
            "ts_event": tape.ts_event,
            "price": mantissas_to_decimal(tape.price),
            "qty": mantissas_to_decimal(tape.qty, QTY),
            "quote_qty": mantissas_to_decimal(np.asarray(quote, dtype=np.int64), QUOTE),
            "is_buyer_maker": tape.is_buyer_maker,
            "is_best_match": np.ones(len(tape), dtype=np.bool_),
            "ts_recv": tape.ts_event,
        },
        schema=BRONZE_TRADES,
    )


def bronze_book_table(tape: BestBidAskTape) -> pa.Table:
    return pa.table(
        {
            "update_id": tape.update_id,
            "ts_event": tape.ts_event,
            "bid_price": mantissas_to_decimal(tape.bid_price),
            "bid_qty": mantissas_to_decimal(tape.bid_qty, QTY),
            "ask_price": mantissas_to_decimal(tape.ask_price),
            "ask_qty": mantissas_to_decimal(tape.ask_qty, QTY),
            "ts_recv": tape.ts_event,
        },
        schema=BRONZE_BOOK_TICKER,
    )
