"""Dump ingest: a simulated day (≥ 1.5 M trades) as a data.binance.vision zip → bronze Parquet on a local lake.

Times what a dump backfill does after the download: sha256 of the zip, unzip + CSV parse into exact Arrow
chunks (``read_archive``), the bronze appends, and the compaction. Prints one JSON object.

    .venv/bin/python bench/bench_dump_ingest.py [--order-rate 3.6] [--chunk-mb 16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
import tempfile
import time

import orjson

from btcpipe.binance.dumps import read_archive
from btcpipe.domain.time import day_start_us
from btcpipe.exchange.rest.dumps import daily_dump
from btcpipe.lake.lake import Lake
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate

DAY = dt.date(2025, 1, 1)
MIN_ROWS = 1_500_000


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order-rate", type=float, default=3.6, help="simulator base taker orders per second")
    parser.add_argument("--chunk-mb", type=int, default=16, help="CSV chunk size (each chunk = one bronze append)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    tape = simulate(SimConfig(seed=args.seed, start_us=day_start_us(DAY), duration_s=86_400,
                              base_order_rate=args.order_rate))
    simulate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    zip_bytes, checksum = daily_dump(tape, "trades", DAY)
    build_s = time.perf_counter() - t0
    rows = len(tape.trades)
    if rows < MIN_ROWS:
        raise SystemExit(f"the simulated day has {rows} trades, fewer than {MIN_ROWS}: raise --order-rate")

    with tempfile.TemporaryDirectory(prefix="bench-dump-") as root:
        lake = Lake.open(root)
        t0 = time.perf_counter()
        sha_ok = hashlib.sha256(zip_bytes).hexdigest() == checksum.split()[0]
        sha_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        unit, chunks = read_archive("trades", zip_bytes, f"BTCUSDT-trades-{DAY}.zip",
                                    chunk_bytes=args.chunk_mb << 20)
        parse_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        added = 0
        for chunk in chunks:
            added += lake.append_bronze("trades", "BTCUSDT", chunk.table, raw=chunk.raw, raw_format="csv",
                                        source="dumps").rows_added
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        lake.compact("trades", "BTCUSDT", DAY)
        compact_s = time.perf_counter() - t0
        assert added == rows, (added, rows)

    ingest_s = sha_s + parse_s + append_s
    out = {
        "benchmark": "dump_ingest",
        "rows": rows,
        "zip_mb": round(len(zip_bytes) / 1e6, 1),
        "csv_mb": round(sum(len(c.raw) for c in chunks) / 1e6, 1),
        "chunks": len(chunks),
        "time_unit": unit,
        "checksum_ok": sha_ok,
        "sha256_s": round(sha_s, 3),
        "unzip_parse_s": round(parse_s, 3),
        "bronze_append_s": round(append_s, 3),
        "compact_s": round(compact_s, 3),
        "rows_per_s_zip_to_bronze": round(rows / ingest_s),
        "rows_per_s_parse_only": round(rows / parse_s),
        "rows_per_s_including_compact": round(rows / (ingest_s + compact_s)),
        "setup_simulate_s": round(simulate_s, 2),
        "setup_build_zip_s": round(build_s, 2),
    }
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main(sys.argv[1:])
