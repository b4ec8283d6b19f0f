"""The processor on columnar trade batches: old and new payloads alike, bulk polls with repeats and corrupt
bodies, and consumer lag in records for the metrics (in-process bus and a real redis-server)."""

from __future__ import annotations

from collections.abc import Callable

from support.processor import PARAMS, SEC, batch_frame, collect, last_trade_row, mismatches, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_TRADES, Bus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.records import Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.replay import trade_batches, trade_column_batches
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire import avro_wire
from btcpipe.wire.codec import encode_trade, encode_trades

LAG = "btcpipe_consumer_lag_records"


def make(bus: Bus, clock: ManualClock, settings: ProcessorSettings, *, metrics: Metrics | None = None,
         on_rows: Callable[[list[FeatureVector1s]], None] | None = None) -> Processor:
    return Processor(bus, InProcessOnlineStore(clock), InMemoryPositionStore(), PARAMS, symbols=["BTCUSDT"],
                     clock=clock, settings=settings, metrics=metrics, on_rows=on_rows)


def drain(p: Processor) -> None:
    while p.step(block_ms=0):
        pass
    p.step(block_ms=0)


def old_batch(trades: list[Trade]) -> bytes:
    return avro_wire.write(avro_wire.MARKET_TRADE_BATCH, {"symbol": trades[0].symbol, "trades": [
        {"id": t.id, "ts_event": t.ts_event, "ts_recv": t.ts_recv, "price_mantissa": t.price_mantissa,
         "price_exponent": t.price_exponent, "qty_mantissa": t.qty_mantissa, "qty_exponent": t.qty_exponent,
         "is_buyer_maker": t.is_buyer_maker} for t in trades]})


def frames(seed: int, duration_s: int = 150) -> tuple[MarketTape, list[list[Trade]]]:
    tape = sim_tape(duration_s=duration_s, seed=seed)
    return tape, list(trade_batches(tape.symbol, tape.trades, tape.exponent))


def test_old_and_columnar_trade_payloads_give_the_rows_of_the_batch_builder() -> None:
    tape, batches = frames(seed=21)
    bus = InProcessBus()
    for k, b in enumerate(batches):  # a rolling upgrade: writers of three vintages on one stream
        payload = encode_trades(b) if k % 3 == 0 else old_batch(b) if k % 3 == 1 else None
        bus.publish(STREAM_TRADES, "BTCUSDT", [payload] if payload else [encode_trade(t) for t in b])
    assert bus.stats.published > len(batches)
    rows: dict[int, tuple[float, ...]] = {}
    p = make(bus, ManualClock(0), ProcessorSettings(close_on_clock=False, poll_max=5_000), on_rows=collect(rows))
    drain(p)
    assert p.late_events() == 0
    assert p.duplicate_events() == 0
    assert p.stats.trades == len(tape.trades)
    st = p.states["BTCUSDT"]
    assert st.bars_from is not None
    frame = batch_frame(tape, PARAMS, bars_from=st.bars_from, end_us=last_trade_row(tape) - SEC)
    assert len(frame) > 100
    assert mismatches(rows, frame) == []


def test_a_redelivered_stretch_in_one_big_poll_is_counted_once_as_duplicates() -> None:
    tape, batches = frames(seed=22)
    bus = InProcessBus()
    payloads = [encode_trades(b) for b in batches]
    redelivered = payloads[100:400]
    bus.publish(STREAM_TRADES, "BTCUSDT", payloads[:400] + redelivered + payloads[400:])
    rows: dict[int, tuple[float, ...]] = {}
    p = make(bus, ManualClock(0), ProcessorSettings(close_on_clock=False, poll_max=10_000), on_rows=collect(rows))
    drain(p)
    assert p.duplicate_events() == sum(len(b) for b in batches[100:400])
    assert p.late_events() == 0
    st = p.states["BTCUSDT"]
    assert st.bars_from is not None
    frame = batch_frame(tape, PARAMS, bars_from=st.bars_from, end_us=last_trade_row(tape) - SEC)
    assert mismatches(rows, frame) == []


def test_a_corrupt_body_in_a_bulk_poll_is_skipped_and_counted_and_nothing_else_lost() -> None:
    _, batches = frames(seed=23, duration_s=60)
    bus = InProcessBus()
    payloads = [encode_trades(b) for b in batches]
    broken = bytearray(payloads[50])
    broken[-1] = 9  # not a buyer-maker flag
    payloads[50] = bytes(broken)
    payloads[60] = payloads[60][:-3]
    bus.publish(STREAM_TRADES, "BTCUSDT", payloads)
    p = make(bus, ManualClock(0), ProcessorSettings(close_on_clock=False, poll_max=10_000))
    drain(p)
    assert p.skipped_payloads() == 2
    assert p.stats.undecodable_records == 2
    assert p.stats.trades == sum(len(b) for k, b in enumerate(batches) if k not in (50, 60))


def test_consumer_lag_is_the_records_behind_the_head_sampled_once_per_interval() -> None:
    _, batches = frames(seed=24, duration_s=40)
    bus, clock, metrics = InProcessBus(), ManualClock(0), Metrics()
    bus.publish(STREAM_TRADES, "BTCUSDT", [encode_trades(b) for b in batches])
    n = len(batches)
    p = make(bus, clock, ProcessorSettings(close_on_clock=False, poll_max=100), metrics=metrics)
    labels = {"stream": STREAM_TRADES, "consumer": "processor"}
    p.step(block_ms=0)
    assert metrics.registry.get_sample_value(LAG, labels) == n - 100
    p.step(block_ms=0)  # same clock second: not sampled again
    assert metrics.registry.get_sample_value(LAG, labels) == n - 100
    clock.advance(1)
    p.step(block_ms=0)
    assert metrics.registry.get_sample_value(LAG, labels) == n - 300
    drain(p)
    clock.advance(1)
    p.step(block_ms=0)
    assert metrics.registry.get_sample_value(LAG, labels) == 0
    assert p.consumer_lag() == {STREAM_TRADES: 0}


def test_consumer_lag_on_redis_streams_counts_the_records_behind(redis_url: str) -> None:
    _, batches = frames(seed=25, duration_s=30)
    bus, clock, metrics = RedisStreamsBus(RedisOptions(redis_url)), ManualClock(0), Metrics()
    bus.publish(STREAM_TRADES, "BTCUSDT", [encode_trades(b) for b in batches])
    p = make(bus, clock, ProcessorSettings(close_on_clock=False, poll_max=50), metrics=metrics)
    labels = {"stream": STREAM_TRADES, "consumer": "processor"}
    p.step(block_ms=0)
    assert metrics.registry.get_sample_value(LAG, labels) == len(batches) - 50
    drain(p)
    clock.advance(1)
    p.step(block_ms=0)
    assert metrics.registry.get_sample_value(LAG, labels) == 0
    bus.close()


def test_replay_cuts_the_same_frames_from_the_tape_columns_as_trade_batches() -> None:
    tape = sim_tape(duration_s=60, seed=26)
    for max_batch in (1, 3, 100):
        as_trades = list(trade_batches(tape.symbol, tape.trades, tape.exponent, max_batch))
        as_columns = list(trade_column_batches(tape.symbol, tape.trades, tape.exponent, max_batch))
        assert [c.to_trades() for c in as_columns] == as_trades
    assert max(len(b) for b in as_trades) > 1  # the tape has same-time runs, so the cuts were exercised
