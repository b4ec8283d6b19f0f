"""When the processor closes a second: on event time (every input the schema needs past it), on the ingestor's
heartbeat in a quiet market, never early when one stream runs ahead of another."""

from __future__ import annotations

from support.processor import SEC, T0, batch_frame, collect, last_trade_row, mismatches, sim_tape, trade

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_HEARTBEAT, STREAM_TRADES
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.records import Trade
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.replay import replay
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire.codec import encode_heartbeat, encode_trades

PARAMS = FeatureParams(0.05)
SPREAD = FeatureParams(0.05, with_spread=True)


def make(bus: InProcessBus, params: FeatureParams, rows: dict[int, tuple[float, ...]],
         settings: ProcessorSettings) -> Processor:
    clock = ManualClock(T0)
    return Processor(bus, InProcessOnlineStore(clock), InMemoryPositionStore(), params, symbols=["BTCUSDT"],
                     clock=clock, settings=settings, on_rows=collect(rows))


def drain(p: Processor) -> None:
    while p.step(block_ms=0):
        pass
    p.step(block_ms=0)


def publish(bus: InProcessBus, *trades: Trade) -> None:
    bus.publish(STREAM_TRADES, "BTCUSDT", [encode_trades(list(trades))])


def beat(bus: InProcessBus, ts: int) -> None:
    bus.publish(STREAM_HEARTBEAT, "BTCUSDT", [encode_heartbeat(Heartbeat("BTCUSDT", ts))])


def test_a_trade_at_the_second_end_closes_it_without_waiting_for_lateness() -> None:
    bus, rows = InProcessBus(), {}
    p = make(bus, PARAMS, rows, ProcessorSettings(close_on_clock=False, lateness_ms=200))
    publish(bus, trade(1, T0 + 300_000), trade(2, T0 + SEC + 400_000))
    drain(p)
    assert p.last_row("BTCUSDT") is None  # the grid starts at T0 + 1 s; nothing yet past T0 + 2 s
    publish(bus, trade(3, T0 + 2 * SEC))  # exactly the second's end: it belongs to the next second
    drain(p)
    assert p.last_row("BTCUSDT") == T0 + 2 * SEC
    assert rows[T0 + 2 * SEC][PARAMS.names.index("n_trades_1s")] == 1


def test_when_trades_run_ahead_of_best_bid_ask_no_row_closes_early() -> None:
    tape = sim_tape(duration_s=120, seed=17)
    bus, rows = InProcessBus(), {}
    replay(tape, bus, kinds=["trade"])  # the trade stream is two minutes ahead of best bid/ask
    p = make(bus, SPREAD, rows, ProcessorSettings(close_on_clock=False))
    drain(p)
    assert rows == {}  # both streams must be past a second; best bid/ask has shown nothing yet
    replay(tape, bus, kinds=["bestbidask"])
    drain(p)
    assert p.late_events() == 0
    st = p.states["BTCUSDT"]
    assert st.bars_from is not None
    frame = batch_frame(tape, SPREAD, bars_from=st.bars_from, end_us=last_trade_row(tape))
    assert len(frame) > 100
    assert mismatches(rows, frame) == []


def test_a_heartbeat_closes_a_quiet_second_once_the_trades_before_it_are_read() -> None:
    bus, rows = InProcessBus(), {}
    p = make(bus, PARAMS, rows, ProcessorSettings(close_on_clock=False, poll_max=1))
    publish(bus, trade(1, T0 + 300_000))
    publish(bus, trade(2, T0 + SEC + 200_000))
    drain(p)
    assert p.last_row("BTCUSDT") is None  # no trade at or after T0 + 2 s: a quiet second
    beat(bus, T0 + 2 * SEC)
    p.step(block_ms=0)
    assert p.last_row("BTCUSDT") == T0 + 2 * SEC
    # Trades published before a heartbeat are read before it is applied, even when they take several polls.
    publish(bus, trade(3, T0 + 2 * SEC + 100_000))
    publish(bus, trade(4, T0 + 2 * SEC + 900_000))
    beat(bus, T0 + 3 * SEC)
    p.step(block_ms=0)  # reads the heartbeat and one trade: the stream is not caught up, the beat waits
    assert p.last_row("BTCUSDT") == T0 + 2 * SEC
    drain(p)
    assert p.last_row("BTCUSDT") == T0 + 3 * SEC
    assert rows[T0 + 3 * SEC][PARAMS.names.index("n_trades_1s")] == 2
    assert p.late_events() == 0
