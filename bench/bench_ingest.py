"""Ingest benchmark: messages/s from the local exchange's SBE streams through the ingestor onto each bus.

The exchange serves a simulated market; its clock is held until the ingestor is connected and then jumped
to the end of the tape, so the exchange sends everything as fast as it can and the ingestor (decode,
de-duplicate, gap check, order book, Avro, publish) runs flat out. Redis and Kinesis are real servers on
loopback (redis-server, moto_server). The exchange runs in this process (a thread), so the two share the
interpreter: the figures are a lower bound of what the ingestor does alone. Prints one JSON object.

``--tracing-overhead`` instead runs the in-process bus with tracing off and on (OpenTelemetry SDK, default
sampling ratio, spans handed to a discarding exporter) in alternation and prints both rates and the overhead.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
from btcpipe.bus.kinesis import KinesisBus, kinesis_client
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_TRADES, Bus
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.devservers import MotoServer, RedisServer, aws_test_environment
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.infra.tracing import DEFAULT_SAMPLE_RATIO, NO_TRACING, Tracing, TracingSettings, open_tracing
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate
from btcpipe.services.ingest.ingestor import Ingestor

SYMBOL = "BTCUSDT"
KEY = "bench-key"


def run_once(make_bus: Callable[[], Bus], duration_s: int, tracing: Tracing = NO_TRACING) -> dict[str, Any]:
    tape = simulate(SimConfig(seed=3, duration_s=duration_s))
    clock = ManualClock(tape.start_us - 1)
    last_id = int(tape.trades.id[-1])
    config = StreamConfig(api_keys=frozenset({KEY}), send_queue_limit=2_000_000)
    bus = make_bus()
    with LocalExchange(tape, clock=clock, streams=config) as ex, BinanceRestClient(ex.base_url) as rest:
        settings = StreamSettings(sbe_url=ex.ws_url, json_url=ex.ws_url + "/json", api_key=KEY,
                                  silence_timeout_s=30)
        client = MarketStreamClient([SYMBOL], settings)
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, tracing=tracing)
        started: list[float] = []
        cpu_started: list[float] = []

        async def release() -> None:
            await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
            started.append(time.perf_counter())
            cpu_started.append(time.process_time())
            clock.set(tape.end_us + 1)
            ex.streams.wake()

        async def main() -> None:
            go = asyncio.create_task(release())
            await ingestor.run(until=lambda i: i.last_trade_id(SYMBOL) >= last_id, duration_s=120)
            await go

        asyncio.run(main())  # run() returns after the publisher drained: everything is on the bus
        elapsed = time.perf_counter() - started[0]
        cpu = time.process_time() - cpu_started[0]  # exchange thread + ingestor: the same in both modes
    events = sum(ingestor.stats.events.values())
    published = ingestor.publisher.stats.published
    bus.close()
    return {
        "events": events,
        "trades": ingestor.stats.trades_published,
        "bus_messages": published,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(events / elapsed),
        "cpu_us_per_message": round(cpu * 1e6 / events, 2),
        "trades_per_s": round(ingestor.stats.trades_published / elapsed),
        "publish_batches": ingestor.publisher.stats.batches,
        "gaps": ingestor.stats.gaps,
        "book_synced": ingestor.books[SYMBOL].synced,
    }


class DiscardingExporter:
    """Counts spans and drops them: the cost measured is making spans, not shipping them (a batch processor
    ships them off the hot path in production)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def tracing_overhead(rounds: int, duration_s: int) -> dict[str, Any]:
    off: list[dict[str, Any]] = []
    on: list[dict[str, Any]] = []
    spans = 0
    for _ in range(rounds):
        off.append(run_once(InProcessBus, duration_s))
        exporter = DiscardingExporter()
        tracing = open_tracing(TracingSettings(enabled=True), "bench", exporter=exporter)  # type: ignore[arg-type]
        on.append(run_once(InProcessBus, duration_s, tracing))
        spans += exporter.spans
    cpu_off = sorted(r["cpu_us_per_message"] for r in off)[len(off) // 2]
    cpu_on = sorted(r["cpu_us_per_message"] for r in on)[len(on) // 2]
    return {"benchmark": "ingest_tracing_overhead", "bus": "memory", "sample_ratio": DEFAULT_SAMPLE_RATIO,
            "rounds": rounds, "events_per_run": off[0]["events"],
            "messages_per_s_off": [r["messages_per_s"] for r in off],
            "messages_per_s_on": [r["messages_per_s"] for r in on],
            "cpu_us_per_message_off": [r["cpu_us_per_message"] for r in off],
            "cpu_us_per_message_on": [r["cpu_us_per_message"] for r in on],
            "spans_exported": spans, "cpu_overhead_pct_median": round(100 * (cpu_on - cpu_off) / cpu_off, 1),
            "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}


def main() -> None:
    if "--tracing-overhead" in sys.argv:
        print(json.dumps(tracing_overhead(rounds=5, duration_s=600)))
        return
    results: dict[str, Any] = {"benchmark": "ingest", "exchange_in_process": True,
                               "streams": ["trade", "bestBidAsk", "depth"], "wire": "sbe"}
    results["memory"] = run_once(InProcessBus, 1800)
    with RedisServer() as redis_server:
        results["redis"] = run_once(lambda: RedisStreamsBus(RedisOptions(redis_server.url)), 1800)
    os.environ.update(aws_test_environment())
    with MotoServer() as moto:
        def kinesis() -> Bus:
            bus = KinesisBus(kinesis_client(moto.endpoint), prefix=f"bench-{uuid.uuid4().hex[:6]}-")
            bus.ensure_streams([STREAM_TRADES, STREAM_BEST_BID_ASK, STREAM_DEPTH], 1)
            return bus

        results["kinesis"] = run_once(kinesis, 600)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
