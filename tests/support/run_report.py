"""A finished ``RunResult`` made by hand, with real evaluation figures, for the report's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from btcpipe.model.dataset import split_by_time
from btcpipe.model.evaluate import evaluate, oracle_intervals
from btcpipe.model.synthetic import synthetic_rows
from btcpipe.run.orchestrator import LiveResult, RunPlan, RunResult, StageRecord

T0 = 1_796_203_456_000_000  # an epoch-µs time the page must show as ISO, never raw


def sample_result(out_dir: Path, *, ok: bool = True, extra_hop: bool = False) -> RunResult:
    synthetic = synthetic_rows(6000, seed=3)
    split = split_by_time(synthetic.rows)
    weights = np.random.default_rng(1).standard_normal(split.test.features.shape[1]) * 1e-7
    yhat = split.test.features @ weights * 0 + split.test.y * 0.3  # a model with real skill
    evaluation, _ = evaluate(lambda _x: yhat, split, seed=0)
    oracle = {"r2": 0.1, "hit_rate": 0.6, "n": len(split.test), "model_r2_share": 0.9, "preset": "realistic",
              **oracle_intervals(split.test, yhat, split.test.y * 0.35, seed=0)}
    stages = [
        StageRecord("exchange", T0, 1.2, True, {"rest_url": "http://127.0.0.1:41234", "trades": 123456}),
        StageRecord("backfill", T0 + 1_000_000, 20.5, True,
                    {"rows": {"trades": 200_000}, "first_id": 3_000_000_000, "last_id": 3_000_199_999}),
        StageRecord("features", T0 + 30_000_000, 5.0, True, {"schema_hash": "ab12cd34" * 8, "days": ["2026-12-02"]}),
        StageRecord("train", T0 + 40_000_000, 30.0, True, {
            "name": "btcusdt-10s", "version": "v1", "uri": "file:///tmp/lake/models/btcusdt-10s/v1",
            "rows": {"train": 4000, "val": 900, "test": 900}, "best_epoch": 4,
            "metrics": evaluation.as_dict(), "oracle": oracle, "train_seconds": 12.5,
            "history": [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e} for e in range(1, 8)],
            "card": {"label_mid": "best_bid_ask", "data_first": "2026-12-02T09:00:00Z",
                     "data_last": "2026-12-02T10:59:59Z", "features": 19, "uncertainty": 3e-4}}),
    ]
    if not ok:
        stages.append(StageRecord("promote", T0 + 80_000_000, 0.1, False, {}, "registry refused: bad checksum"))
    predictions = [{"symbol": "BTCUSDT", "ts_sec": T0 + k * 1_000_000, "yhat": 1e-5 * np.sin(k / 5),
                    "realized": 1.2e-5 * np.sin(k / 5 + 0.3) if k < 110 else None, "latency_ms": 3.0 + k % 7,
                    "feature_age_ms": 40.0, "source": "store", "model_version": "v1"} for k in range(120)]
    rng = np.random.default_rng(0)
    hops = {"exchange→ingest": list(rng.gamma(2, 1.5, 500)), "ingest→bus": list(rng.gamma(2, 0.2, 500)),
            "second end→feature row": list(rng.gamma(3, 10, 120)),
            "feature row→prediction": list(rng.gamma(2, 5, 120)), "tick": list(rng.gamma(2, 1, 120))}
    if extra_hop:
        hops["second end→prediction"] = list(rng.gamma(3, 12, 120))
    live = LiveResult(
        summary={"model_version": "v1", "predictions": 120, "realized": 110, "hit_rate": 0.6,
                 "first_prediction": T0, "last_prediction": T0 + 119_000_000, "warmup_trades": 5000,
                 "counters": {"messages": 9000, "gaps": 1, "gap_trades_filled": 3, "resyncs": 0, "late": 2,
                              "skipped_ticks": 0, "fallback": 0, "errors": 0},
                 "ingest_events": {"trade": 8000, "depth": 1000}, "stream_mode": "sbe"},
        predictions=predictions, hops_ms=hops,
    ) if ok else None
    result = RunResult(
        plan=RunPlan(out_dir=out_dir, history_s=7200, duration_s=120), stages=stages, started_us=T0,
        finished_us=T0 + 200_000_000, market={"source": "simulator", "sim_seed": 0, "sim_preset": "realistic",
                                              "history_start": "2026-12-02T09:00:00Z"},
        wiring={"bus": "in-process", "lake": str(out_dir / "lake")}, live=live,
    )
    if not ok:
        result.failed_stage = "promote"
        result.error = "stage 'promote' failed: registry refused: bad checksum"
    return result
