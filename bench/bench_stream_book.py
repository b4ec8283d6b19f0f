"""Benchmark: the local exchange's ``depth20`` stream source (``SymbolTimeline.depth20`` on its 50 ms grid).

Every grid point of a tape asks the stream book for its top 20 levels a side, forward in time: the cost the
server pays once per ``depth20`` event, whatever the number of subscribers. Measured on a simulated tape with
depth diffs, the same tape without diffs (the best bid/ask fallback), and the real recording when
``../shared/data`` is there. Prints one JSON object to stdout.

    .venv/bin/python bench/bench_stream_book.py [--seconds 1800] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.streams.timeline import KIND_DEPTH20, SymbolTimeline
from btcpipe.market.simulator import SimConfig, simulate

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BTCPIPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
RECORDINGS = [SHARED_DATA / "recordings" / f"btcusdt_2024080{d}.gz" for d in (8, 9)]


def depth20_cost(tape: MarketTape, rounds: int) -> dict[str, float | int]:
    """Best of ``rounds``: a fresh timeline each round, every depth20 grid point asked once, in order."""
    best_build = best_walk = float("inf")
    points = levels = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        timeline = SymbolTimeline(tape)
        t1 = time.perf_counter()
        grid = timeline.index[timeline.kind == KIND_DEPTH20].tolist()
        t2 = time.perf_counter()
        levels = 0
        for grid_us in grid:
            snap = timeline.depth20(grid_us)
            if snap is not None:
                levels += len(snap.bids) + len(snap.asks)
        t3 = time.perf_counter()
        best_build, best_walk = min(best_build, t1 - t0), min(best_walk, t3 - t2)
        points = len(grid)
    return {
        "depth20_events": points,
        "levels_returned": levels,  # the same before and after a change, or the change altered the answers
        "timeline_build_ms": round(best_build * 1e3, 2),
        "depth20_total_ms": round(best_walk * 1e3, 2),
        "us_per_depth20": round(best_walk / max(points, 1) * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1800, help="Simulated tape length.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sim = simulate(SimConfig(seed=1, duration_s=args.seconds))
    results: dict[str, object] = {
        "bench": "stream_book",
        "simulated_seconds": args.seconds,
        "simulated_diffs": depth20_cost(sim, args.rounds),
        "simulated_tickers_only": depth20_cost(dataclasses.replace(sim, depth=None), args.rounds),
        "recording": None,
    }
    if all(p.exists() for p in RECORDINGS):
        from btcpipe.binance.recording import load_recording

        results["recording"] = depth20_cost(load_recording(RECORDINGS).to_tape(), args.rounds)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
