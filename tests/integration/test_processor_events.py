"""The processor over the in-process bus and store: lateness, duplicates, disorder, silent seconds, outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.processor import (
    PARAMS,
    SEC,
    T0,
    batch_frame,
    collect,
    last_trade_row,
    mismatches,
    same,
    sim_tape,
    trade,
)

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_FEATURES, STREAM_TRADES, Position
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.records import Trade
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.lake import Lake
from btcpipe.services.process.processor import Processor, ProcessorSettings, parse_partition, partition_symbols
from btcpipe.services.process.silver import LIVE_SILVER_DATASET, LiveSilverSink
from btcpipe.services.replay import replay, trade_batches
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire.codec import decode_feature_vector, encode_trades


def make(bus: InProcessBus, clock: ManualClock, params: FeatureParams = PARAMS, **kw: object) -> Processor:
    settings = kw.pop("settings", ProcessorSettings())
    assert isinstance(settings, ProcessorSettings)
    return Processor(bus, InProcessOnlineStore(clock), InMemoryPositionStore(), params, symbols=["BTCUSDT"],
                     clock=clock, settings=settings, **kw)  # type: ignore[arg-type]


def drain(p: Processor) -> None:
    while p.step(block_ms=0):
        pass
    p.step(block_ms=0)


def publish(bus: InProcessBus, *trades: Trade) -> None:
    bus.publish(STREAM_TRADES, trades[0].symbol, [encode_trades(list(trades))])


def row(p: Processor, ts: int) -> dict[str, float]:
    v = p.store.get_features("BTCUSDT", ts)
    assert v is not None, f"no row {ts}"
    return dict(zip(p.params.names, v.values, strict=True))


def test_late_trade_is_counted_and_not_applied() -> None:
    bus, clock, metrics = InProcessBus(), ManualClock(T0), Metrics()
    p = make(bus, clock, metrics=metrics, settings=ProcessorSettings(close_on_clock=False))
    publish(bus, trade(1, T0), trade(2, T0 + 500_000, qty=0.02), trade(3, T0 + SEC + 250_000))
    drain(p)
    assert p.last_row("BTCUSDT") == T0 + SEC  # the trade at +1.25 s closed the first second (event time)
    publish(bus, trade(4, T0 + 900_000, qty=5.0))  # belongs to the closed second
    publish(bus, trade(5, T0 + 2 * SEC + 300_000))
    drain(p)
    assert p.late_events() == 1
    assert metrics.registry.get_sample_value("btcpipe_processor_late_events_total", {"symbol": "BTCUSDT"}) == 1
    first, second = row(p, T0 + SEC), row(p, T0 + 2 * SEC)
    assert first["n_trades_1s"] == 2
    assert first["buy_vol_1s"] == pytest.approx(0.03)
    # Trade 4 (5 BTC) is in neither second: only trade 3 is in the second one.
    assert second["n_trades_1s"] == 1
    assert second["buy_vol_1s"] == pytest.approx(0.01)


def test_repeated_trade_ids_are_ignored_and_counted() -> None:
    bus, clock = InProcessBus(), ManualClock(T0)
    once, twice = make(bus, clock), None
    batch = [trade(1, T0), trade(2, T0 + 400_000, qty=0.3), trade(3, T0 + 800_000, buyer_maker=True)]
    publish(bus, *batch)
    publish(bus, trade(4, T0 + SEC + 500_000), trade(5, T0 + 3 * SEC))
    drain(once)
    bus2 = InProcessBus()
    publish(bus2, *batch)
    publish(bus2, *batch)  # redelivered frame
    publish(bus2, trade(2, T0 + 400_000, qty=0.3), trade(4, T0 + SEC + 500_000))
    publish(bus2, trade(4, T0 + SEC + 500_000), trade(5, T0 + 3 * SEC))
    twice = make(bus2, clock)
    drain(twice)
    assert twice.duplicate_events() == 5
    assert once.duplicate_events() == 0
    for t in (T0 + SEC, T0 + 2 * SEC):
        assert same(row(twice, t).values(), row(once, t).values())
    assert row(twice, T0 + SEC)["n_trades_1s"] == 3


def test_disorder_within_the_disorder_margin_gives_the_rows_of_the_sorted_tape() -> None:
    tape = sim_tape(duration_s=150, seed=7)
    rng = np.random.default_rng(1)
    trades = [t for b in trade_batches(tape.symbol, tape.trades, tape.exponent, max_batch=1) for t in b]
    jitter = rng.integers(0, 150_000, len(trades))  # arrival up to 150 ms after the trade; the margin is 200 ms
    arrival = sorted(range(len(trades)), key=lambda i: trades[i].ts_event + int(jitter[i]))
    assert arrival != sorted(arrival)
    bus, clock = InProcessBus(), ManualClock(T0)
    for k in range(0, len(arrival), 7):
        bus.publish(STREAM_TRADES, "BTCUSDT", [encode_trades([trades[i] for i in arrival[k : k + 7]])])
    rows: dict[int, tuple[float, ...]] = {}
    p = make(bus, clock, on_rows=collect(rows), settings=ProcessorSettings(close_on_clock=False, disorder_ms=200))
    drain(p)
    assert p.late_events() == 0
    assert p.duplicate_events() == 0
    st = p.states["BTCUSDT"]
    assert st.bars_from is not None
    frame = batch_frame(tape, PARAMS, bars_from=st.bars_from, end_us=last_trade_row(tape) - SEC)
    assert len(frame) > 100
    assert mismatches(rows, frame) == []


def test_silent_seconds_close_on_the_clock_and_carry_the_price() -> None:
    bus, clock = InProcessBus(), ManualClock(T0)
    p = make(bus, clock)
    publish(bus, trade(1, T0, price=60_000.0), trade(2, T0 + 300_000, price=60_001.0))
    p.step(block_ms=0)
    assert p.last_row("BTCUSDT") is None  # no later event and the clock has not passed T0 + 1.2 s
    clock.set(T0 + 5 * SEC + 199_999)
    p.step(block_ms=0)
    assert p.last_row("BTCUSDT") == T0 + 4 * SEC
    clock.set(T0 + 5 * SEC + 200_000)
    p.step(block_ms=0)
    assert p.last_row("BTCUSDT") == T0 + 5 * SEC
    rows = [row(p, T0 + k * SEC) for k in range(1, 6)]
    assert [r["n_trades_1s"] for r in rows] == [2, 0, 0, 0, 0]
    assert [r["ret_1s"] for r in rows[2:]] == [0.0, 0.0, 0.0]
    assert [r["time_since_last_trade_ms"] for r in rows] == [700.0, 1700.0, 2700.0, 3700.0, 4700.0]


def test_clock_does_not_close_seconds_while_the_bus_still_holds_older_events() -> None:
    tape = sim_tape(duration_s=90, seed=11)
    bus = InProcessBus()
    replay(tape, bus, kinds=["trade"])
    clock = ManualClock(tape.end_us + 30 * SEC)  # the clock is far ahead: a processor starting late
    rows: dict[int, tuple[float, ...]] = {}
    p = make(bus, clock, on_rows=collect(rows), settings=ProcessorSettings(poll_max=5))
    drain(p)
    assert p.late_events() == 0
    st = p.states["BTCUSDT"]
    assert st.bars_from is not None
    frame = batch_frame(tape, PARAMS, bars_from=st.bars_from, end_us=last_trade_row(tape) + SEC)
    assert mismatches(rows, frame) == []


def test_rows_reach_the_store_the_features_stream_and_live_silver(tmp_path: Path) -> None:
    tape = sim_tape(duration_s=120, seed=5)
    params = FeatureParams(0.05, with_spread=True)
    bus, clock = InProcessBus(), ManualClock(tape.end_us + 2 * SEC)
    replay(tape, bus)
    lake = Lake.open(str(tmp_path / "lake"))
    sink = LiveSilverSink(lake, params, flush_rows=50)
    p = make(bus, clock, params, silver=sink, settings=ProcessorSettings(ttl_s=30))
    drain(p)
    assert sink.writes >= 2  # flushed while running, not only at the end
    p.close()
    last = p.last_row("BTCUSDT")
    st = p.states["BTCUSDT"]
    assert last is not None
    assert st.first_row is not None
    expected_ts = list(range(st.first_row, last + SEC, SEC))
    published = [decode_feature_vector(r.payload) for r in bus.read(Position(STREAM_FEATURES, "0"), 10_000)[0]]
    assert [v.ts_sec for v in published] == expected_ts
    latest = p.store.get_latest("BTCUSDT")
    assert latest is not None
    assert latest.ts_sec == last
    assert same(latest.values, published[-1].values)
    stored = [p.store.get_features("BTCUSDT", v.ts_sec) for v in published]
    assert all(s is not None and same(s.values, v.values) for s, v in zip(stored, published, strict=True))
    table = lake.read_table("silver", LIVE_SILVER_DATASET, "BTCUSDT")
    assert table["ts_sec"].to_pylist() == expected_ts
    assert np.array_equal(table["spread"].to_numpy(), np.array([v.values[-1] for v in published]), equal_nan=True)
    clock.advance(31)
    assert p.store.get_features("BTCUSDT", last) is None  # the TTL the processor was given


def test_live_silver_merges_rows_written_before_a_restart(tmp_path: Path) -> None:
    tape = sim_tape(duration_s=40, seed=2)
    lake = Lake.open(str(tmp_path / "lake"))
    bus, clock = InProcessBus(), ManualClock(tape.end_us + 2 * SEC)
    replay(tape, bus, kinds=["trade"])
    p = make(bus, clock, silver=LiveSilverSink(lake, PARAMS, flush_rows=1000))
    drain(p)
    p.close()
    before = lake.read_table("silver", LIVE_SILVER_DATASET, "BTCUSDT").num_rows
    fresh = LiveSilverSink(lake, PARAMS)
    vectors = [v for v in (p.store.get_latest("BTCUSDT"),) if v is not None]
    moved = [type(v)(v.symbol, v.ts_sec + SEC, v.schema_hash, v.values, v.ts_computed) for v in vectors]
    fresh.add(moved)
    fresh.flush()
    assert lake.read_table("silver", LIVE_SILVER_DATASET, "BTCUSDT").num_rows == before + 1


def test_partitions_split_symbols_between_processes() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
    parts = [partition_symbols(symbols, i, 2) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(symbols)
    assert not set(parts[0]) & set(parts[1])
    assert parts == [partition_symbols(symbols, i, 2) for i in range(2)]  # stable
    assert parse_partition("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_partition(bad)


def test_a_processor_reads_only_its_symbols_on_a_shared_shard() -> None:
    eth = sim_tape("ETHUSDT", duration_s=30, seed=4)
    btc = sim_tape("BTCUSDT", duration_s=30, seed=5)
    bus, clock = InProcessBus(n_shards=1), ManualClock(T0 + 40 * SEC)
    replay([eth, btc], bus, kinds=["trade"])
    p = make(bus, clock)
    drain(p)
    assert p.stats.trades == len(btc.trades)
    assert p.stats.foreign_records > 0
    assert p.store.get_latest("ETHUSDT") is None


def test_undecodable_payload_is_skipped_and_counted() -> None:
    bus, clock = InProcessBus(), ManualClock(T0)
    p = make(bus, clock, settings=ProcessorSettings(close_on_clock=False))
    publish(bus, trade(1, T0))
    bus.publish(STREAM_TRADES, "BTCUSDT", [b"\xc3\x01garbage-not-avro"])
    publish(bus, trade(2, T0 + 1_300_000))
    drain(p)
    assert p.skipped_payloads() == 1
    assert row(p, T0 + SEC)["n_trades_1s"] == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        ProcessorSettings(rewind_s=30)
    with pytest.raises(ConfigError):
        ProcessorSettings(lateness_ms=-1)
    with pytest.raises(ConfigError):
        Processor(InProcessBus(), InProcessOnlineStore(ManualClock(T0)), InMemoryPositionStore(), PARAMS, symbols=[],
                  clock=ManualClock(T0))
