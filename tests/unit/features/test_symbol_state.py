"""SymbolFeatureState's column inputs: best bid/ask batches follow the one-by-one rule, and trade ids are
forgotten only once their second has left the de-duplication window."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import FeatureParams
from btcpipe.features.symbol_state import SymbolFeatureState

T0 = 1_704_067_200_000_000
PARAMS = FeatureParams(0.05, with_spread=True)
SEC = US_PER_SEC


def seeded() -> SymbolFeatureState:
    st_ = SymbolFeatureState("BTCUSDT", PARAMS, lateness_us=200_000)
    st_.add_trades([Trade("BTCUSDT", 1, T0 + 10, 6_000_000_000_000, 1_000_000, False)])
    return st_


updates = st.lists(st.tuples(st.integers(0, 6_000), st.integers(0, 40)), max_size=40)


@settings(max_examples=150)
@given(st.lists(updates, max_size=5), st.integers(0, 6))
def test_best_bid_ask_batches_follow_the_one_by_one_rule(chunks: list[list[tuple[int, int]]], close_s: int) -> None:
    one, many = seeded(), seeded()
    for k, chunk in enumerate(chunks):
        if k == 2 and close_s:
            for s in (one, many):
                s.close_until(T0 + close_s * SEC + 200_000)
        for ms, uid in chunk:
            one.add_best_bid_ask(BestBidAsk("BTCUSDT", T0 + ms * 1_000, uid, 100 + uid, 1, 101 + uid, 1))
        ts = np.array([T0 + ms * 1_000 for ms, _ in chunk], dtype=np.int64)
        uid_ = np.array([u for _, u in chunk], dtype=np.int64)
        bid = np.array([(100 + u) / 1e8 for u in uid_.tolist()])
        ask = np.array([(101 + u) / 1e8 for u in uid_.tolist()])
        many.add_best_bid_ask_arrays(ts, uid_, bid, ask)
    assert (many.stats.best_bid_ask, many.stats.late_best_bid_ask, many.stats.duplicate_best_bid_ask) == (
        one.stats.best_bid_ask, one.stats.late_best_bid_ask, one.stats.duplicate_best_bid_ask)
    assert many._best_bid_ask == one._best_bid_ask
    assert many.best_bid_ask_watermark == one.best_bid_ask_watermark


def test_trade_ids_are_forgotten_only_after_the_dedup_window() -> None:
    state = SymbolFeatureState("BTCUSDT", FeatureParams(0.05), lateness_us=200_000, dedup_window_s=120)
    rng = random.Random(3)
    tid = 0
    for second in range(300):
        n = rng.randrange(1, 5)
        ids = np.arange(tid, tid + n, dtype=np.int64)
        tid += n
        ts = T0 + second * SEC + np.sort(np.array([rng.randrange(SEC) for _ in range(n)], dtype=np.int64))
        state.add_trade_arrays(ids, ts, np.full(n, 60_000.0), np.full(n, 0.01), np.zeros(n, dtype=np.bool_))
        state.close_until(int(ts[-1]))
    assert state._taken.n_ranges == 1
    assert len(state._taken) < 150 * 4  # pruned to about the window, not every id ever seen
    last = state.last_row
    assert last is not None
    # A redelivered trade from 30 s ago is a duplicate; one from 200 s ago is merely late.
    recent = int(state._taken.hi[0]) - 60
    before = (state.stats.duplicate_trades, state.stats.late_trades)
    state.add_trade_arrays(np.array([recent, 5], dtype=np.int64), np.array([last - 30 * SEC, T0 + 2 * SEC]),
                           np.full(2, 60_000.0), np.full(2, 0.01), np.zeros(2, dtype=np.bool_))
    assert (state.stats.duplicate_trades, state.stats.late_trades) == (before[0] + 1, before[1] + 1)
