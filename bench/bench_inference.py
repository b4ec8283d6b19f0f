"""Single-row inference latency with onnxruntime through ``OnnxPredictor`` (scaler included), as JSON.

A small model is trained for one epoch on synthetic rows and exported first (not timed); then
``predict`` is called on one raw feature row at a time, the way the live service calls it each second.
Usage: ``python bench/bench_inference.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()

    from btcpipe.features.spec import FeatureParams
    from btcpipe.model.dataset import split_by_time
    from btcpipe.model.export import package_model
    from btcpipe.model.runtime import OnnxPredictor
    from btcpipe.model.schema import schema_json
    from btcpipe.model.synthetic import synthetic_rows
    from btcpipe.model.train import TrainConfig, train_mlp

    split = split_by_time(synthetic_rows(5_000, seed=1).rows)
    trained = train_mlp(split, TrainConfig(seed=1, max_epochs=1))
    artifacts, _ = package_model(trained, split, schema_json=schema_json(FeatureParams(0.5)), symbol="BTCUSDT",
                                 label_mid="synthetic")
    t0 = time.perf_counter()
    predictor = OnnxPredictor(artifacts)
    load_ms = (time.perf_counter() - t0) * 1e3

    rows = split.test.features
    for i in range(args.warmup):
        predictor.predict(rows[i % len(rows)])
    latencies = np.empty(args.calls)
    for i in range(args.calls):
        row = rows[i % len(rows)]
        t0 = time.perf_counter_ns()
        predictor.predict(row)
        latencies[i] = time.perf_counter_ns() - t0
    us = latencies / 1e3

    batch = np.tile(rows, (max(1, 100_000 // len(rows)), 1))[:100_000]
    t0 = time.perf_counter()
    predictor.predict(batch)
    batch_s = time.perf_counter() - t0

    print(json.dumps({
        "benchmark": "inference",
        "path": "OnnxPredictor.predict(one raw row): scaler + onnxruntime, intra_op_num_threads=1",
        "calls": args.calls,
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p90_us": round(float(np.percentile(us, 90)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "p999_us": round(float(np.percentile(us, 99.9)), 1),
        "max_us": round(float(us.max()), 1),
        "mean_us": round(float(us.mean()), 1),
        "load_verify_ms": round(load_ms, 2),
        "batch_rows_per_second": round(len(batch) / batch_s),
        "deadline_ms": 100,
    }))


if __name__ == "__main__":
    main()
