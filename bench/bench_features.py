"""Benchmark: feature build end to end (bronze Parquet → gold Parquet) beside the pandas yardstick, and
the streaming engine's per-trade and per-second cost. Prints JSON.

A simulated day (≥ 1.5 M trades) is written as a bronze trades Parquet file by the lake's own writer
(zstd, delta-encoded ids and times, decimals as INT64, key columns REQUIRED). btcpipe's side reads the
five columns it needs, checks the ids, converts the exact decimals (``trade_arrays_from_bronze``), builds
features and labels (``features.span.span_tables``, the call ``btcpipe features build`` makes per day)
and writes gold Parquet encoded as the lake encodes it, with two threads as ``btcpipe features build``
runs by default. The pandas version (bench/pandas_features.py) does the same from the same file. Every
round writes a new gold file for both (the lake never overwrites a part: its name is its hash). After
one untimed warm-up round each, the two run in alternating rounds so machine load (the machine is
shared) hits both alike; medians are reported. The streaming engine then replays the first hours trade
by trade and second by second, and its rows are checked equal to the batch rows.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from btcpipe.lake.manifest import table_to_parquet

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.features

import pandas_features
from support.features import bronze_trades_table

from btcpipe.domain.errors import DataError
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.span import span_tables
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import StreamingFeatureEngine
from btcpipe.features.tables import BRONZE_TRADE_COLUMNS, FEATURE_PARQUET_OPTIONS, trade_arrays_from_bronze
from btcpipe.lake.manifest import parquet_options
from btcpipe.market.simulator import SimConfig, simulate

ROUNDS = 5
WORKERS = 2  # as ``btcpipe features build`` runs a day (its --workers default)
STREAM_SECONDS = 2 * 3600


def ids_strictly_increase(ids: pa.ChunkedArray) -> bool:
    """A bronze part is id-sorted without repeats: checked chunk by chunk and across chunk edges."""
    last = None
    for chunk in ids.chunks:
        a = chunk.to_numpy()
        if a.shape[0] and ((last is not None and a[0] <= last) or not bool(np.all(a[1:] > a[:-1]))):
            return False
        last = a[-1] if a.shape[0] else last
    return True


def btcpipe_build_gold(
    bronze_path: str, gold_path: str, params: FeatureParams, start: int, end: int, *, executor: Executor | None
) -> tuple[int, dict[str, float]]:
    """Bronze Parquet → gold Parquet with btcpipe's functions; the row count and each stage's seconds."""
    stages: dict[str, float] = {}
    t = time.perf_counter()
    table = pq.read_table(bronze_path, columns=list(BRONZE_TRADE_COLUMNS))  # multithreaded column decode
    if not ids_strictly_increase(table["id"]):
        raise DataError(f"{bronze_path}: trade ids are not strictly increasing")
    trades = trade_arrays_from_bronze(table, executor)
    stages["read"] = time.perf_counter() - t
    t = time.perf_counter()
    built = span_tables(trades, params, "BTCUSDT", start_us=start, end_us=end, history_start_us=start - US_PER_SEC,
                        executor=executor)
    stages["features_and_labels"] = time.perf_counter() - t
    t = time.perf_counter()
    # Encoded as Lake.write_table encodes gold; written to the path as pandas writes its file.
    pq.write_table(built.gold, gold_path, **parquet_options(built.gold, FEATURE_PARQUET_OPTIONS))
    stages["write"] = time.perf_counter() - t
    return built.gold_rows, stages


def pandas_build_gold(bronze_path: str, gold_path: str, params: FeatureParams, start: int, end: int) -> int:
    return pandas_features.build_gold(bronze_path, gold_path, trade_size_p95=params.trade_size_p95,
                                      start_us=start, end_us=end, history_start_us=start - US_PER_SEC)


def batch_rounds(bronze: str, tmp: str, params: FeatureParams, start: int, end: int) -> dict[str, object]:
    ours: list[float] = []
    ours_one_thread: list[float] = []
    theirs: list[float] = []
    stages: list[dict[str, float]] = []
    rows = pd_rows = 0
    with ThreadPoolExecutor(WORKERS) as executor:
        # One untimed round each first: the first read of a process pays page faults and lazy imports.
        # Every round writes a new file, as the lake does (a part's name is its content hash).
        btcpipe_build_gold(bronze, f"{tmp}/gold_warm.parquet", params, start, end, executor=executor)
        pandas_build_gold(bronze, f"{tmp}/gold_pd_warm.parquet", params, start, end)
        for i in range(ROUNDS):
            t = time.perf_counter()
            rows, st = btcpipe_build_gold(bronze, f"{tmp}/gold_{i}.parquet", params, start, end,
                                          executor=executor)
            ours.append(time.perf_counter() - t)
            stages.append(st)
            t = time.perf_counter()
            pd_rows = pandas_build_gold(bronze, f"{tmp}/gold_pd_{i}.parquet", params, start, end)
            theirs.append(time.perf_counter() - t)
            t = time.perf_counter()  # the same build on one thread (``--workers 1``), for comparison
            btcpipe_build_gold(bronze, f"{tmp}/gold_1t_{i}.parquet", params, start, end, executor=None)
            ours_one_thread.append(time.perf_counter() - t)
    t = time.perf_counter()  # how much of the yardstick is reading the decimals as Python objects
    pandas_features.read_trades(bronze)
    pandas_read_s = time.perf_counter() - t
    ours_tbl = pq.read_table(f"{tmp}/gold_0.parquet")
    pd_tbl = pq.read_table(f"{tmp}/gold_pd_0.parquet")
    agree = {}
    for name in ("ret_5s", "tvi_5s", "vol_ret_10s", "burst_1s", "y"):
        a, b = ours_tbl[name].to_numpy()[WINDOW_BARS:], pd_tbl[name].to_numpy()[WINDOW_BARS:]
        agree[name] = bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
    return {
        "rows": rows, "pandas_rows": pd_rows, "ours": ours, "ours_one_thread": ours_one_thread, "theirs": theirs,
        "agree": agree, "pandas_read_s": pandas_read_s,
        "stages_ms": {k: round(statistics.median(s[k] for s in stages) * 1e3, 1) for k in stages[0]},
    }


def streaming_run(trades: TradeArrays, params: FeatureParams, start: int) -> dict[str, object]:
    """Trades one ``add_trade`` call at a time (as the processor feeds them), then ``close_second``."""
    s_end = start + STREAM_SECONDS * US_PER_SEC
    batch = build_features(trades, params, start_us=start, end_us=s_end, history_start_us=start - US_PER_SEC)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=start - US_PER_SEC)
    lo, hi = (int(i) for i in np.searchsorted(trades.ts_event, [start - US_PER_SEC, s_end]))
    ts, price = trades.ts_event[lo:hi].tolist(), trades.price[lo:hi].tolist()
    qty, ibm = trades.qty[lo:hi].tolist(), trades.is_buyer_maker[lo:hi].tolist()
    bounds = (np.searchsorted(trades.ts_event[lo:hi], batch.ts_sec) ).tolist()
    rows = np.empty_like(batch.columns)
    close_us = np.empty(len(batch))
    add = engine.add_trade
    add_s = 0.0
    i = 0
    t_all = time.perf_counter()
    for k, t_sec in enumerate(batch.ts_sec.tolist()):
        j = bounds[k]
        t = time.perf_counter()
        for q in range(i, j):
            add(ts[q], price[q], qty[q], ibm[q])
        t2 = time.perf_counter()
        rows[:, k] = engine.close_second(t_sec).values
        close_us[k] = (time.perf_counter() - t2) * 1e6
        add_s += t2 - t
        i = j
    wall = time.perf_counter() - t_all
    same = (rows == batch.columns) | (np.isnan(rows) & np.isnan(batch.columns))
    return {
        "seconds_simulated": STREAM_SECONDS,
        "trades": hi - lo,
        "wall_s": wall,
        "add_trade_us": add_s / (hi - lo) * 1e6,
        "close_second_us_p50": float(np.percentile(close_us, 50)),
        "close_second_us_p99": float(np.percentile(close_us, 99)),
        "rows_equal_batch": bool(same.all()),
        "late_trades": engine.late_trades,
    }


def main() -> None:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    tape = simulate(SimConfig(seed=1, duration_s=86_400))
    sim_s = time.perf_counter() - t0
    n = len(tape.trades)
    start = tape.start_us - tape.start_us % US_PER_SEC + US_PER_SEC
    end = start + 86_399 * US_PER_SEC
    trades_all = TradeArrays.from_tape(tape.trades)
    params = fit_params(trades_all.qty)
    with tempfile.TemporaryDirectory() as tmp:
        bronze = f"{tmp}/bronze.parquet"
        # Exactly the bytes the lake writes for a bronze part (``lake.manifest.parquet_options``).
        Path(bronze).write_bytes(table_to_parquet(bronze_trades_table(tape.trades)))
        batch = batch_rounds(bronze, tmp, params, start, end)
    ours = statistics.median(batch["ours"])  # type: ignore[arg-type]
    theirs = statistics.median(batch["theirs"])  # type: ignore[arg-type]
    one_thread = statistics.median(batch["ours_one_thread"])  # type: ignore[arg-type]
    stream = streaming_run(trades_all, params, start)
    wall = float(stream["wall_s"])  # type: ignore[arg-type]
    print(json.dumps({
        "trades": n,
        "batch_seconds": round(ours, 4),
        "batch_trades_per_sec": round(n / ours),
        "pandas_seconds": round(theirs, 4),
        "speedup_vs_pandas": round(theirs / ours, 2),
        "workers": WORKERS,
        "batch_seconds_one_thread": round(one_thread, 4),
        "speedup_vs_pandas_one_thread": round(theirs / one_thread, 2),
        "streaming_seconds_per_sec": round(STREAM_SECONDS / wall),
        "streaming_trades_per_sec": round(int(stream["trades"]) / wall),  # type: ignore[call-overload]
        "close_second_us": {"p50": round(float(stream["close_second_us_p50"]), 1),  # type: ignore[arg-type]
                            "p99": round(float(stream["close_second_us_p99"]), 1)},  # type: ignore[arg-type]
        "add_trade_us": round(float(stream["add_trade_us"]), 3),  # type: ignore[arg-type]
        "detail": {
            "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "simulate_s": round(sim_s, 3),
            "batch_rounds_s": [round(x, 4) for x in batch["ours"]],  # type: ignore[attr-defined]
            "pandas_rounds_s": [round(x, 4) for x in batch["theirs"]],  # type: ignore[attr-defined]
            "batch_one_thread_rounds_s": [round(x, 4) for x in batch["ours_one_thread"]],  # type: ignore[attr-defined]
            "batch_stage_median_ms": batch["stages_ms"],
            "gold_rows": batch["rows"],
            "pandas_gold_rows": batch["pandas_rows"],
            "pandas_read_and_decimal_conversion_s": round(float(batch["pandas_read_s"]), 3),  # type: ignore[arg-type]
            "pandas_agrees": batch["agree"],
            "streaming_trades": stream["trades"],
            "streaming_rows_equal_batch": stream["rows_equal_batch"],
            "streaming_late_trades": stream["late_trades"],
        },
    }, indent=2))


if __name__ == "__main__":
    main()
