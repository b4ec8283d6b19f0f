"""Per-hop latency of the live path, embedded and on real servers, as JSON (p50/p90/p99 in ms).

The path of ``btcpipe run``'s live stage: local exchange (SBE WebSocket) → ingestor → bus → processor →
online store → inference. Hops (see ``btcpipe.run.live_stats``): ``exchange→ingest`` (receive −
exchange time of each stream trade), ``ingest→bus`` (a bus reader got it − receive time), ``second end→feature
row`` (row computed − its second: the processor closes a second once its inputs or the ingestor's heartbeat
are past it), ``feature row→prediction`` (prediction − row: inference ticks on the row's arrival on
``features-1s``), ``second end→prediction`` (prediction − its second, store or fallback row) and ``tick``
(read features + ONNX + publish). ``quiet_seconds`` splits ``second end→feature row`` by whether the second
before had a trade after its end: without one only the heartbeat (or wall time + lateness) closes it.

One market and one trained model (a few minutes of simulated history, a few epochs: not timed) serve two live
runs of ``--seconds`` each: embedded (in-process bus and store) and services (Kinesis on moto_server, Redis on
redis-server, started here). Usage: ``python bench/bench_latency.py [--seconds 10] [--no-services]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any


class _Quiet:
    """A live view that draws nothing (the benchmark prints JSON only)."""

    def live_started(self, duration_s: float) -> None: ...

    def live_update(self, snap: Any, *, force: bool = False) -> None: ...

    def live_finished(self, snap: Any) -> None: ...


def _stream_client(endpoints: Any, symbols: Any) -> Any:
    from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings

    return MarketStreamClient(list(symbols), StreamSettings(sbe_url=endpoints.sbe_url, json_url=endpoints.stream_url,
                                                            api_key=endpoints.api_key))


def _rest_client(endpoints: Any) -> Any:
    from btcpipe.binance.rest import BinanceRestClient

    return BinanceRestClient(endpoints.rest_url)


def _percentiles(values: list[float]) -> dict[str, float | int]:
    from btcpipe.run.report import percentiles

    return percentiles(values)


def _live(market: Any, endpoints: Any, lake: Any, clock: Any, seconds: int, *, services: Any | None,
          heartbeat_margin_ms: float | None) -> dict[str, Any]:
    from btcpipe.bus.memory import InProcessBus
    from btcpipe.bus.positions import InMemoryPositionStore
    from btcpipe.run.live import LivePipeline, LivePorts, LiveSettings
    from btcpipe.services.infer.inference import InferenceSettings
    from btcpipe.services.ingest.ingestor import IngestSettings
    from btcpipe.services.process.processor import ProcessorSettings
    from btcpipe.store.memory import InProcessOnlineStore

    # On arrival: wait up to 80 ms for the row, deadline 100 ms from the second's end.
    inference = InferenceSettings(on_arrival=True)
    if services is None:
        bus: Any = InProcessBus()
        store: Any = InProcessOnlineStore(clock)
        positions: Any = InMemoryPositionStore()
    else:
        from btcpipe.bus.kinesis import KinesisBus, kinesis_client
        from btcpipe.bus.port import ALL_STREAMS
        from btcpipe.bus.positions import RedisPositionStore
        from btcpipe.infra.redis_connection import RedisOptions
        from btcpipe.store.redis_store import RedisOnlineStore

        redis_url, moto_endpoint = services
        bus = KinesisBus(kinesis_client(moto_endpoint), prefix=f"bench-{secrets.token_hex(3)}-")
        bus.ensure_streams(ALL_STREAMS, 1)
        store = RedisOnlineStore(RedisOptions(redis_url))
        positions = RedisPositionStore(RedisOptions(redis_url))
        # moto_server's Kinesis takes 100-500 ms from put to get: give the row and the deadline room for that hop
        # (as the fixed offset of 500 ms did before).
        inference = InferenceSettings(on_arrival=True, row_wait_ms=450.0, deadline_ms=550.0)
    settings = LiveSettings(
        ingest=IngestSettings(heartbeat_margin_ms=heartbeat_margin_ms),
        processor=ProcessorSettings(block_ms=20),
        inference=inference,
        realize_wait_s=0.0,
    )
    ports = LivePorts(bus=bus, store=store, lake=lake, positions=positions, open_source=_stream_client,
                      open_rest=_rest_client, clock=clock)
    # The live part begins now: warm up from what bronze holds up to now (the backfill or the previous run).
    now = clock.now_us()
    result = LivePipeline(ports, _Quiet(), settings)(replace(market, live_start_us=now - now % 1_000_000), endpoints,
                                                     seconds)
    hops = {name: _percentiles(values) for name, values in result.hops_ms.items()}
    counters = result.summary["counters"]
    quiet = _quiet_seconds(bus, market.tape, now)
    store.close()
    bus.close()
    return {"predictions": result.summary["predictions"], "skipped_ticks": counters.get("skipped_ticks"),
            "fallback": counters.get("fallback"), "late_events": counters.get("late"), "hops_ms": hops,
            "quiet_seconds": quiet}


def _quiet_seconds(bus: Any, tape: Any, live_from_us: int, quiet_ms: float = 20.0) -> dict[str, Any]:
    """``second end→feature row`` split by whether a trade came within ``quiet_ms`` after the second's end.

    A second closes on event time once a trade (and a best bid/ask update, with ``spread``) at or past its end
    is read; after a quiet start only the ingestor's heartbeat (``heartbeat_margin_ms`` after the second) or
    wall time + lateness closes it, which bounds the hop for quiet seconds.
    """
    import numpy as np

    from btcpipe.bus.consumer import BusConsumer
    from btcpipe.bus.port import STREAM_FEATURES
    from btcpipe.bus.positions import InMemoryPositionStore
    from btcpipe.wire.codec import decode_feature_vector

    consumer = BusConsumer(bus, STREAM_FEATURES, decode_feature_vector, name="bench-quiet",
                           positions=InMemoryPositionStore(), start="earliest")
    rows = []
    while got := consumer.poll(1000):
        rows.extend(d.value for d in got if d.value.ts_sec >= live_from_us)
    trade_ts = np.asarray(tape.trades.ts_event, dtype=np.int64)
    out: dict[str, Any] = {"quiet_ms": quiet_ms}
    split: dict[str, list[float]] = {"busy": [], "quiet": []}
    for row in rows:
        k = int(np.searchsorted(trade_ts, row.ts_sec, side="left"))
        gap_ms = (int(trade_ts[k]) - row.ts_sec) / 1000 if k < trade_ts.shape[0] else float("inf")
        split["quiet" if gap_ms >= quiet_ms else "busy"].append((row.ts_computed - row.ts_sec) / 1000)
    for name, values in split.items():
        out[name] = _percentiles(values)
    return out


@contextlib.contextmanager
def _servers(enabled: bool) -> Iterator[tuple[str, str] | None]:
    if not enabled:
        yield None
        return
    from btcpipe.infra.devservers import MotoServer, RedisServer, aws_test_environment

    os.environ.update({k: os.environ.get(k, v) for k, v in aws_test_environment().items()})
    with RedisServer() as redis_server, MotoServer() as moto:
        yield redis_server.url, moto.endpoint  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="live seconds per variant")
    parser.add_argument("--history-minutes", type=int, default=8)
    parser.add_argument("--no-services", action="store_true", help="only the embedded variant")
    parser.add_argument("--heartbeat-margin-ms", type=float, default=5.0,
                        help="the ingestor's heartbeat margin after each second (negative: no heartbeat)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    from btcpipe.exchange.server import LocalExchange
    from btcpipe.exchange.streams.routes import StreamConfig
    from btcpipe.infra.clocks import ReplayClock, SystemClock
    from btcpipe.lake.lake import Lake
    from btcpipe.model.train import TrainConfig
    from btcpipe.run.market import simulated_market
    from btcpipe.run.offline import run_backfill, run_features, run_promote, run_train
    from btcpipe.run.orchestrator import ExchangeEndpoints

    started = time.monotonic()
    wall = SystemClock()
    live_total = 2 * (args.seconds + 30)
    market = simulated_market(now_us=wall.now_us(), history_s=args.history_minutes * 60, live_s=live_total, seed=7)
    assert market.tape is not None
    key = secrets.token_hex(8)
    now = wall.now_us()
    margin = args.heartbeat_margin_ms if args.heartbeat_margin_ms >= 0 else None
    out: dict[str, Any] = {"benchmark": "latency", "live_seconds": args.seconds, "heartbeat_margin_ms": margin}
    with tempfile.TemporaryDirectory() as tmp, LocalExchange(
        market.tape, clock=ReplayClock(now, wall_start_us=now), streams=StreamConfig(api_keys=frozenset({key}))
    ) as exchange:
        endpoints = ExchangeEndpoints(exchange.base_url, f"{exchange.ws_url}/json", exchange.ws_url, key)
        lake = Lake.open(str(Path(tmp) / "lake"))
        with _rest_client(endpoints) as rest:
            run_backfill(rest, lake, market)
        run_features(lake, market)
        run_promote(lake, run_train(lake, market, name="btcusdt-10s", config=TrainConfig(seed=7, max_epochs=3)))
        out["setup_s"] = round(time.monotonic() - started, 1)
        out["embedded"] = _live(market, endpoints, lake, wall, args.seconds, services=None,
                                heartbeat_margin_ms=margin)
        with _servers(not args.no_services) as services:
            if services is not None:
                out["services"] = _live(market, endpoints, lake, wall, args.seconds, services=services,
                                        heartbeat_margin_ms=margin)
    out["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
