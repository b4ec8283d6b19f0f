"""One symbol state for the processor and the inference fallback: the same deliveries give the same rows.

The deliveries are what the ingestor publishes, including its two ways of filling a trade-id gap from
REST: a fill published while the gap's second is still open (its ids arrive after newer ones: taken by
both, not a duplicate) and a deferred fill published seconds later (late for both, counted, not applied).
"""

from __future__ import annotations

from support.processor import SEC, collect, same, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_TRADES
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.time import floor_sec
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.services.infer.fallback import FallbackFeatures, MarketTap
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.replay import best_bid_asks, trade_batches
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire.codec import encode_best_bid_ask, encode_trades

PARAMS = FeatureParams(0.05, with_spread=True)
Event = tuple[int, list[Trade] | BestBidAsk]


def deliveries() -> tuple[list[Event], list[Trade], list[Trade]]:
    """The tape's events in time order, with one gap filled promptly and one filled late (see the docstring)."""
    tape = sim_tape(duration_s=120, seed=13)
    assert tape.best_bid_asks is not None
    events: list[Event] = [(b[0].ts_event, b) for b in trade_batches(tape.symbol, tape.trades, tape.exponent, 1)]
    events += [(b.ts_event, b) for b in best_bid_asks(tape.symbol, tape.best_bid_asks, tape.exponent)]
    events.sort(key=lambda e: e[0])
    trades = [k for k, (_, e) in enumerate(events) if isinstance(e, list)]
    # Prompt fill: a trade whose successor is in the same second is published right after it.
    prompt = next(k for a, k in enumerate(trades) if events[k][0] > tape.start_us + 80 * SEC
                  and floor_sec(events[trades[a + 1]][0]) == floor_sec(events[k][0]))
    # Deferred fill: a trade at ~70 s published 3 s later, after its second has closed.
    deferred = next(k for k in trades if events[k][0] > tape.start_us + 70 * SEC)
    late_at = next(k for k, e in enumerate(events) if e[0] > events[deferred][0] + 3 * SEC)
    nxt = next(k for k in trades if k > prompt)
    order = [k for k in range(len(events)) if k not in (prompt, deferred)]
    order.insert(order.index(nxt) + 1, prompt)
    order.insert(order.index(late_at), deferred)
    prompt_trades, deferred_trades = events[prompt][1], events[deferred][1]
    assert isinstance(prompt_trades, list)
    assert isinstance(deferred_trades, list)
    return [events[k] for k in order], prompt_trades, deferred_trades


def test_processor_and_fallback_give_identical_rows_for_the_same_deliveries_with_gap_fills() -> None:
    events, prompt, deferred = deliveries()
    bus, clock = InProcessBus(), ManualClock(events[0][0])
    processor_rows: dict[int, tuple[float, ...]] = {}
    processor = Processor(bus, InProcessOnlineStore(clock), InMemoryPositionStore(), PARAMS, symbols=["BTCUSDT"],
                          clock=clock, settings=ProcessorSettings(close_on_clock=False),
                          on_rows=collect(processor_rows))
    tap = MarketTap(bus, ["BTCUSDT"], start="earliest")
    fallback = FallbackFeatures(PARAMS, lateness_us=200_000, stale_after_us=3 * SEC)
    fallback_rows: dict[int, tuple[float, ...]] = {}
    end = events[-1][0] + SEC
    for _, event in events:
        if isinstance(event, list):
            bus.publish(STREAM_TRADES, "BTCUSDT", [encode_trades(event)])
        else:
            bus.publish(STREAM_BEST_BID_ASK, "BTCUSDT", [encode_best_bid_ask(event)])
        processor.step(block_ms=0)
        fallback.add(tap.pump())
        fallback.close_until(end, now_us=0)  # event time only, like the processor without its clock
        fallback_rows.update((r.ts_sec, tuple(r.values.tolist())) for r in fallback.recent_rows("BTCUSDT"))

    assert len(processor_rows) > 100
    assert sorted(fallback_rows) == sorted(processor_rows)
    assert [t for t in processor_rows if not same(processor_rows[t], fallback_rows[t])] == []
    state, twin = processor.states["BTCUSDT"], fallback.state("BTCUSDT")
    assert twin is not None
    assert state.stats == twin.stats
    assert state.stats.late_trades == len(deferred)  # the deferred fill is late for both
    assert state.stats.duplicate_trades == 0  # and the prompt fill, with older ids after newer, no duplicate
    n_trades = PARAMS.names.index("n_trades_1s")
    second = floor_sec(prompt[0].ts_event) + SEC
    assert processor_rows[second][n_trades] >= len(prompt) + 1
