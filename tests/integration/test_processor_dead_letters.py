"""A bad bus payload costs only itself: the processor sends it to the dead-letters stream with its position and
reason, counts it, commits past it and computes every row from the good payloads; a restart does not meet it
as a crash again."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.processor import SEC, batch_frame, collect, last_trade_row, mismatches, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_DEAD_LETTERS, STREAM_TRADES, BusRecord, Position
from btcpipe.bus.positions import FilePositionStore
from btcpipe.domain.errors import BusError
from btcpipe.domain.tape import MarketTape
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.services.process.dead_letters import DeadLetters, read_dead_letter
from btcpipe.services.process.processor import Processor
from btcpipe.services.replay import replay
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire import avro_wire

PARAMS = FeatureParams(0.05)
SYMBOL = "BTCUSDT"


def _unmeetable_exponents() -> bytes:
    """A ``MarketTradeBatch`` whose trades' exponents 10^26 apart cannot be put at one exponent pair (the
    processor crashed on it with IndexError on every restart)."""
    items = [{"id": 1, "ts_event": 1, "ts_recv": 1, "price_mantissa": 5, "price_exponent": pe, "qty_mantissa": 1,
              "qty_exponent": -8, "is_buyer_maker": False} for pe in (18, -8)]
    return avro_wire.write(avro_wire.MARKET_TRADE_BATCH, {"symbol": SYMBOL, "trades": items})


POISON = [_unmeetable_exponents(), avro_wire.MARKET_TRADE_COLUMNS.header + b"\x0eBTCUSDT\xff\xff\xff"]


def _bus_with_poison(tape: MarketTape, at: int) -> tuple[InProcessBus, list[str]]:
    """The tape's trade payloads in order, with the poison payloads after the ``at``-th; their record ids."""
    source = InProcessBus()
    replay(tape, source, kinds=["trade"])
    shard = source.shard_for(STREAM_TRADES, SYMBOL)
    records, _ = source.read(Position(STREAM_TRADES, shard), max_count=1_000_000)
    payloads = [r.payload for r in records]
    bus = InProcessBus()
    bus.publish(STREAM_TRADES, SYMBOL, payloads[:at] + POISON + payloads[at:])
    published, _ = bus.read(Position(STREAM_TRADES, shard), max_count=1_000_000)
    return bus, [r.id for r in published[at : at + len(POISON)]]


def _dead_letters(bus: InProcessBus) -> list[BusRecord]:
    shard = bus.shard_for(STREAM_DEAD_LETTERS, STREAM_TRADES)
    return bus.read(Position(STREAM_DEAD_LETTERS, shard), max_count=1000)[0]


def test_bad_payloads_go_to_dead_letters_and_every_row_is_computed_from_the_good_ones(tmp_path: Path) -> None:
    tape = sim_tape(duration_s=240, seed=5)
    bus, poison_ids = _bus_with_poison(tape, at=40)
    clock = ManualClock(tape.end_us + 3 * SEC)
    metrics = Metrics()
    rows: dict[int, tuple[float, ...]] = {}
    processor = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), PARAMS, symbols=[SYMBOL],
                          clock=clock, metrics=metrics, on_rows=collect(rows))
    while processor.step(block_ms=0):
        pass
    processor.step(block_ms=0)
    processor.close()

    frame = batch_frame(tape, PARAMS, bars_from=processor.states[SYMBOL].bars_from or 0,
                        end_us=last_trade_row(tape) + SEC)
    assert mismatches(rows, frame) == []  # no good trade lost
    assert processor.stats.trades == len(tape.trades)
    assert processor.stats.undecodable_records == 2
    letters = [read_dead_letter(r.payload) for r in _dead_letters(bus)]
    assert [(h["stream"], h["id"], h["key"], h["reason"]) for h, _ in letters] == [
        (STREAM_TRADES, i, SYMBOL, "PayloadDecodeError") for i in poison_ids]
    assert [p for _, p in letters] == POISON  # the original bytes, to look at or replay once fixed
    assert all(h["shard"] == bus.shard_for(STREAM_TRADES, SYMBOL) and h["detail"] for h, _ in letters)
    exposition = metrics.exposition().decode()
    assert 'btcpipe_dead_letters_total{reason="PayloadDecodeError",stream="market-sbe-trade"} 2.0' in exposition

    # Committed past the poison: a restart resumes after it and does not crash on it again.
    saved = FilePositionStore(tmp_path).load("processor", STREAM_TRADES)
    assert int(saved[bus.shard_for(STREAM_TRADES, SYMBOL)]) > int(poison_ids[-1])
    again = Processor(bus, InProcessOnlineStore(clock), FilePositionStore(tmp_path), PARAMS, symbols=[SYMBOL],
                      clock=clock)
    while again.step(block_ms=0):
        pass
    assert again.stats.undecodable_records == 0


class _RefusingBus(InProcessBus):
    def publish(self, stream: str, key: str, payloads: list[bytes]) -> int:  # type: ignore[override]
        if stream == STREAM_DEAD_LETTERS:
            raise BusError("dead-letters stream unavailable")
        return super().publish(stream, key, payloads)


def test_a_dead_letter_the_bus_refuses_is_counted_and_skipped_without_raising() -> None:
    bus = _RefusingBus()
    letters = DeadLetters(bus, consumer="processor")
    record = BusRecord(STREAM_TRADES, "0", "7", SYMBOL, b"\x01")
    letters.send(record, ValueError("boom"))
    assert letters.stats.sent == 1
    assert letters.stats.publish_errors == 1
    assert letters.stats.by_reason == {(STREAM_TRADES, "ValueError"): 1}


def test_dead_letter_log_lines_are_rate_limited_per_stream_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    letters = DeadLetters(InProcessBus(), consumer="processor", log_interval_s=10.0, monotonic=lambda: now[0])
    record = BusRecord(STREAM_TRADES, "0", "7", SYMBOL, b"\xde\xad")
    with caplog.at_level("WARNING", logger="btcpipe.services.process.dead_letters"):
        for _ in range(100):
            letters.send(record, ValueError("boom"))
        now[0] = 11.0
        letters.send(record, ValueError("boom"))
    lines = [r for r in caplog.records if r.getMessage() == "undecodable bus payload sent to dead letters"]
    assert len(lines) == 2
    assert lines[0].sample == "dead"  # type: ignore[attr-defined]
    assert lines[1].not_logged_since == 99  # type: ignore[attr-defined]
    assert letters.stats.sent == 101
