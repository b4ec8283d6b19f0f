"""Feature builds of many symbols × days on a partition runner.

The driver plans each symbol's span once (``plan_span``: params fitted on the training part, whether the
labels use the best bid/ask mid) and hands the runner one task per (symbol, day). A task opens the lake
by URI, calls the unchanged ``build_day`` and returns the day's summary with the silver and gold parts
its manifests now list. Days are independent once planned (each reads its neighbours' bronze for warm-up
and look-ahead, never their silver), and every (dataset, symbol, day) has its own manifest, so tasks
never share a manifest; a retried task rewrites the same content-named part and the same manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from btcpipe.domain.errors import ConfigError, LakeIntegrityError
from btcpipe.engines.port import PartitionRunner
from btcpipe.features.day_build import DEFAULT_TRAIN_FRACTION, DayBuild, build_day, days_in, plan_span
from btcpipe.features.spec import FeatureParams
from btcpipe.features.tables import GOLD_DATASET, SILVER_DATASET
from btcpipe.lake.manifest import FileEntry
from btcpipe.lake.ref import LakeRef

DEFAULT_THREADS_PER_DAY = 2  # a day's build has two independent branches at a time (see build_day)


@dataclass(frozen=True, slots=True)
class DayTask:
    """One (symbol, day) to build with params planned by the driver."""

    lake: LakeRef
    symbol: str
    day: dt.date
    params: FeatureParams
    use_book: bool
    threads: int = DEFAULT_THREADS_PER_DAY


@dataclass(frozen=True, slots=True)
class DayParts:
    """A built day: the build's summary and the parts the silver and gold manifests list after it."""

    symbol: str
    build: DayBuild
    silver: tuple[FileEntry, ...]
    gold: tuple[FileEntry, ...]


@dataclass(frozen=True, slots=True)
class SymbolBuild:
    """One symbol's span: the params its days were built with and the days in order."""

    symbol: str
    params: FeatureParams
    days: list[DayParts]


def build_day_task(task: DayTask) -> DayParts:
    """Build one day (the runners' task function): open the lake, ``build_day``, read back the manifests."""
    lake = task.lake.open()
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(task.threads)) if task.threads > 1 else None
        built = build_day(lake, task.symbol, task.day, task.params, use_book=task.use_book, executor=executor)
    parts: list[tuple[FileEntry, ...]] = []
    for layer, dataset in (("silver", SILVER_DATASET), ("gold", GOLD_DATASET)):
        manifest = lake.table_manifest(layer, dataset, task.symbol, task.day)
        if manifest is None:
            raise LakeIntegrityError(f"{layer}/{dataset}/{task.symbol}/{task.day}: no manifest after the build")
        parts.append(tuple(manifest.files))
    return DayParts(task.symbol, built, parts[0], parts[1])


def build_partitions(
    runner: PartitionRunner,
    lake: LakeRef,
    symbols: Sequence[str],
    start_day: dt.date,
    end_day: dt.date,
    *,
    params: FeatureParams | None = None,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    threads_per_day: int = DEFAULT_THREADS_PER_DAY,
) -> list[SymbolBuild]:
    """Build silver and gold for every symbol and day of ``[start_day, end_day]`` on ``runner``.

    ``params`` applies to every symbol; without it each symbol's params are fitted on its own span's
    training part (as ``build_span`` does). Results are in the order of ``symbols``, days ascending."""
    if not symbols:
        raise ConfigError("no symbols to build")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"symbols repeat: {', '.join(symbols)}")
    if threads_per_day < 1:
        raise ConfigError(f"threads per day must be at least 1, got {threads_per_day}")
    days = days_in(start_day, end_day)
    driver_lake = lake.open()
    plans = {s: plan_span(driver_lake, s, days, params, train_fraction=train_fraction) for s in symbols}
    tasks = [DayTask(lake, s, d, plans[s][0], plans[s][1], threads_per_day) for s in symbols for d in days]
    done = runner.map(build_day_task, tasks)
    return [SymbolBuild(s, plans[s][0], [p for p in done if p.symbol == s]) for s in symbols]
