"""A processor that stops at any point and is restarted continues the grid with no hole and the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.processor import SEC, batch_frame, collect, last_trade_row, mismatches, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.positions import FilePositionStore
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.store.memory import InProcessOnlineStore

PARAMS = FeatureParams(0.05, with_spread=True)


@pytest.mark.parametrize("crash_after_rows", [1, 75, 200])
def test_restart_rebuilds_from_the_bus_and_continues_without_a_hole(tmp_path: Path, crash_after_rows: int) -> None:
    tape = sim_tape(duration_s=300, seed=21)
    bus = InProcessBus()
    from btcpipe.services.replay import replay

    replay(tape, bus)
    clock = ManualClock(tape.end_us + 3 * SEC)
    settings = ProcessorSettings(poll_max=20)
    first: dict[int, tuple[float, ...]] = {}
    a = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), PARAMS, symbols=["BTCUSDT"],
                  clock=clock, settings=settings, on_rows=collect(first))
    while len(first) < crash_after_rows:
        assert a.step(block_ms=0) or len(first) >= crash_after_rows
    # A crash: no close(), the object is dropped; only what was committed survives (in the files).
    bars_from = a.states["BTCUSDT"].bars_from
    last_a = max(first)
    del a
    second: dict[int, tuple[float, ...]] = {}
    b = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), PARAMS, symbols=["BTCUSDT"],
                  clock=clock, settings=settings, on_rows=collect(second))
    assert b.stats.resumed_from["BTCUSDT"] == last_a
    while b.step(block_ms=0):
        pass
    b.step(block_ms=0)
    assert min(second) == last_a + SEC  # no hole and no row computed twice
    assert b.late_events() == 0
    assert bars_from is not None
    frame = batch_frame(tape, PARAMS, bars_from=bars_from, end_us=last_trade_row(tape) + SEC)
    assert mismatches(first | second, frame) == []


def test_restart_rereads_only_the_trailing_window_not_the_whole_stream(tmp_path: Path) -> None:
    """Positions are rewound only by the trailing window: the second run re-reads about 2 minutes, not all."""
    tape = sim_tape(duration_s=600, seed=8)
    bus = InProcessBus()
    from btcpipe.services.replay import replay

    replay(tape, bus, kinds=["trade"])
    clock = ManualClock(tape.end_us + 3 * SEC)
    params = FeatureParams(0.05)
    a = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), params, symbols=["BTCUSDT"],
                  clock=clock)
    while a.step(block_ms=0):
        pass
    a.step(block_ms=0)
    a.close()
    b = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), params, symbols=["BTCUSDT"],
                  clock=clock)
    b.step(block_ms=0)
    assert 0 < b.stats.trades < len(tape.trades) // 3
    assert b.stats.rows == 0  # nothing new to emit: the rows up to the end were emitted by the first run
