"""Bus benchmark: Avro encode/decode cost per trade, and publish+consume throughput per adapter.

Prints one JSON object. Redis and Kinesis run on real servers (redis-server, moto_server) started on
loopback for the run. Payloads are real-sized: single-trade messages and 100-trade batch messages.

The codec figures compare, per trade: the old ``MarketTradeBatch`` (array of records), and the
``MarketTradeColumns`` batch read by fastavro versus btcpipe's hand-written numpy reader
(``decode_trade_batches``, a poll of payloads at once), for per-frame (2-trade) and 100-trade payloads.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable

from fastavro import schemaless_reader

from btcpipe.bus.kinesis import KinesisBus, kinesis_client
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_TRADES, Bus
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.records import Trade
from btcpipe.infra.devservers import MotoServer, RedisServer, aws_test_environment
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.wire import avro_wire
from btcpipe.wire.codec import (
    TradeColumns,
    decode_trade_batches,
    decode_trades,
    encode_trade,
    encode_trade_columns,
    encode_trades,
)

BATCH = 100


def trades(n: int) -> list[Trade]:
    return [Trade("BTCUSDT", i, 1_723_100_000_000_000 + i * 300, 6_183_763_000_000 + (i % 50) * 1_000_000,
                  1_000 + i % 997, i % 3 == 0, ts_recv=1_723_100_000_000_000 + i * 300 + 900) for i in range(n)]


def per_item_us(fn: Callable[[], object], repeat: int, items_per_call: int) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / (repeat * items_per_call) * 1e6


def _old_batch(ts: list[Trade]) -> bytes:
    items = [{"id": t.id, "ts_event": t.ts_event, "ts_recv": t.ts_recv, "price_mantissa": t.price_mantissa,
              "price_exponent": t.price_exponent, "qty_mantissa": t.qty_mantissa, "qty_exponent": t.qty_exponent,
              "is_buyer_maker": t.is_buyer_maker} for t in ts]
    return avro_wire.write(avro_wire.MARKET_TRADE_BATCH, {"symbol": ts[0].symbol, "trades": items})


def _fastavro_read(payloads: list[bytes]) -> None:
    for p in payloads:
        schemaless_reader(io.BytesIO(p[avro_wire.HEADER_LEN :]), avro_wire.MARKET_TRADE_COLUMNS.parsed, None)


def codec_figures() -> dict[str, float]:
    ts = trades(BATCH)
    one, old = encode_trade(ts[0]), _old_batch(ts)
    columns = encode_trades(ts)
    big = trades(5_000)
    big_columns = TradeColumns.from_trades(big)
    polls = {
        "frame2": [encode_trades(big[i : i + 2]) for i in range(0, 4_000, 2)],  # 2 000 per-frame messages
        "batch100": [encode_trades(big[i : i + BATCH]) for i in range(0, 4_000, BATCH)],  # 40 batch messages
    }
    out = {
        "encode_single_us_per_trade": round(per_item_us(lambda: encode_trade(ts[0]), 20_000, 1), 3),
        "decode_single_us_per_trade": round(per_item_us(lambda: decode_trades(one), 20_000, 1), 3),
        "old_batch100_encode_us_per_trade": round(per_item_us(lambda: _old_batch(ts), 400, BATCH), 3),
        "old_batch100_decode_us_per_trade": round(per_item_us(lambda: decode_trades(old), 400, BATCH), 3),
        "columns_batch100_encode_us_per_trade": round(per_item_us(lambda: encode_trades(ts), 400, BATCH), 3),
        "columns_batch5000_numpy_encode_us_per_trade": round(
            per_item_us(lambda: encode_trade_columns(big_columns), 40, len(big)), 3),
        "columns_batch100_decode_to_trades_us_per_trade": round(
            per_item_us(lambda: decode_trades(columns), 400, BATCH), 3),
        "single_payload_bytes": len(one),
        "old_batch100_payload_bytes": len(old),
        "columns_batch100_payload_bytes": len(columns),
    }
    for name, payloads in polls.items():
        n = 4_000
        out[f"columns_{name}_fastavro_decode_us_per_trade"] = round(
            per_item_us(lambda p=payloads: _fastavro_read(p), 5, n), 3)  # type: ignore[misc]
        out[f"columns_{name}_numpy_poll_decode_us_per_trade"] = round(
            per_item_us(lambda p=payloads: decode_trade_batches(p), 20, n), 3)  # type: ignore[misc]
    return out


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
    single, batch = encode_trade(trades(1)[0]), encode_trades(trades(BATCH))  # batch: MarketTradeColumns
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
