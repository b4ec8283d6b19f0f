"""Local exchange benchmark: daily dump build time for a 1.5 M-trade day, and REST paging throughput.

Prints one JSON object. Run: ``.venv/bin/python bench/bench_exchange.py [--orders N] [--pages N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import httpx
import orjson

from btcpipe.domain.tape import aggregate_trades
from btcpipe.domain.time import day_start_us
from btcpipe.exchange.rest.dumps import daily_csv, daily_dump
from btcpipe.exchange.server import LocalExchange
from btcpipe.market.handmade import synthetic_tape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=600_000, help="taker orders in the day (≈2.5 trades each)")
    parser.add_argument("--pages", type=int, default=60, help="REST pages of 1000 to fetch per endpoint")
    args = parser.parse_args(argv)

    day = dt.date(2025, 1, 1)
    gap_us = 86_400_000_000 // (args.orders + 1)
    tape = synthetic_tape(start_us=day_start_us(day), n_orders=args.orders, mean_gap_us=gap_us)
    n_trades = len(tape.trades)
    aggs = aggregate_trades(tape.trades)

    t0 = time.perf_counter()
    csv, rows = daily_csv(tape, "trades", day)
    t1 = time.perf_counter()
    c1 = time.process_time()  # CPU time too: on a shared machine wall time includes waiting for a core
    zip_bytes, _ = daily_dump(tape, "trades", day)
    t2 = time.perf_counter()
    c2 = time.process_time()
    agg_zip, _ = daily_dump(tape, "aggTrades", day, aggs=aggs)
    t3 = time.perf_counter()

    rest: dict[str, float] = {}
    with LocalExchange(tape, weight_limit=10**9) as ex, httpx.Client(base_url=ex.base_url, timeout=30) as client:
        for path, id_key in (("/api/v3/aggTrades", "a"), ("/api/v3/historicalTrades", "id")):
            from_id = 0 if id_key == "a" else int(tape.trades.id[0])
            got = 0
            started = time.perf_counter()
            for _ in range(args.pages):
                page = orjson.loads(client.get(path, params={"symbol": "BTCUSDT", "fromId": from_id,
                                                             "limit": 1000}).content)
                got += len(page)
                from_id = page[-1][id_key] + 1
            elapsed = time.perf_counter() - started
            rest[path.rsplit("/", 1)[1]] = round(got / elapsed)
        started = time.perf_counter()
        book_calls = 50
        for _ in range(book_calls):
            client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 100})
        depth_per_s = book_calls / (time.perf_counter() - started)

    result = {
        "bench": "exchange",
        "day_trades": n_trades,
        "day_agg_trades": len(aggs),
        "trades_csv_s": round(t1 - t0, 3),
        "trades_csv_mb": round(len(csv) / 1e6, 1),
        "trades_csv_rows": rows,
        "trades_dump_zip_s": round(t2 - t1, 3),
        "trades_dump_zip_cpu_s": round(c2 - c1, 3),
        "trades_dump_zip_mb": round(len(zip_bytes) / 1e6, 1),
        "trades_dump_rows_per_s": round(n_trades / (t2 - t1)),
        "agg_trades_dump_zip_s": round(t3 - t2, 3),
        "agg_trades_dump_zip_mb": round(len(agg_zip) / 1e6, 1),
        "rest_rows_per_s": rest,
        "rest_depth_calls_per_s": round(depth_per_s, 1),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
