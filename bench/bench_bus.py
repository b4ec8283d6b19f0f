"""Bus benchmark: Avro encode/decode cost per trade, and publish+consume throughput per adapter.

Prints one JSON object. Redis and Kinesis run on real servers (redis-server, moto_server) started on
loopback for the run. Payloads are real-sized: single-trade messages and 100-trade batch messages.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable

from btcpipe.bus.codec import decode_trades, encode_trade, encode_trades
from btcpipe.bus.kinesis import KinesisBus, kinesis_client
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_TRADES, Bus
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.devservers import MotoServer, RedisServer, aws_test_environment
from btcpipe.domain.records import Trade
from btcpipe.store.redis_connection import RedisOptions

BATCH = 100


def trades(n: int) -> list[Trade]:
    return [Trade("BTCUSDT", i, 1_723_100_000_000_000 + i * 300, 6_183_763_000_000 + (i % 50) * 1_000_000,
                  1_000 + i % 997, i % 3 == 0, ts_recv=1_723_100_000_000_000 + i * 300 + 900) for i in range(n)]


def per_item_us(fn: Callable[[], object], repeat: int, items_per_call: int) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / (repeat * items_per_call) * 1e6


def codec_figures() -> dict[str, float]:
    ts = trades(BATCH)
    one, batch = encode_trade(ts[0]), encode_trades(ts)
    return {
        "encode_single_us_per_trade": round(per_item_us(lambda: encode_trade(ts[0]), 20_000, 1), 3),
        "decode_single_us_per_trade": round(per_item_us(lambda: decode_trades(one), 20_000, 1), 3),
        "encode_batch100_us_per_trade": round(per_item_us(lambda: encode_trades(ts), 400, BATCH), 3),
        "decode_batch100_us_per_trade": round(per_item_us(lambda: decode_trades(batch), 400, BATCH), 3),
        "single_payload_bytes": len(one),
        "batch100_payload_bytes": len(batch),
    }


def throughput(bus: Bus, n_messages: int, payload: bytes, publish_chunk: int) -> dict[str, float]:
    """Publish ``n_messages`` in chunks, then consume and decode them all; rates per side and end to end."""
    shard = bus.shard_for(STREAM_TRADES, "BTCUSDT")
    start = bus.end_position(STREAM_TRADES, shard)
    t0 = time.perf_counter()
    for _ in range(0, n_messages, publish_chunk):
        bus.publish(STREAM_TRADES, "BTCUSDT", [payload] * publish_chunk)
    t1 = time.perf_counter()
    position, got, n_trades = start, 0, 0
    while got < n_messages:
        records, position = bus.read(position, 10_000, block_ms=1_000)
        if not records:
            raise RuntimeError(f"only {got} of {n_messages} messages came back")
        got += len(records)
        for r in records:
            n_trades += len(decode_trades(r.payload))
    t2 = time.perf_counter()
    return {
        "messages": n_messages,
        "publish_msgs_per_s": round(n_messages / (t1 - t0)),
        "consume_and_decode_msgs_per_s": round(n_messages / (t2 - t1)),
        "consume_and_decode_trades_per_s": round(n_trades / (t2 - t1)),
        "end_to_end_msgs_per_s": round(n_messages / (t2 - t0)),
        "end_to_end_trades_per_s": round(n_trades / (t2 - t0)),
    }


def main() -> None:
    result: dict[str, object] = {"codec": codec_figures()}
    single, batch = encode_trade(trades(1)[0]), encode_trades(trades(BATCH))
    adapters: dict[str, object] = {}
    mem = InProcessBus()
    adapters["in_process"] = {"single_trade_msgs": throughput(mem, 50_000, single, 1_000),
                              "batch100_msgs": throughput(mem, 3_000, batch, 100)}
    with RedisServer() as redis_server:
        rb = RedisStreamsBus(RedisOptions(redis_server.url))
        adapters["redis_streams"] = {"single_trade_msgs": throughput(rb, 20_000, single, 1_000),
                                     "batch100_msgs": throughput(rb, 2_000, batch, 100)}
        rb.close()
    os.environ.update(aws_test_environment())
    with MotoServer() as moto:
        kb = KinesisBus(kinesis_client(moto.endpoint), prefix=f"bench{uuid.uuid4().hex[:6]}-", poll_interval_s=0.01)
        kb.ensure_streams([STREAM_TRADES])
        adapters["kinesis_moto"] = {"single_trade_msgs": throughput(kb, 2_000, single, 500),
                                    "batch100_msgs": throughput(kb, 500, batch, 500)}
    result["adapters"] = adapters
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
