"""Model quality and training wall time on a simulated week of 1-s rows, printed as JSON.

By default (``--source sim --preset realistic --hours 168``) it simulates a week of the realistic market,
builds the v1 features and labels, trains the MLP and scores it on the test span beside ridge, the
oracle and the shuffled-label control, each with a 95 % block-bootstrap interval. The targets: MLP R²
≥ 80 % of the oracle's, MLP above ridge by more than ridge's interval, the control at 50 % within its
interval (``targets`` in the output says which hold). ``--source synthetic`` trains on synthetic rows
(``btcpipe.model.synthetic``: noise features and a known linear signal), which isolates the training step.
Usage: ``python bench/bench_training.py [--preset realistic|classroom] [--hours H] [--epochs N]
[--source sim|synthetic --rows N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=7 * 86_400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=["synthetic", "sim"], default="sim")
    parser.add_argument("--hours", type=float, default=168.0, help="simulated hours (--source sim)")
    parser.add_argument("--preset", choices=["realistic", "classroom"], default="realistic")
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
        from btcpipe.market.presets import preset_config
        from btcpipe.model.dataset import drop_incomplete
        from btcpipe.model.simulated import simulated_rows

        sim = simulated_rows(preset_config(args.preset, seed=args.seed, duration_s=int(args.hours * 3600)))
        rows, _ = drop_incomplete(sim.rows)
        data_desc = f"simulator, {args.preset} preset ({args.hours} h, seed {args.seed}) through the v1 feature builder"
        optimal = None
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

    yhat = trained.predict(split.test.features).astype("float64")
    test = score(split.test.y, yhat)
    quality = None
    if sim is not None:
        optimal = sim.oracle_on(split.test).r2
        quality = _quality(sim, split, yhat, args.seed)
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
        **({"quality": quality} if quality else {}),
    }))


def _quality(sim: Any, split: Any, yhat: Any, seed: int) -> dict[str, Any]:
    """MLP, ridge, oracle and the shuffled-label control with 95 % block-bootstrap intervals, and the targets."""
    from btcpipe.model.evaluate import evaluate, oracle_intervals
    from btcpipe.model.training_run import oracle_on_rows

    evaluation, _ = evaluate(lambda _x: yhat, split, seed=seed)
    iv = evaluation.intervals
    oracle = oracle_intervals(split.test, yhat, oracle_on_rows(sim.tape, sim.config, split.test), seed=seed)
    mlp_r2, ridge_r2 = iv["model"]["r2"], iv["baselines"]["ridge"]["r2"]
    share = oracle["model_vs_oracle"]["r2_share"]
    control = iv["shuffled_labels_ridge"]["hit_rate"]
    ridge_half_width = (ridge_r2["high"] - ridge_r2["low"]) / 2
    return {
        "mlp": iv["model"], "ridge": iv["baselines"]["ridge"], "predict_zero": iv["baselines"]["predict_zero"],
        "last_1s_return": iv["baselines"].get("last_1s_return"), "oracle": oracle["oracle"],
        "mlp_share_of_oracle_r2": share, "mlp_minus_ridge_r2": iv["model_vs_ridge"]["r2_difference"],
        "shuffled_label_control": iv["shuffled_labels_ridge"], "bootstrap": iv["method"],
        "by_regime": evaluation.by_regime,
        "targets": {
            "mlp_at_least_80pct_of_oracle_r2": bool(share["value"] is not None and share["value"] >= 0.8),
            "mlp_above_ridge_by_more_than_ridge_ci": bool(mlp_r2["value"] - ridge_r2["value"] > ridge_half_width),
            "control_hit_rate_ci_contains_50pct": bool(control["low"] <= 0.5 <= control["high"]),
        },
    }


if __name__ == "__main__":
    main()
