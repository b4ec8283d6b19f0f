"""SymbolFeatureState: best bid/ask batches follow the one-by-one rule, trade ids are forgotten only once
their second has left the de-duplication window, and a snapshot through JSON restores bit-identical state."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpipe.domain.errors import DataError
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


def _feed(state: SymbolFeatureState, events: list[tuple[int, object]]) -> list[tuple[int, bytes]]:
    """Events in arrival order, closing what the inputs show is past; the rows as (ts, exact bytes)."""
    rows = []
    for _, e in events:
        if isinstance(e, BestBidAsk):
            state.add_best_bid_ask(e)
        else:
            assert isinstance(e, list)
            state.add_trades(e)
        rows += [(r.ts_sec, r.values.tobytes()) for r in state.close_ready()]
    return rows


def _events(seed: int = 5) -> list[tuple[int, object]]:
    from btcpipe.market.config import SimConfig
    from btcpipe.market.simulator import simulate
    from btcpipe.services.replay import best_bid_asks, trade_batches

    tape = simulate(SimConfig(seed=seed, start_us=T0, duration_s=150))
    assert tape.best_bid_asks is not None
    events: list[tuple[int, object]] = [(b[0].ts_event, b) for b in trade_batches(tape.symbol, tape.trades,
                                                                                  tape.exponent, 3)]
    events += [(b.ts_event, b) for b in best_bid_asks(tape.symbol, tape.best_bid_asks, tape.exponent)]
    events.sort(key=lambda e: e[0])
    return events


def test_snapshot_through_json_and_restore_mid_stream_gives_bit_identical_rows() -> None:
    events = _events()
    whole = SymbolFeatureState("BTCUSDT", PARAMS, lateness_us=200_000)
    expected = _feed(whole, events)
    assert len(expected) > 100
    for cut in (len(events) // 3, 2 * len(events) // 3 + 1):
        first = SymbolFeatureState("BTCUSDT", PARAMS, lateness_us=200_000)
        head = _feed(first, events[:cut])
        assert first.buffered > 0 or first._best_bid_ask  # unclosed input is part of what is carried over
        doc = json.loads(json.dumps(first.snapshot(), allow_nan=False))
        restored = SymbolFeatureState.restore(doc)
        assert restored.snapshot() == first.snapshot()
        tail = _feed(restored, events[cut:])
        assert head + tail == expected
        assert restored.stats == whole.stats


def test_snapshot_with_a_late_trade_and_a_heartbeat_restores_the_taint_and_the_close_rule() -> None:
    state = seeded()
    state.add_trades([Trade("BTCUSDT", 2, T0 + 2 * SEC + 5, 6_000_000_000_000, 1_000_000, False)])
    state.add_best_bid_ask(BestBidAsk("BTCUSDT", T0 + 2 * SEC + 9, 1, 100, 1, 101, 1))
    assert [r.ts_sec for r in state.close_ready()] == [T0 + 2 * SEC]  # the grid starts at T0 + 1 s
    state.add_trades([Trade("BTCUSDT", 3, T0 + SEC + 5, 6_000_000_000_000, 1_000_000, False)])  # late
    state.add_heartbeat(T0 + 4 * SEC)
    restored = SymbolFeatureState.restore(json.loads(json.dumps(state.snapshot())))
    assert restored.tainted_until == state.tainted_until > T0 + 2 * SEC
    assert restored.stats.late_trades == 1
    a, b = state.close_ready(), restored.close_ready()
    assert [r.ts_sec for r in a] == [r.ts_sec for r in b] == [T0 + 3 * SEC, T0 + 4 * SEC]
    assert [r.values.tobytes() for r in a] == [r.values.tobytes() for r in b]


def test_restore_refuses_unknown_versions_and_malformed_snapshots() -> None:
    doc = seeded().snapshot()
    with pytest.raises(DataError, match="version 2 is not supported"):
        SymbolFeatureState.restore({**doc, "version": 2})
    with pytest.raises(DataError, match="not a symbol-feature-state snapshot"):
        SymbolFeatureState.restore({**doc, "kind": "something-else"})
    with pytest.raises(DataError, match="base64"):
        SymbolFeatureState.restore({**doc, "taken": {"lo": "!!", "hi": ""}})
    with pytest.raises(DataError, match="stats"):
        SymbolFeatureState.restore({**doc, "stats": {"trades": 1}})
    with pytest.raises(DataError):
        SymbolFeatureState.restore([doc])
    engine = doc["engine"]
    with pytest.raises(DataError, match="streaming-engine snapshot version"):
        SymbolFeatureState.restore({**doc, "engine": {**engine, "version": 99}})
