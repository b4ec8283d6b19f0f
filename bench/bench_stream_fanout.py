"""Benchmark: the local exchange's stream fan-out over real loopback WebSockets.

A simulated tape is served on a ManualClock; N SBE clients subscribe to trade + bestBidAsk + depth, then the
clock jumps ``--tape-seconds`` ahead and we time until every client holds every frame of that span.
Prints JSON: events replayed, frames delivered per second (all clients together), µs per event for the
server's encoding (done once per event whatever N is) — the client side shares the same 2 cores, so the
delivered rate is a floor of what the server alone sustains.

    .venv/bin/python bench/bench_stream_fanout.py [--clients 1 10 25] [--tape-seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

from btcpipe.binance.sbe import encode
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.exchange.streams.timeline import KIND_BBA, KIND_DEPTH, KIND_TRADE, SymbolTimeline
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate

KEY = "bench"
STREAMS = "btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"


async def _client(url: str, expected: int, ready: asyncio.Event, counter: list[int]) -> int:
    got = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"X-MBX-APIKEY": KEY}) as ws,
    ):
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        while got < expected:
            msg = await asyncio.wait_for(ws.receive(), 60)
            if msg.type == aiohttp.WSMsgType.BINARY:
                got += 1
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return got


def run_fanout(n_clients: int, tape_seconds: int) -> dict[str, float]:
    tape = simulate(SimConfig(seed=1, duration_s=tape_seconds + 60))
    timeline = SymbolTimeline(tape)
    start = tape.start_us + 30 * US_PER_SEC
    end = start + tape_seconds * US_PER_SEC
    lo, hi = timeline.position_after(start), timeline.position_after(end)
    kinds = timeline.kind[lo:hi]
    expected = int(((kinds == KIND_TRADE) | (kinds == KIND_BBA) | (kinds == KIND_DEPTH)).sum())
    clock = ManualClock(start)
    cfg = StreamConfig(api_keys=frozenset({KEY}))
    with LocalExchange(tape, clock=clock, streams=cfg) as ex:
        ctl = ex.streams
        ctl.wake()
        ctl.wait_until(lambda s: s.replayed_up_to_us >= start)
        url = f"{ex.ws_url}/stream?streams={STREAMS}"

        async def main() -> tuple[list[int], float]:
            ready = asyncio.Event()
            counter = [0, n_clients]
            tasks = [asyncio.create_task(_client(url, expected, ready, counter)) for _ in range(n_clients)]
            await ready.wait()
            t0 = time.perf_counter()
            clock.set(end)
            await asyncio.to_thread(ctl.wake)
            counts = await asyncio.gather(*tasks)
            return list(counts), time.perf_counter() - t0

        counts, wall = asyncio.run(main())
    if any(c != expected for c in counts):
        raise SystemExit(f"a client missed frames: expected {expected}, got {counts}")
    return {
        "clients": n_clients,
        "tape_seconds": tape_seconds,
        "events": expected,
        "wall_s": round(wall, 3),
        "frames_delivered_per_s": round(expected * n_clients / wall),
        "events_per_s": round(expected / wall),
    }


def encode_cost(tape_seconds: int) -> dict[str, float]:
    """Server-side cost of materialising and encoding each event once (what fan-out shares across clients)."""
    tape = simulate(SimConfig(seed=1, duration_s=tape_seconds))
    tl = SymbolTimeline(tape)
    t0 = time.perf_counter()
    n = 0
    for kind, index in zip(tl.kind.tolist(), tl.index.tolist(), strict=True):
        if kind == KIND_TRADE:
            encode(tl.trades_event(tl.trades_of_group(index)))
        elif kind == KIND_BBA:
            encode(tl.best_bid_ask(index))
        elif kind == KIND_DEPTH:
            encode(tl.depth_diff(index))
        else:
            continue
        n += 1
    dt = time.perf_counter() - t0
    return {"events": n, "us_per_event_encode": round(dt / n * 1e6, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 25])
    parser.add_argument("--tape-seconds", type=int, default=300)
    args = parser.parse_args(argv)
    results = {
        "encode_once": encode_cost(args.tape_seconds),
        "fanout": [run_fanout(n, args.tape_seconds) for n in args.clients],
    }
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
