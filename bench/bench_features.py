"""Benchmark: feature build end to end (bronze Parquet → gold Parquet) beside the pandas yardstick, and
the streaming engine's seconds/s and trades/s. Prints JSON.

A simulated day (≥ 1.5 M trades) is written as a bronze trades Parquet file; btcpipe's builder reads it,
converts the exact decimals, computes features and labels and writes gold Parquet; the pandas version
(bench/pandas_features.py) does the same from the same file in the same run. The streaming engine then
replays the first hours second by second, and its rows are checked equal to the batch rows.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

import pandas_features
from test_features_support import bronze_trades_table, stream_rows

from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.simulator import SimConfig, simulate
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import StreamingFeatureEngine
from btcpipe.features.tables import attach_labels, gold_table, label_mid_series, trade_tape_from_bronze

STREAM_SECONDS = 2 * 3600


def btcpipe_build_gold(bronze_path: str, gold_path: str, params: FeatureParams, start: int, end: int) -> int:
    # Only the columns the features and the label read (bronze also keeps quote_qty, ids, receive times).
    tape = trade_tape_from_bronze(pq.read_table(bronze_path, columns=["id", "ts_event", "price", "qty",
                                                                        "is_buyer_maker"]))
    trades = TradeArrays.from_tape(tape)
    frame = build_features(trades, params, start_us=start, end_us=end, history_start_us=start - US_PER_SEC)
    kind, mid_ts, mid = label_mid_series(tape, None)
    labeled, y = attach_labels(frame, mid_ts, mid)
    pq.write_table(gold_table(labeled, y, kind, params, "BTCUSDT"), gold_path, compression="zstd")
    return len(labeled)


def main() -> None:
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
        pq.write_table(bronze_trades_table(tape.trades), bronze, compression="zstd")
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            rows = btcpipe_build_gold(bronze, f"{tmp}/gold.parquet", params, start, end)
            runs.append(time.perf_counter() - t)
        ours = min(runs)
        t = time.perf_counter()
        pd_rows = pandas_features.build_gold(bronze, f"{tmp}/gold_pd.parquet", trade_size_p95=params.trade_size_p95,
                                             start_us=start, end_us=end, history_start_us=start - US_PER_SEC)
        theirs = time.perf_counter() - t
        ours_tbl = pq.read_table(f"{tmp}/gold.parquet")
        pd_tbl = pq.read_table(f"{tmp}/gold_pd.parquet")
        agree = {}
        for name in ("ret_5s", "tvi_5s", "vol_ret_10s", "burst_1s", "y"):
            a, b = ours_tbl[name].to_numpy()[WINDOW_BARS:], pd_tbl[name].to_numpy()[WINDOW_BARS:]
            agree[name] = bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))

    # Streaming: the first hours second by second, checked against the batch rows.
    s_end = start + STREAM_SECONDS * US_PER_SEC
    batch = build_features(trades_all, params, start_us=start, end_us=s_end, history_start_us=start - US_PER_SEC)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=start - US_PER_SEC)
    lo, hi = np.searchsorted(trades_all.ts_event, [start - US_PER_SEC, s_end])
    t = time.perf_counter()
    streamed = stream_rows(engine, trades_all, None, batch.ts_sec)
    stream_s = time.perf_counter() - t
    same = (streamed == batch.columns) | (np.isnan(streamed) & np.isnan(batch.columns))

    print(json.dumps({
        "trades": n,
        "loadavg_1m": round(os.getloadavg()[0], 2),  # the machine is shared: read the figures against this
        "simulate_s": round(sim_s, 3),
        "batch": {
            "rows": rows,
            "seconds": round(ours, 4),
            "trades_per_sec": round(n / ours),
            "runs_s": [round(r, 4) for r in runs],
        },
        "pandas": {"rows": pd_rows, "seconds": round(theirs, 4), "trades_per_sec": round(n / theirs)},
        "speedup_vs_pandas": round(theirs / ours, 2),
        "pandas_agrees": agree,
        "streaming": {
            "seconds_simulated": STREAM_SECONDS,
            "trades": int(hi - lo),
            "wall_s": round(stream_s, 3),
            "seconds_per_sec": round(STREAM_SECONDS / stream_s),
            "trades_per_sec": round(int(hi - lo) / stream_s),
            "us_per_close": round(stream_s / STREAM_SECONDS * 1e6, 1),
            "rows_equal_batch": bool(same.all()),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
