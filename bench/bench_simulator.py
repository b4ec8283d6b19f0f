"""Benchmark: simulate one day of BTCUSDT and score its oracle. Prints one JSON object to stdout.

Usage: ``python bench/bench_simulator.py [--preset realistic|classroom] [--seed N] [--seconds 86400]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import orjson

from btcpipe.market.presets import DEFAULT_PRESET, PRESETS, preset_config
from btcpipe.market.simulator import oracle_score, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=86_400)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    args = parser.parse_args(argv)
    config = preset_config(args.preset, seed=args.seed, duration_s=args.seconds)
    began = time.perf_counter()
    tape = simulate(config)
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    score = oracle_score(tape, config)
    oracle_seconds = time.perf_counter() - began
    n = len(tape.trades)
    result = {
        "bench": "simulator",
        "preset": args.preset,
        "simulated_seconds": args.seconds,
        "trades": n,
        "seconds": round(seconds, 3),
        "trades_per_sec": round(n / seconds),
        "best_bid_asks": len(tape.best_bid_asks or ()),
        "depth_diffs": len(tape.depth or ()),
        "depth_levels": int(tape.depth.level_price.shape[0]) if tape.depth is not None else 0,
        "oracle_seconds": round(oracle_seconds, 3),
        "oracle_r2": round(score.r2, 4),
        "oracle_hit_rate": round(score.hit_rate, 4),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
