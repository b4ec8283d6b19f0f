"""Benchmark: the Flink job's trades/s beside the built-in processor's, on the same simulated tape. Prints JSON.

The tape (trades only, ``MarketTradeColumns`` per run of same-time trades, as the ingestor publishes) is
written once as the job's input file; the Flink job (local MiniCluster in ``.venv-flink``, parallelism 1,
process mode, no checkpoints) reads it with a bounded file source. Its wall time counts from job submission
to the last row; a 20-second tape measures the fixed cost (job start, Python workers), subtracted for the
steady rate. The processor drains the same payloads from the in-process bus (``bench_processor.drain``).
Second-end → row latency is not measured here: rows leave the local job through the collect sink, which
(with checkpoints) releases them per checkpoint — a harness artefact, not Flink's latency.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_processor import drain

from btcpipe.bus.memory import InProcessBus
from btcpipe.engines.flink.launch import JobOptions, run_job
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate
from btcpipe.run.flink_parity import write_payloads
from btcpipe.services.replay import replay
from btcpipe.store.memory import InProcessOnlineStore

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1800


def flink(seconds: int, params: FeatureParams, work: Path) -> dict[str, Any]:
    tape = simulate(SimConfig(seed=1, duration_s=seconds, base_order_rate=10.0))
    work.mkdir(parents=True, exist_ok=True)
    n = write_payloads(tape, work / "payloads.txt", with_best_bid_ask=False)
    summary = run_job(JobOptions(work / "payloads.txt", work / "rows.jsonl", params, work))
    return {"trades": len(tape.trades), "payloads": n, "rows": summary["rows"], "seconds": summary["seconds"]}


def main() -> None:
    params = FeatureParams(0.05)
    out: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-flink-") as tmp:
        fixed = flink(20, params, Path(tmp) / "fixed")
        run = flink(SECONDS, params, Path(tmp) / "run")
    steady = max(1e-9, float(run["seconds"]) - float(fixed["seconds"]))
    out["flink"] = run | {"trades_per_s_wall": round(run["trades"] / float(run["seconds"])),
                          "fixed_cost_seconds_20s_tape": fixed["seconds"],
                          "trades_per_s_after_fixed_cost": round((run["trades"] - fixed["trades"]) / steady)}
    tape = simulate(SimConfig(seed=1, duration_s=SECONDS, base_order_rate=10.0))
    bus = InProcessBus()
    replay(tape, bus, kinds=["trade"])
    clock = ManualClock(tape.end_us)
    out["processor"] = drain(bus, InProcessOnlineStore(clock), params, clock)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
