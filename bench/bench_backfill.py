"""REST backfill from the local exchange (real HTTP on 127.0.0.1) into a local lake: trades/s and weight used.

Simulates a span, serves it with ``LocalExchange`` (Binance's 6000/min weight limit), and runs the backfill
service with the real ``BinanceRestClient`` (budget 80 % of the limit). Reports the throughput, the highest
``X-MBX-USED-WEIGHT-1M`` the server reported as a share of the limit and of the client's budget, and the
ceiling the weight limit alone puts on a REST backfill. Prints one JSON object.

    .venv/bin/python bench/bench_backfill.py [--duration-s 10800] [--kind trades|aggTrades]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import orjson

from btcpipe.binance.rest import WEIGHTS, BinanceRestClient
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.lake import Lake
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate
from btcpipe.services.backfill import backfill

START_US = 1_735_689_600_000_000  # 2025-01-01


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-s", type=int, default=10_800, help="simulated span in seconds")
    parser.add_argument("--kind", choices=["trades", "aggTrades"], default="trades")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)

    tape = simulate(SimConfig(seed=args.seed, start_us=START_US, duration_s=args.duration_s))
    with LocalExchange(tape) as ex, tempfile.TemporaryDirectory(prefix="bench-backfill-") as root:
        lake = Lake.open(root)
        with BinanceRestClient(ex.base_url) as client:
            t0 = time.perf_counter()
            result = backfill(client, lake, symbol="BTCUSDT", kind=args.kind, start_us=tape.start_us,
                              end_us=tape.end_us + 1, source="rest", compact=False)
            fetch_s = time.perf_counter() - t0
            budget = client.weight_budget
        t0 = time.perf_counter()
        days = [d for d in lake.bronze_days(args.kind, "BTCUSDT")]
        for day in days:
            lake.compact(args.kind, "BTCUSDT", day)
        compact_s = time.perf_counter() - t0
        server = ex.stats

    page_weight = WEIGHTS["/api/v3/historicalTrades" if args.kind == "trades" else "/api/v3/aggTrades"]
    rows = result.rows_added
    out = {
        "benchmark": "rest_backfill",
        "kind": args.kind,
        "rows": rows,
        "pages": result.pages,
        "requests": result.requests,
        "seconds": round(fetch_s, 3),
        "rows_per_s": round(rows / fetch_s),
        "rows_per_s_including_compact": round(rows / (fetch_s + compact_s)),
        "server_max_used_weight_1m": server.max_used_weight,
        "weight_limit_1m": client.weight_limit,
        "weight_share_of_limit": round(server.max_used_weight / client.weight_limit, 3),
        "weight_share_of_budget": round(server.max_used_weight / budget, 3),
        "server_429": server.rejected_429,
        "server_418": server.banned_418,
        "window_waits": client.stats.window_waits,
        # What the weight limit alone allows against real Binance (1000 rows a page, 80 % budget).
        "weight_bound_rows_per_s": round(budget / page_weight * 1000 / 60),
    }
    assert rows == len(tape.trades) or args.kind == "aggTrades"
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main(sys.argv[1:])
