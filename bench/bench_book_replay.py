"""Benchmark: the local exchange's order-book replay over a simulated tape. Prints one JSON object to stdout.

What ``/api/v3/depth`` costs: a forward replay asked once per second of exchange time (the way a live
replay is queried), one cold call at the tape's end (everything replayed from the initial book), and
``book_at`` (the simulator's book at an update id) at the end.

Usage: ``python bench/bench_book_replay.py [--seed N] [--seconds 3600] [--limit 100]``
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from btcpipe.exchange.book import BookReplayer
from btcpipe.market.book import book_at
from btcpipe.market.simulator import SimConfig, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args(argv)
    config = SimConfig(seed=args.seed, duration_s=args.seconds)
    tape = simulate(config)
    depth = tape.depth
    assert depth is not None
    levels = int(depth.level_price.shape[0])
    end_us = int(depth.ts_event[-1])

    replayer = BookReplayer(tape)
    began = time.perf_counter()
    calls = 0
    for now in range(config.start_us, end_us + 1, 1_000_000):
        replayer.snapshot(now, args.limit)
        calls += 1
    stepped_s = time.perf_counter() - began

    began = time.perf_counter()
    cold = BookReplayer(tape).snapshot(end_us, args.limit)
    cold_s = time.perf_counter() - began

    began = time.perf_counter()
    at_end = book_at(tape, cold.last_update_id, args.limit)
    book_at_s = time.perf_counter() - began
    if (at_end.bids, at_end.asks) != (cold.bids, cold.asks):
        raise SystemExit("book_at and the replayer disagree at the end of the tape")

    result = {
        "bench": "book_replay",
        "simulated_seconds": args.seconds,
        "depth_diffs": len(depth),
        "depth_levels": levels,
        "stepped_calls": calls,
        "stepped_seconds": round(stepped_s, 3),
        "stepped_us_per_call": round(stepped_s / calls * 1e6, 1),
        "cold_end_seconds": round(cold_s, 3),
        "cold_levels_per_sec": round(levels / cold_s),
        "book_at_end_seconds": round(book_at_s, 3),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
