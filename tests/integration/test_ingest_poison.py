"""Poison end to end: the local exchange mixes well-framed but impossible messages (out-of-range exponents,
oversized integers, wrong types) into its streams at 2 % of events; the ingestor counts and skips each one on
the same connection, publishes every good trade, and the processor computes from all of them — 0 good trades
lost. A bad payload that reaches the bus anyway costs only itself (dead letters)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.ingest import SYMBOL, exchange, settings, sim_tape

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.sbe import encode_trades
from btcpipe.binance.ws_client import MarketStreamClient
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_DEAD_LETTERS, STREAM_TRADES, Position
from btcpipe.bus.positions import FilePositionStore
from btcpipe.domain.records import Trade
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock, ReplayClock
from btcpipe.infra.metrics import Metrics
from btcpipe.services.ingest.ingestor import Ingestor
from btcpipe.services.process.processor import Processor
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire import avro_wire
from btcpipe.wire.codec import decode_trades

pytestmark = pytest.mark.timeout(90)

POISON_RATE = 0.02


async def _run(ingestor: Ingestor, clock: ReplayClock, ex: object, stop_at: int) -> None:
    control = ex.streams  # type: ignore[attr-defined]

    async def start_replay_once_connected() -> None:
        await asyncio.to_thread(control.wait_until, lambda s: s.connections_open == 1)
        clock.start()
        control.wake()

    driver = asyncio.create_task(start_replay_once_connected())
    await ingestor.run(until=lambda i: i.last_trade_id(SYMBOL) >= stop_at, duration_s=60)
    await driver


@pytest.mark.parametrize("wire", ["sbe", "json"])
def test_two_percent_poison_costs_no_good_trade_from_exchange_to_features(wire: str, tmp_path: Path) -> None:
    tape = sim_tape(duration_s=300, seed=17)
    clock = ReplayClock(tape.start_us - 1, speed=20, held=True)
    stop_at = int(tape.trades.id[1500])
    metrics = Metrics()
    bus = InProcessBus()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        ex.streams.set_fault_rates({"poison": POISON_RATE}, seed=4)
        client = MarketStreamClient([SYMBOL], settings(ex, **({} if wire == "sbe" else {"api_key": None})),
                                    metrics=metrics)
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, metrics=metrics)
        asyncio.run(_run(ingestor, clock, ex, stop_at))
        sent = ex.streams.stats()
    stats = client.stats

    # The poison went out and was refused frame by frame on one connection, counted by reason.
    assert sent.poison_sent >= 20
    assert 0 < stats.decode_errors <= sent.poison_sent
    assert stats.decode_errors >= sent.poison_sent * 0.8  # all but what was queued after the stop
    assert "unexpected" not in " ".join(stats.decode_errors_by_type)  # every refusal is a typed error
    assert stats.connections_opened == 1
    assert stats.reconnects == {}
    assert client.mode == wire
    exposition = metrics.exposition().decode()
    assert "btcpipe_ingest_decode_errors_total{" in exposition

    # Every good trade reached the bus from the stream itself: in id order, no hole, no REST gap fill.
    shard = bus.shard_for(STREAM_TRADES, SYMBOL)
    records, _ = bus.read(Position(STREAM_TRADES, shard), max_count=1_000_000)
    ids = [t.id for r in records for t in decode_trades(r.payload)]
    first = int(tape.trades.id[0])
    assert ids == [int(i) for i in tape.trades.id if first <= i <= ids[-1]]
    assert ids[-1] >= stop_at
    assert ingestor.gaps == []

    # A bad payload on the bus (not from this ingestor) costs only itself in the processor.
    bus.publish(STREAM_TRADES, SYMBOL, [avro_wire.MARKET_TRADE_COLUMNS.header + b"\x0eBTCUSDT\xff"])
    processor = Processor(bus, InProcessOnlineStore(ManualClock(0)), FilePositionStore(tmp_path),
                          FeatureParams(0.05), symbols=[SYMBOL], clock=ManualClock(int(tape.trades.ts_event[1500])))
    while processor.step(block_ms=0):
        pass
    assert processor.stats.trades == len(ids)
    assert processor.stats.undecodable_records == 1
    assert processor.stats.rows > 0
    letters, _ = bus.read(Position(STREAM_DEAD_LETTERS, bus.shard_for(STREAM_DEAD_LETTERS, STREAM_TRADES)))
    assert len(letters) == 1


@pytest.mark.parametrize("wire", ["sbe", "json"])
def test_one_bad_frame_after_another_costs_neither_the_connection_nor_a_good_trade(wire: str) -> None:
    """Issue 11 items 1, 2, 4: an SBE frame with price exponent +11 and a JSON trade with a thirty-digit price,
    sent between good frames again and again, used to kill the reader (42 reconnects, no decode error counted,
    good trades lost) or stop the ingestor; now each is counted and skipped on the same connection."""
    tape = sim_tape(duration_s=300, seed=17)
    clock = ReplayClock(tape.start_us - 1, speed=20, held=True)
    stop_at = int(tape.trades.id[600])
    bad_sbe = encode_trades([Trade(SYMBOL, 1, tape.start_us, 1, 1, False, 11, -8)])
    bad_json = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"' + "1" * 30
                + '","q":"1.0","T":1,"m":true,"M":true}}')
    bus = InProcessBus()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex, **({} if wire == "sbe" else {"api_key": None})))
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest)

        async def run() -> int:
            sent = 0
            task = asyncio.create_task(_run(ingestor, clock, ex, stop_at))
            while not task.done():
                sent += await asyncio.to_thread(ex.streams.send_garbage, bad_sbe, bad_json)
                await asyncio.sleep(0.02)
            await task
            return sent

        sent = asyncio.run(run())
    assert sent >= 10
    assert client.stats.decode_errors >= sent - 1
    assert client.stats.connections_opened == 1
    records, _ = bus.read(Position(STREAM_TRADES, bus.shard_for(STREAM_TRADES, SYMBOL)), max_count=1_000_000)
    ids = [t.id for r in records for t in decode_trades(r.payload)]
    assert ids == [int(i) for i in tape.trades.id if ids[0] <= i <= ids[-1]]
    assert ids[-1] >= stop_at
