"""The exchange's pure core: klines from trades, aggTrade queries, visibility by exchange time, the book."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pytest

from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import day_start_us
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.book import BookReplayer
from btcpipe.exchange.klines import aggregate_klines, open_times
from btcpipe.exchange.source import SymbolMarket
from btcpipe.market.handmade import market_tape, snapshot, synthetic_tape


def _naive_klines(tape: MarketTape, interval_us: int) -> list[tuple[int, ...]]:
    groups: dict[int, list[int]] = defaultdict(list)
    t = tape.trades
    for i, ts in enumerate(t.ts_event.tolist()):
        groups[ts - ts % interval_us].append(i)
    out: list[tuple[int, ...]] = []
    for open_us, idx in sorted(groups.items()):
        price = [int(t.price[i]) for i in idx]
        qty = [int(t.qty[i]) for i in idx]
        quote = [p * q // 10**8 for p, q in zip(price, qty, strict=True)]
        buy = [not bool(t.is_buyer_maker[i]) for i in idx]
        out.append((
            open_us, price[0], max(price), min(price), price[-1], sum(qty), sum(quote), len(idx),
            sum(q for q, b in zip(qty, buy, strict=True) if b), sum(q for q, b in zip(quote, buy, strict=True) if b),
        ))
    return out


@pytest.mark.parametrize(("interval", "interval_us"), [("1s", 10**6), ("1m", 60 * 10**6), ("5m", 300 * 10**6)])
def test_klines_equal_a_naive_aggregation_of_the_trades(interval: str, interval_us: int) -> None:
    tape = synthetic_tape(n_orders=800, mean_gap_us=700_000)
    market = SymbolMarket(tape)
    table = market.klines(interval)
    k = aggregate_klines(tape.trades, table, 0, len(table), len(tape.trades))
    got = list(zip(
        k.open_time.tolist(), k.open.tolist(), k.high.tolist(), k.low.tolist(), k.close.tolist(),
        k.volume.tolist(), k.quote_volume.tolist(), k.n_trades.tolist(), k.taker_buy_base.tolist(),
        k.taker_buy_quote.tolist(), strict=True,
    ))
    assert got == _naive_klines(tape, interval_us)
    assert (k.next_open_time - k.open_time == interval_us).all()


def test_weekly_klines_open_on_monday_and_monthly_on_the_first() -> None:
    ts = np.array([day_start_us(dt.date(2025, 1, 1)) + 5, day_start_us(dt.date(2024, 2, 29)) + 7], np.int64)
    weeks = open_times(ts, "1w")
    assert [dt.datetime.fromtimestamp(w / 1e6, dt.UTC).date() for w in weeks.tolist()] == [
        dt.date(2024, 12, 30), dt.date(2024, 2, 26)]
    months = open_times(ts, "1M")
    assert months.tolist() == [day_start_us(dt.date(2025, 1, 1)), day_start_us(dt.date(2024, 2, 1))]


def test_kline_selection_first_from_a_start_last_without_and_cut_at_exchange_now() -> None:
    tape = synthetic_tape(n_orders=600, mean_gap_us=500_000)
    market = SymbolMarket(tape)
    table = market.klines("1s")
    everything = len(tape.trades)
    g0, g1 = table.select(int(table.open_time[10]), None, 5, everything)
    assert (g0, g1) == (10, 15)
    g0, g1 = table.select(None, None, 5, everything)
    assert (g0, g1) == (len(table) - 5, len(table))
    g0, g1 = table.select(None, int(table.open_time[20]), 3, everything)
    assert (g0, g1) == (18, 21)
    # Exchange time in the middle of a second: that second's kline holds only the trades so far.
    now = int(tape.trades.ts_event[100])
    visible = market.visible_trades(now)
    g0, g1 = table.select(None, None, 1, visible)
    k = aggregate_klines(tape.trades, table, g0, g1, visible)
    in_second = (tape.trades.ts_event >= k.open_time[0]) & (tape.trades.ts_event <= now)
    assert int(k.n_trades[0]) == int(in_second.sum())
    assert int(k.volume[0]) == int(tape.trades.qty[in_second].sum())


def test_agg_trade_queries_by_id_time_and_recency_respect_exchange_now() -> None:
    tape = synthetic_tape(n_orders=500)
    market = SymbolMarket(tape, first_agg_id=7_000)
    aggs = market.aggs
    assert int(aggs.agg_id[0]) == 7_000
    assert market.aggs_from_id(7_010, 3, 2**62) == (10, 13)
    assert market.aggs_from_id(0, 2, 2**62) == (0, 2)
    # An order crossing two prices gives two aggTrades with one time: pick i whose time is its own.
    def own_time(start: int) -> int:
        ts = aggs.ts_event
        return next(j for j in range(start, len(aggs) - 1) if ts[j - 1] < ts[j] < ts[j + 1])

    i = own_time(5)
    ti = int(aggs.ts_event[i])
    assert market.aggs_in_time(ti, None, 4, 2**62) == (i, i + 4)
    assert market.aggs_in_time(None, ti, 4, 2**62) == (i - 3, i + 1)
    assert market.aggs_in_time(ti, ti, 100, 2**62) == (i, i + 1)
    k = own_time(50)
    now = int(aggs.ts_event[k])
    assert market.recent_aggs(10, now) == (k - 9, k + 1)
    assert market.aggs_from_id(7_045, 1000, now) == (45, k + 1)
    assert market.aggs_from_id(7_400, 10, now) == (k + 1, k + 1)  # the future is not there yet
    assert not market.is_complete(now)
    assert market.is_complete(tape.end_us)


def test_trade_queries_find_ids_and_stop_at_exchange_now() -> None:
    tape = synthetic_tape(n_orders=300, first_trade_id=5_000)
    market = SymbolMarket(tape)
    assert market.trades_from_id(5_100, 10, 2**62) == (100, 110)
    now = int(tape.trades.ts_event[200])
    stop = market.visible_trades(now)
    assert bool((tape.trades.ts_event[:stop] <= now).all())
    assert int(tape.trades.ts_event[stop]) > now
    assert market.recent_trades(5, now) == (stop - 5, stop)


def test_quote_mantissas_match_exact_decimal_products() -> None:
    rng = np.random.default_rng(0)
    price = rng.integers(1, 10**7, 1000) * 10**6
    qty = rng.integers(1, 10**8, 1000) * 10**3
    assert quote_mantissas(price, qty).tolist() == [int(p) * int(q) // 10**8 for p, q in zip(price, qty, strict=True)]


# --- the book -----------------------------------------------------------------------------------------
def _book_tape() -> MarketTape:
    t0 = 1_723_161_253_000_000
    initial = snapshot("BTCUSDT", 105, [("100.00", "1.0"), ("99.99", "2.0")], [("100.01", "1.5"), ("100.02", "3.0")])
    diffs = [
        # Diffs up to u=105 are already inside the snapshot (the recording case): they must be skipped.
        (t0 + 100_000, 101, 103, [(False, "100.00", "9.9")]),
        (t0 + 200_000, 104, 105, [(True, "100.01", "0")]),
        (t0 + 300_000, 106, 108, [(False, "100.00", "0.5"), (True, "100.03", "4.0")]),
        (t0 + 400_000, 109, 109, [(False, "99.99", "0"), (True, "100.01", "0")]),
        (t0 + 500_000, 110, 112, [(False, "100.01", "0.7")]),
    ]
    return market_tape("BTCUSDT", [(1, t0, "100.00", "0.1", True)], diffs=diffs, initial_book=initial)


def test_book_applies_only_diffs_after_the_snapshot_and_answers_by_exchange_time() -> None:
    tape = _book_tape()
    t0 = tape.start_us
    book = BookReplayer(tape)
    at_start = book.snapshot(t0 + 250_000, 10)
    assert at_start.last_update_id == 105
    assert at_start.bids == ((10_000_000_000, 100_000_000), (9_999_000_000, 200_000_000))
    after = book.snapshot(t0 + 400_000, 10)
    assert after.last_update_id == 109
    assert after.bids == ((10_000_000_000, 50_000_000),)
    assert after.asks == ((10_002_000_000, 300_000_000), (10_003_000_000, 400_000_000))
    latest = book.snapshot(t0 + 10**9, 1)
    assert latest.last_update_id == 112
    assert latest.bids == ((10_001_000_000, 70_000_000),)
    # Asking for an earlier time replays from the snapshot again.
    assert book.snapshot(t0 + 300_000, 10).last_update_id == 108


def test_book_of_a_simulated_tape_tops_with_the_simulators_best_bid_and_ask_at_each_diff() -> None:
    from btcpipe.market.simulator import SimConfig, simulate

    config = SimConfig(seed=4, duration_s=120)
    tape = simulate(config)
    depth, best_bid_ask = tape.depth, tape.best_bid_asks
    assert depth is not None
    assert best_bid_ask is not None
    position = {uid: i for i, uid in enumerate(best_bid_ask.update_id.tolist())}
    book = BookReplayer(tape)
    checked = 0
    for i in range(0, len(depth), max(1, len(depth) // 25)):
        mine = book.snapshot(int(depth.ts_event[i]), 50)
        j = position[mine.last_update_id]
        assert mine.bids[0] == (int(best_bid_ask.bid_price[j]), int(best_bid_ask.bid_qty[j]))
        assert mine.asks[0] == (int(best_bid_ask.ask_price[j]), int(best_bid_ask.ask_qty[j]))
        assert len(mine.bids) == len(mine.asks) == config.depth_levels
        checked += 1
    assert checked >= 25


def test_book_by_update_id_skips_the_diffs_a_recordings_snapshot_already_holds() -> None:
    from btcpipe.market.book import book_at

    tape = _book_tape()
    assert tape.initial_book is not None
    for answer in (BookReplayer(tape).at_update_id(105), book_at(tape, 105)):
        assert answer.last_update_id == 105
        assert (answer.bids, answer.asks) == (tape.initial_book.bids, tape.initial_book.asks)
    inside = book_at(tape, 111)  # inside the last diff's [U, u]: the book of the diff before it
    assert inside.last_update_id == 109
    assert inside.ts_event == tape.start_us + 400_000
    assert inside.bids == ((10_000_000_000, 50_000_000),)
    assert book_at(tape, 112, limit=1).bids == ((10_001_000_000, 70_000_000),)


def test_one_batch_of_tape_diffs_gives_the_book_that_applying_them_one_by_one_gives() -> None:
    from btcpipe.binance.order_book import OrderBook
    from btcpipe.domain.records import DepthDiff
    from btcpipe.exchange.book import apply_depth_diffs
    from btcpipe.market.simulator import SimConfig, simulate

    tape = simulate(SimConfig(seed=6, duration_s=60, depth_interval_us=0))
    depth, initial = tape.depth, tape.initial_book
    assert depth is not None
    assert initial is not None
    one_by_one = OrderBook.from_snapshot(initial)
    for i in range(len(depth)):
        lo, hi = int(depth.offsets[i]), int(depth.offsets[i + 1])
        levels = list(zip(depth.level_is_ask[lo:hi].tolist(), depth.level_price[lo:hi].tolist(),
                          depth.level_qty[lo:hi].tolist(), strict=True))
        one_by_one.apply(DepthDiff(
            tape.symbol, int(depth.ts_event[i]), int(depth.first_update_id[i]), int(depth.last_update_id[i]),
            bids=tuple((p, q) for a, p, q in levels if not a), asks=tuple((p, q) for a, p, q in levels if a),
        ))
    batch = OrderBook.from_snapshot(initial)
    half = len(depth) // 2
    apply_depth_diffs(batch, depth, 0, half, exponent=tape.exponent)
    apply_depth_diffs(batch, depth, half, len(depth), exponent=tape.exponent)
    assert batch.to_snapshot() == one_by_one.to_snapshot()
    assert (batch.best_bid(), batch.best_ask()) == (one_by_one.best_bid(), one_by_one.best_ask())
    assert batch.last_update_id == int(depth.last_update_id[-1])
