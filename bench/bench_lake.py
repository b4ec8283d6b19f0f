"""Lake throughput on a local directory: a day of trades appended in one dump-sized write and as REST pages,
read back, converted to silver, compacted and checked. Prints one JSON object.

    .venv/bin/python bench/bench_lake.py [--rows 1500000] [--pages 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv

from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE, mantissas_to_decimal
from btcpipe.domain.time import US_PER_DAY, day_start_us
from btcpipe.lake.check import check_lake
from btcpipe.lake.lake import Lake
from btcpipe.lake.schemas import BRONZE_TRADES

DAY = dt.date(2025, 3, 1)


def simulated_trades(first_id: int, n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(day_start_us(DAY), day_start_us(DAY) + US_PER_DAY, n, dtype=np.int64))
    price = 8_500_000_000_000 + np.cumsum(rng.integers(-300, 301, n, dtype=np.int64)) * 1_000_000
    qty = rng.integers(1, 500_000, n, dtype=np.int64) * 1_000
    return pa.table(
        {
            "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
            "ts_event": pa.array(ts),
            "price": mantissas_to_decimal(price, PRICE),
            "qty": mantissas_to_decimal(qty, QTY),
            "quote_qty": mantissas_to_decimal(price // 1000 * (qty // 100_000), QUOTE),
            "is_buyer_maker": pa.array(rng.random(n) < 0.5),
            "is_best_match": pa.array(np.ones(n, dtype=bool)),
            "ts_recv": pa.array(ts),
        },
        schema=BRONZE_TRADES,
    )


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False))
    return sink.getvalue()


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--pages", type=int, default=300)
    args = parser.parse_args(argv)
    day = simulated_trades(1, args.rows)
    raw = csv_bytes(day)
    out: dict[str, object] = {"rows": args.rows, "raw_mb": round(len(raw) / 1e6, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake.open(str(Path(tmp) / "dump"))
        result, secs = timed(lambda: lake.append_bronze("trades", "BTCUSDT", day, raw=raw, raw_format="csv",
                                                        source="dumps"))
        out["dump_append_rows_per_s"] = round(result.rows_added / secs)
        _, secs = timed(lambda: lake.append_bronze("trades", "BTCUSDT", day, raw=raw, raw_format="csv",
                                                   source="dumps"))
        out["dump_reappend_noop_s"] = round(secs, 3)
        table, secs = timed(lambda: lake.read_bronze("trades", "BTCUSDT"))
        assert table.num_rows == args.rows
        out["read_bronze_rows_per_s"] = round(args.rows / secs)
        _, secs = timed(lambda: lake.silver_trades("BTCUSDT"))
        out["silver_trades_rows_per_s"] = round(args.rows / secs)
        report, secs = timed(lambda: check_lake(lake, "trades", "BTCUSDT"))
        assert report.ok
        out["check_rows_per_s"] = round(args.rows / secs)

        rest = Lake.open(str(Path(tmp) / "rest"))
        pages = [day.slice(i * 1000, 1000) for i in range(min(args.pages, args.rows // 1000))]
        bodies = [orjson.dumps(p.select(["id", "ts_event"]).to_pylist()) for p in pages]
        start = time.perf_counter()
        for page, body in zip(pages, bodies, strict=True):
            rest.append_bronze("trades", "BTCUSDT", page, raw=body, raw_format="json", source="rest")
        secs = time.perf_counter() - start
        out["rest_pages"] = len(pages)
        out["rest_page_appends_per_s"] = round(len(pages) / secs, 1)
        out["rest_rows_per_s"] = round(len(pages) * 1000 / secs)
        result, secs = timed(lambda: rest.compact("trades", "BTCUSDT", DAY))
        out["compact_files"] = f"{result.files_before}->{result.files_after}"
        out["compact_s"] = round(secs, 3)
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main(sys.argv[1:])
