"""One contract, three buses: in-process, Redis Streams on a real redis-server, Kinesis on moto_server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.kinesis import KinesisBus, kinesis_client
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_TRADES, Bus, BusRecord, Position
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.wire.codec import decode_trades, encode_best_bid_ask, encode_trade, encode_trades

pytestmark = pytest.mark.services

STREAM = STREAM_TRADES
KEYS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


@pytest.fixture(params=["in-process", "redis", "kinesis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "in-process":
        b: Bus = InProcessBus(n_shards=2)
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        b = RedisStreamsBus(RedisOptions(url), n_shards=2)
    else:
        moto = request.getfixturevalue("moto_server")
        kb = KinesisBus(kinesis_client(moto.endpoint), prefix=f"t{uuid.uuid4().hex[:8]}-", poll_interval_s=0.01)
        kb.ensure_streams([STREAM], shard_count=2)
        b = kb
    yield b
    b.close()


def payload(key: str, i: int) -> bytes:
    return f"{key}:{i}".encode()


def read_all(bus: Bus, stream: str = STREAM, max_count: int = 1000) -> dict[str, list[BusRecord]]:
    """Every record in every shard, read in pages of ``max_count``."""
    out: dict[str, list[BusRecord]] = {}
    for shard in bus.shards(stream):
        position = Position(stream, shard)
        got: list[BusRecord] = []
        while True:
            records, position = bus.read(position, max_count)
            if not records:
                break
            got.extend(records)
        out[shard] = got
    return out


def test_records_of_one_key_stay_in_its_shard_in_publish_order(bus: Bus) -> None:
    for i in range(0, 60, 3):
        for key in KEYS:
            bus.publish(STREAM, key, [payload(key, j) for j in range(i, i + 3)])
    by_shard = read_all(bus)
    assert len(bus.shards(STREAM)) == 2
    for key in KEYS:
        shard = bus.shard_for(STREAM, key)
        in_shard = [r.payload for r in by_shard[shard] if r.key == key]
        assert in_shard == [payload(key, j) for j in range(60)]
        assert all(r.key != key for s, rs in by_shard.items() if s != shard for r in rs)


def test_no_record_lost_or_duplicated_across_many_publish_batches_and_small_reads(bus: Bus) -> None:
    sizes = [1, 7, 0, 31, 2, 64, 5, 13]
    sent = []
    n = 0
    for size in sizes:
        batch = [payload("BTCUSDT", n + j) for j in range(size)]
        n += size
        assert bus.publish(STREAM, "BTCUSDT", batch) == size
        sent.extend(batch)
    got = [r.payload for r in read_all(bus, max_count=6)[bus.shard_for(STREAM, "BTCUSDT")]]
    assert got == sent


def test_a_large_batch_is_published_and_read_back_whole(bus: Bus) -> None:
    big = [bytes([i % 251]) * 200 + i.to_bytes(4, "big") for i in range(2_100)]
    assert bus.publish(STREAM, "BTCUSDT", big) == len(big)
    got = [r.payload for r in read_all(bus, max_count=1000)[bus.shard_for(STREAM, "BTCUSDT")]]
    assert got == big


def test_reading_an_empty_shard_returns_nothing_and_keeps_the_position(bus: Bus) -> None:
    for shard in bus.shards(STREAM):
        start = Position(STREAM, shard)
        assert bus.read(start, 10) == ([], start)
    bus.publish(STREAM, "BTCUSDT", [b"one"])
    shard = bus.shard_for(STREAM, "BTCUSDT")
    records, after = bus.read(Position(STREAM, shard), 10)
    assert [r.payload for r in records] == [b"one"]
    assert bus.read(after, 10) == ([], after)


def test_end_position_reads_only_what_is_published_after_it(bus: Bus) -> None:
    shard = bus.shard_for(STREAM, "BTCUSDT")
    bus.publish(STREAM, "BTCUSDT", [b"old-1", b"old-2"])
    end = bus.end_position(STREAM, shard)
    assert bus.read(end, 10) == ([], end)
    bus.publish(STREAM, "BTCUSDT", [b"new-1"])
    records, _ = bus.read(end, 10, block_ms=2_000)
    assert [r.payload for r in records] == [b"new-1"]


def test_a_blocking_read_returns_the_record_published_while_it_waits(bus: Bus) -> None:
    shard = bus.shard_for(STREAM, "BTCUSDT")
    start = bus.end_position(STREAM, shard)
    reading = threading.Event()
    result: list[list[BusRecord]] = []

    def reader() -> None:
        reading.set()
        records, _ = bus.read(start, 10, block_ms=10_000)
        result.append(records)

    t = threading.Thread(target=reader)
    t.start()
    reading.wait()
    bus.publish(STREAM, "BTCUSDT", [b"wake"])
    t.join(timeout=15)
    assert not t.is_alive()
    assert [r.payload for r in result[0]] == [b"wake"]


def trade(i: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(symbol, i, 1_723_100_000_000_000 + i, 6_183_763_000_000 + i, 1_000 + i, i % 2 == 0, ts_recv=i)


def test_consumer_resumes_from_its_committed_position_without_loss_or_duplication(bus: Bus) -> None:
    for key in ("BTCUSDT", "ETHUSDT"):
        bus.publish(STREAM, key, [encode_trades([trade(i, key), trade(i + 1, key)]) for i in range(0, 40, 2)])
    positions = InMemoryPositionStore()
    seen: list[Trade] = []

    first = BusConsumer(bus, STREAM, decode_trades, name="proc", positions=positions)
    for _ in range(3):
        seen.extend(t for d in first.poll(max_count=4) for t in d.value)
    first.commit()
    # Polled but never committed: a crash here means these are delivered again (at-least-once).
    uncommitted = [t for d in first.poll(max_count=4) for t in d.value]
    assert uncommitted

    second = BusConsumer(bus, STREAM, decode_trades, name="proc", positions=positions)
    while batch := second.poll(max_count=5):
        seen.extend(t for d in batch for t in d.value)
    second.commit()
    for key in ("BTCUSDT", "ETHUSDT"):
        ids = [t.id for t in seen if t.symbol == key]
        assert ids == list(range(40))
    assert [t for t in seen if t in uncommitted] == uncommitted  # replayed once, not lost

    third = BusConsumer(bus, STREAM, decode_trades, name="proc", positions=positions)
    assert third.poll(block_ms=0) == []


def test_undecodable_payloads_are_counted_and_skipped_not_fatal(bus: Bus) -> None:
    bba = BestBidAsk("BTCUSDT", 1_723_100_000_000_000, 7, 1, 2, 3, 4)
    bus.publish(
        STREAM,
        "BTCUSDT",
        [encode_trade(trade(1)), b"not avro at all", encode_best_bid_ask(bba), encode_trade(trade(2))[:-3],
         encode_trade(trade(3))],
    )
    consumer = BusConsumer(bus, STREAM, decode_trades, name="c", positions=InMemoryPositionStore())
    values = [t for d in consumer.poll() for t in d.value]
    assert [t.id for t in values] == [1, 3]
    assert values[0] == trade(1)
    assert consumer.skipped == 3


def test_a_consumer_owning_one_symbol_reads_only_its_shard(bus: Bus) -> None:
    for key in KEYS:
        bus.publish(STREAM, key, [encode_trade(trade(i, key)) for i in range(5)])
    shards = shards_for_keys(bus, STREAM, ["BTCUSDT"])
    consumer = BusConsumer(bus, STREAM, decode_trades, name="p1", positions=InMemoryPositionStore(), shards=shards)
    symbols = {t.symbol for d in consumer.poll() for t in d.value}
    assert "BTCUSDT" in symbols
    assert symbols == {k for k in KEYS if bus.shard_for(STREAM, k) in shards}


def test_trace_metadata_travels_with_each_record_and_untraced_records_have_none(bus: Bus) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    avro = encode_trades([Trade("BTCUSDT", 1, 1_700_000_000_000_000, 6_000_000_000_000, 1_000_000, False)])
    bus.publish(STREAM, "BTCUSDT", [avro, payload("BTCUSDT", 1)], [tp, None])
    bus.publish(STREAM, "BTCUSDT", [payload("BTCUSDT", 2)])
    records = read_all(bus)[bus.shard_for(STREAM, "BTCUSDT")]
    assert [(r.payload, r.trace) for r in records] == [
        (avro, tp), (payload("BTCUSDT", 1), None), (payload("BTCUSDT", 2), None)]
    assert decode_trades(records[0].payload)[0].id == 1  # the payload comes back exactly as published
