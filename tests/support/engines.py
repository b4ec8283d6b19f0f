"""A small multi-symbol, multi-day bronze lake for the runner tests, and task wrappers that run on Ray
workers (shipped by value: the workers need not find this module)."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

from btcpipe.domain.errors import DataError
from btcpipe.domain.time import day_start_us
from btcpipe.engines.feature_build import DayParts, DayTask, build_day_task
from btcpipe.lake.lake import Lake
from support.features import SEC, bronze_trades_table, make_tape

SYMBOLS = ("BTCUSDT", "ETHUSDT")
D1, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 3)


def write_bronze(root: Path, symbols: tuple[str, ...] = SYMBOLS, *, rate: float = 0.5) -> Lake:
    """Trades from 22:00 of D1 to 01:00 of D3 (27 h: D1 and D2 have whole days of rows, D3 an hour)."""
    lake = Lake.open(str(root))
    start = day_start_us(D1) + 22 * 3600 * SEC
    for seed, symbol in enumerate(symbols, start=21):
        tape = make_tape(seed, start, 27 * 3600, rate=rate, silence_s=120)
        lake.append_bronze("trades", symbol, bronze_trades_table(tape.trades), raw=b"synthetic", raw_format="csv",
                           source="test")
    return lake


def lake_files(root: Path, layer: str) -> dict[str, bytes]:
    """Every file under ``root/layer`` by relative path (parts and manifests), for byte comparisons."""
    base = root / layer
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def build_then_die_once(task: DayTask) -> DayParts:
    """Build the day, then kill this worker process the first time a task of this day runs (a marker file
    in the lake remembers it): the parts are written but the result is lost, so Ray must run it again."""
    parts = build_day_task(task)
    marker = Path(task.lake.uri) / f"killed-{task.symbol}-{task.day}"
    if task.day == D1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return parts


def refuse_odd(n: int) -> int:
    """A task that fails on bad input the way btcpipe's code does: with one of its own errors."""
    if n % 2:
        raise DataError(f"{n} is odd")
    return n


def build_on_node(task: DayTask) -> tuple[str, DayParts]:
    """The day's parts and the Ray node that built them."""
    import ray

    return ray.get_runtime_context().get_node_id(), build_day_task(task)
