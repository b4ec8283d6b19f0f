"""End to end: the REAL recording replayed by the local exchange over SBE → ingestor → Redis Streams bus,
with 3 forced disconnects and 1 injected trade gap.

Checks: every trade id of the recording arrives on the bus exactly once, in id order, equal to the recorded
trade; the ingestor's order book at the end equals the book Binance's procedure builds offline from the
recording (its REST snapshot + every depth diff through ``BookSynchronizer``); the skipped trade came back
through a REST gap fill.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from btcpipe.binance.order_book import BookSynchronizer
from btcpipe.binance.recording import load_recording
from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
from btcpipe.bus.port import STREAM_DEPTH, STREAM_TRADES, Position
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.records import Trade
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.infra.clocks import ReplayClock
from btcpipe.infra.metrics import Metrics
from btcpipe.services.ingest.ingestor import Ingestor
from btcpipe.wire.codec import decode_depth_delta, decode_trades

SYMBOL = "BTCUSDT"
KEY = "e2e-ingest-key-31c8d0"
SPEED = 25.0


def _read_all(bus: RedisStreamsBus, stream: str) -> list[bytes]:
    out: list[bytes] = []
    for shard in bus.shards(stream):
        position = Position(stream, shard)
        while True:
            records, position = bus.read(position, max_count=5000)
            if not records:
                break
            out.extend(r.payload for r in records)
    return out


@pytest.mark.timeout(120)
def test_real_recording_over_sbe_to_redis_survives_disconnects_and_fills_the_gap(
    recording_paths: list[Path], redis_url: str
) -> None:
    recording = load_recording(recording_paths)
    tape = recording.to_tape()
    ids = tape.trades.id
    skipped_id = int(ids[len(ids) // 10])
    drop_at = [tape.start_us + (tape.end_us - tape.start_us) * k // 4 for k in (1, 2, 3)]  # tape times
    last_id, last_u = int(ids[-1]), int(tape.depth.last_update_id[-1])  # type: ignore[union-attr]

    clock = ReplayClock(tape.start_us - 1, speed=SPEED, held=True)
    config = StreamConfig(api_keys=frozenset({KEY}), ping_interval_s=0.5, pong_timeout_s=5.0)
    client_redis = redis.Redis.from_url(redis_url)
    bus = RedisStreamsBus(client_redis)
    metrics = Metrics()
    with LocalExchange(tape, clock=clock, streams=config) as ex, BinanceRestClient(ex.base_url) as rest:
        control = ex.streams
        settings = StreamSettings(sbe_url=ex.ws_url, json_url=ex.ws_url + "/json", api_key=KEY,
                                  backoff_base_s=0.05, backoff_cap_s=0.5, silence_timeout_s=10.0)
        client = MarketStreamClient([SYMBOL], settings, metrics=metrics)
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, metrics=metrics)
        drops: list[int] = []

        def done(ing: Ingestor) -> bool:
            book = ing.book(SYMBOL)
            return (ing.last_trade_id(SYMBOL) >= last_id and book is not None and book.last_update_id >= last_u
                    and not ing.open_gaps)

        async def disrupt() -> None:
            await asyncio.to_thread(control.wait_until, lambda s: s.connections_open == 1)
            control.skip_trade(skipped_id)
            clock.start()
            control.wake()
            for target in drop_at:
                # the replay is paced by the clock: wait for tape time `target`, then for a live connection
                await asyncio.sleep(max(target - clock.now_us(), 0) / 1e6 / SPEED)
                await asyncio.to_thread(control.wait_until, lambda s: s.connections_open == 1)
                drops.append(await asyncio.to_thread(control.drop_connections))

        async def scenario() -> None:
            chaos = asyncio.create_task(disrupt())
            await ingestor.run(until=done, duration_s=90)
            await chaos

        asyncio.run(scenario())
        server_stats = control.stats()

    # 3 forced disconnects, each of the one live connection, each followed by a reconnect
    assert drops == [1, 1, 1]
    assert client.stats.reconnects.get("closed") == 3
    assert server_stats.skipped_trade_ids == [skipped_id]

    # every trade id exactly once, in id order, equal to the recording
    published = [t for payload in _read_all(bus, STREAM_TRADES) for t in decode_trades(payload)]
    bus_ids = [t.id for t in published]
    counts = Counter(bus_ids)
    assert not [i for i, n in counts.items() if n > 1], "a trade id arrived twice"
    assert bus_ids == [int(i) for i in ids], "every recorded trade id, exactly once, in id order"
    recorded = {t.id: t for t in recording.trades}
    for trade in published:
        want: Trade = recorded[trade.id]
        assert (trade.ts_event, trade.price_mantissa, trade.qty_mantissa, trade.is_buyer_maker) == (
            want.ts_event, want.price_mantissa, want.qty_mantissa, want.is_buyer_maker)

    # the skipped trade (and whatever the disconnects cost) came back from REST
    filled = [g for g in ingestor.gaps if g.first_missing <= skipped_id <= g.last_missing]
    assert len(filled) == 1
    assert filled[0].filled
    assert ingestor.stats.gap_fills.get("filled", 0) == len(ingestor.gaps) >= 1
    assert ingestor.stats.gap_trades_filled == ingestor.stats.gap_ids
    assert set(ingestor.stats.gap_fills) == {"filled"}

    # the order book equals Binance's procedure run offline over the recording
    offline = BookSynchronizer(SYMBOL)
    for diff in recording.depth_diffs:
        offline.on_diff(diff)
    offline.on_snapshot(recording.snapshots[0])
    assert offline.book is not None
    live = ingestor.book(SYMBOL)
    assert live is not None
    assert live.last_update_id == offline.book.last_update_id == last_u
    assert live.bids == offline.book.bids
    assert live.asks == offline.book.asks
    assert ingestor.stats.resyncs >= 1, "a disconnect loses diffs: the book must have resynchronized"

    # depth diffs published as they came: U/u ascending on the bus
    diffs = [decode_depth_delta(p) for p in _read_all(bus, STREAM_DEPTH)]
    assert diffs
    assert all(b.first_update_id > a.last_update_id for a, b in itertools.pairwise(diffs))
    recorded_diffs = {d.last_update_id: d for d in recording.depth_diffs}
    assert all(replace(d, ts_recv=0) == replace(recorded_diffs[d.last_update_id], ts_recv=0) for d in diffs)
    exposition = metrics.exposition().decode()
    assert 'btcpipe_ingest_reconnects_total{reason="closed",stream="sbe"} 3.0' in exposition
    client_redis.close()
