"""Dump backfills of many symbols × days on a partition runner: one task per (symbol, day).

Each task downloads one daily dump, checks its sha256 against ``.CHECKSUM``, parses all of it and only
then appends to bronze (``services.backfill`` with source "dumps"), so a task that fails writes nothing,
and a task run twice (a retry after its worker died) adds nothing the second time: bronze appends drop
ids already there, parts are named by content, and a day's trades touch only that day's manifest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from btcpipe.binance.dumps import DumpsClient
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.time import US_PER_DAY, day_start_us
from btcpipe.engines.port import PartitionRunner
from btcpipe.features.day_build import days_in
from btcpipe.lake.ref import LakeRef
from btcpipe.services.backfill import BackfillResult, backfill

DUMP_DAY_KINDS = ("trades", "aggTrades")


@dataclass(frozen=True, slots=True)
class DumpDayTask:
    """One day's dump of one symbol, fetched from ``base_url`` into the lake."""

    lake: LakeRef
    base_url: str
    kind: str
    symbol: str
    day: dt.date
    max_retries: int = 5
    compact: bool = True


def backfill_dump_day(task: DumpDayTask) -> BackfillResult:
    """The runners' task function: one verified dump day into bronze."""
    start = day_start_us(task.day)
    with DumpsClient(task.base_url, max_retries=task.max_retries) as client:
        return backfill(client, task.lake.open(), symbol=task.symbol, kind=task.kind, start_us=start,
                        end_us=start + US_PER_DAY, source="dumps", compact=task.compact)


def backfill_dump_days(
    runner: PartitionRunner,
    lake: LakeRef,
    base_url: str,
    *,
    kind: str,
    symbols: Sequence[str],
    start_day: dt.date,
    end_day: dt.date,
    max_retries: int = 5,
    compact: bool = True,
) -> list[BackfillResult]:
    """Every (symbol, day) of ``symbols`` × ``[start_day, end_day]`` on ``runner``; results symbol-major."""
    if kind not in DUMP_DAY_KINDS:
        raise ConfigError(f"dumps hold {' and '.join(DUMP_DAY_KINDS)}, not {kind!r}")
    if not symbols or len(set(symbols)) != len(symbols):
        raise ConfigError(f"need distinct symbols, got {list(symbols)}")
    tasks = [DumpDayTask(lake, base_url, kind, s, d, max_retries, compact)
             for s in symbols for d in days_in(start_day, end_day)]
    return runner.map(backfill_dump_day, tasks)
