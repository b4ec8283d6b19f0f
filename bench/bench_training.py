"""Training wall time on a simulated week of 1-s rows (604,800 × 19), printed as JSON.

By default the rows are synthetic (``btcpipe.model.synthetic``: noise features on wildly different
scales and a label with a known linear signal), which isolates the training step and finishes well
under a minute. ``--source sim --hours H`` instead simulates H hours of market data, builds the v1
features and labels from it, and also reports the model's R² as a share of the simulator's oracle
(a simulated week, ``--hours 168``, takes a few minutes: not the default).
Usage: ``python bench/bench_training.py [--rows N] [--epochs N] [--source synthetic|sim --hours H]``.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=7 * 86_400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=["synthetic", "sim"], default="synthetic")
    parser.add_argument("--hours", type=float, default=168.0, help="simulated hours (--source sim)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch

    from btcpipe.domain.scores import score
    from btcpipe.model.dataset import split_by_time
    from btcpipe.model.export import export_onnx
    from btcpipe.model.synthetic import synthetic_rows
    from btcpipe.model.train import TrainConfig, train_mlp

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = None
    if args.source == "sim":
        from btcpipe.market.config import SimConfig
        from btcpipe.model.dataset import drop_incomplete
        from btcpipe.model.simulated import simulated_rows

        sim = simulated_rows(SimConfig(seed=args.seed, duration_s=int(args.hours * 3600)))
        rows, _ = drop_incomplete(sim.rows)
        data_desc, optimal = f"simulator ({args.hours} h, seed {args.seed}) through the v1 feature builder", None
    else:
        synthetic = synthetic_rows(args.rows, seed=args.seed)
        rows, optimal = synthetic.rows, synthetic.optimal_r2
        data_desc = "synthetic 1-s rows with a known linear signal (btcpipe.model.synthetic)"
    split = split_by_time(rows)
    prepare_s = time.perf_counter() - t0

    config = TrainConfig(seed=args.seed, max_epochs=args.epochs, batch_size=args.batch_size)
    t0 = time.perf_counter()
    trained = train_mlp(split, config)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    onnx_bytes = export_onnx(trained)
    export_s = time.perf_counter() - t0

    test = score(split.test.y, trained.predict(split.test.features))
    if sim is not None:
        optimal = sim.oracle_on(split.test).r2
    epochs = len(trained.history)
    print(json.dumps({
        "benchmark": "training",
        "data": data_desc,
        "rows": len(rows),
        "features": len(rows.feature_names),
        "train_rows": len(split.train), "val_rows": len(split.val), "test_rows": len(split.test),
        "batch_size": args.batch_size, "max_epochs": args.epochs, "epochs_run": epochs,
        "best_epoch": trained.best_epoch, "stopped_early": trained.stopped_early,
        "train_seconds": round(train_s, 3),
        "seconds_per_epoch": round(train_s / epochs, 3),
        "train_rows_per_second": round(len(split.train) * epochs / train_s),
        "export_seconds": round(export_s, 3), "onnx_bytes": len(onnx_bytes),
        "prepare_seconds": round(prepare_s, 3), "import_seconds": round(import_s, 3),
        "test_r2": round(test.r2, 4), "optimal_r2": round(optimal, 4) if optimal is not None else None,
        "r2_share_of_optimum": round(test.r2 / optimal, 4) if optimal else None,
        "test_hit_rate": round(test.hit_rate, 4),
        "torch": torch.__version__, "torch_threads": 1,
    }))


if __name__ == "__main__":
    main()
