"""Benchmark: ``btcpipe features build`` over N days × M symbols on the partition runners — serial (two threads
inside each day, the CLI default), threads (days side by side, one thread each) and Ray on this machine (a
local Ray with as many CPUs as cores) — and the runners' own cost per task. Prints JSON.

Bronze is simulated (tests/support/features.make_tape: clustered arrivals, quiet spells) at ``RATE`` trades/s
per symbol. Every engine rebuilds the same lake; parts are named by their content, so each run must leave
exactly the serial run's parts (checked: same manifests' sha256). Ray's start-up is timed apart from the
build. Task overhead: a no-op task mapped ``OVERHEAD_TASKS`` times, per task. The machine is shared: each
engine runs ``ROUNDS`` times in alternating order and medians are reported.

Environment: BENCH_DAYS (3), BENCH_SYMBOLS (2), BENCH_RATE (5 trades/s), BENCH_ROUNDS (3).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.features import bronze_trades_table, make_tape

from btcpipe.domain.time import day_start_us
from btcpipe.engines.feature_build import build_partitions
from btcpipe.engines.port import PartitionRunner
from btcpipe.engines.serial import SerialRunner
from btcpipe.engines.threads import ThreadRunner
from btcpipe.lake.lake import Lake
from btcpipe.lake.ref import LakeRef

DAYS = int(os.environ.get("BENCH_DAYS", "3"))
SYMBOLS = [f"SYM{i}USDT" for i in range(int(os.environ.get("BENCH_SYMBOLS", "2")))]
RATE = float(os.environ.get("BENCH_RATE", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OVERHEAD_TASKS = 200
D1 = dt.date(2024, 3, 1)


def noop(n: int) -> int:
    return n


def write_bronze(root: Path) -> int:
    lake = Lake.open(str(root))
    trades = 0
    for seed, symbol in enumerate(SYMBOLS, start=1):
        tape = make_tape(seed, day_start_us(D1), DAYS * 86_400, rate=RATE)
        trades += len(tape.trades)
        lake.append_bronze("trades", symbol, bronze_trades_table(tape.trades), raw=b"bench", raw_format="csv",
                           source="bench")
    return trades


def parts(lake: LakeRef, built: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(f.path, f.sha256) for s in built for d in s.days for f in (*d.silver, *d.gold)]


def timed_build(runner: PartitionRunner, lake: LakeRef, threads_per_day: int) -> tuple[float, list[tuple[str, str]]]:
    end = D1 + dt.timedelta(days=DAYS - 1)
    t0 = time.perf_counter()
    built = build_partitions(runner, lake, SYMBOLS, D1, end, threads_per_day=threads_per_day)
    return time.perf_counter() - t0, parts(lake, built)


def overhead_ms(runner: PartitionRunner) -> float:
    runner.map(noop, list(range(8)))  # warm: workers started, function shipped
    t0 = time.perf_counter()
    runner.map(noop, list(range(OVERHEAD_TASKS)))
    return (time.perf_counter() - t0) / OVERHEAD_TASKS * 1e3


def main() -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        root = Path(tmp) / "lake"
        trades = write_bronze(root)
        lake = LakeRef(str(root))
        runners: dict[str, tuple[PartitionRunner, int]] = {
            "serial": (SerialRunner(), 2),
            "threads": (ThreadRunner(cores), 1),
        }
        ray_start_s = None
        try:
            from btcpipe.engines.ray_runner import RayRunner

            t0 = time.perf_counter()
            ray_runner = RayRunner(num_cpus=cores)
            ray_start_s = time.perf_counter() - t0
            runners["ray"] = (ray_runner, 1)
        except ImportError:
            pass
        times: dict[str, list[float]] = {name: [] for name in runners}
        reference: list[tuple[str, str]] | None = None
        identical = True
        try:
            for _ in range(ROUNDS):
                for name, (runner, threads) in runners.items():
                    seconds, written = timed_build(runner, lake, threads)
                    times[name].append(seconds)
                    reference = reference or written
                    identical = identical and written == reference
            overhead = {name: round(overhead_ms(runner), 3) for name, (runner, _) in runners.items()}
        finally:
            for runner, _ in runners.values():
                runner.close()
    serial = statistics.median(times["serial"])
    print(json.dumps({
        "benchmark": "engines",
        "days": DAYS, "symbols": len(SYMBOLS), "tasks": DAYS * len(SYMBOLS), "trades": trades, "cores": cores,
        "rounds": ROUNDS,
        "build_s": {name: round(statistics.median(t), 3) for name, t in times.items()},
        "speedup_vs_serial": {name: round(serial / statistics.median(t), 2) for name, t in times.items()},
        "trades_per_s": {name: round(trades / statistics.median(t)) for name, t in times.items()},
        "ray_start_s": round(ray_start_s, 2) if ray_start_s is not None else None,
        "task_overhead_ms": overhead,
        "parts_identical_across_engines": identical,
    }, indent=2))


if __name__ == "__main__":
    main()
