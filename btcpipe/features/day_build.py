"""Feature build over the lake: bronze trades (and bookTicker) → silver ``features_1s`` → gold ``features_labeled``.

Composition only: the lake is a port (``FeatureLake``, which ``btcpipe.lake.lake.Lake`` satisfies) and
all arithmetic is ``span_tables`` (``build_features`` / ``labels``). Each day is built on its own, with

- warm-up: the previous day's last ``WINDOW_BARS`` seconds (when the lake has that day), so the rows
  equal those of building the days together, and the last trade before the warm-up (looked up to a day
  back) to seed the carried-forward price;
- look-ahead: the next ``LABEL_HORIZON`` seconds of the next day for the labels of the last rows.

Without a next day in the lake, rows stop at the second after the last trade (quiet and missing cannot
be told apart after it) and gold drops the rows whose label horizon passes the data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa

from btcpipe.domain.arrow_decimal import decimal_to_float
from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.tape import BestBidAskTape
from btcpipe.domain.time import US_PER_DAY, US_PER_SEC, day_start_us, floor_sec
from btcpipe.features import labels
from btcpipe.features.batch import fit_params
from btcpipe.features.span import span_tables
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.tables import (
    BRONZE_TRADE_COLUMNS,
    FEATURE_PARQUET_OPTIONS,
    GOLD_DATASET,
    SILVER_DATASET,
    book_tape_from_bronze,
    trade_arrays_from_bronze,
)
from btcpipe.features.threads import run_beside

log = logging.getLogger(__name__)

WARMUP_US = WINDOW_BARS * US_PER_SEC
SEED_LOOKBACK_US = 3_600 * US_PER_SEC
DEFAULT_TRAIN_FRACTION = 0.7


class FeatureLake(Protocol):
    """What the day build needs of a lake: read bronze spans, write silver and gold partitions."""

    def read_bronze(
        self,
        kind: str,
        symbol: str,
        start_us: int | None = None,
        end_us: int | None = None,
        *,
        columns: list[str] | tuple[str, ...] | None = None,
    ) -> pa.Table: ...

    def bronze_days(self, kind: str, symbol: str) -> list[dt.date]: ...

    def write_table(
        self,
        layer: Literal["silver", "gold"],
        dataset: str,
        symbol: str,
        day: dt.date,
        table: pa.Table,
        *,
        parquet_options: dict[str, str | bool] | None = None,
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class DayBuild:
    """What building one day produced: trades read, rows written, which mid the label used, whether it was warmed up."""

    day: dt.date
    trades: int
    silver_rows: int
    gold_rows: int
    label_mid: str
    warmed_up: bool


def days_in(start_day: dt.date, end_day: dt.date) -> list[dt.date]:
    if end_day < start_day:
        raise ConfigError(f"end day {end_day} is before start day {start_day}")
    return [start_day + dt.timedelta(days=i) for i in range((end_day - start_day).days + 1)]


def book_covers(lake: FeatureLake, symbol: str, days: list[dt.date]) -> bool:
    """Whether every day of the span has best bid/ask history (then labels use its mid, spread is possible)."""
    have = set(lake.bronze_days("bookTicker", symbol))
    return bool(days) and all(d in have for d in days)


def fit_params_from_lake(
    lake: FeatureLake,
    symbol: str,
    start_day: dt.date,
    end_day: dt.date,
    *,
    with_spread: bool,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
) -> FeatureParams:
    """Fit ``FeatureParams`` on the earliest ``train_fraction`` of the span (the training split)."""
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError(f"train fraction must be in (0, 1], got {train_fraction}")
    start = day_start_us(start_day)
    end = day_start_us(end_day) + US_PER_DAY
    fit_end = start + int((end - start) * train_fraction)
    table = lake.read_bronze("trades", symbol, start, fit_end, columns=["qty"])
    if table.num_rows == 0:
        raise DataError(f"no {symbol} trades in bronze to fit feature parameters on ({start_day}…)")
    return fit_params(decimal_to_float(table["qty"]), with_spread=with_spread)


def _seed_table(
    lake: FeatureLake, kind: str, symbol: str, before_us: int, columns: tuple[str, ...] | None
) -> pa.Table:
    """Rows just before ``before_us`` (an hour, else a day back) to seed carried-forward values."""
    near = lake.read_bronze(kind, symbol, before_us - SEED_LOOKBACK_US, before_us, columns=columns)
    if near.num_rows:
        return near.slice(near.num_rows - 1)
    far = lake.read_bronze(kind, symbol, before_us - US_PER_DAY, before_us - SEED_LOOKBACK_US, columns=columns)
    return far.slice(max(0, far.num_rows - 1))


def _read_span(
    lake: FeatureLake, kind: str, symbol: str, hist: int, end: int, *, seed: bool,
    columns: tuple[str, ...] | None = None,
) -> pa.Table:
    body = lake.read_bronze(kind, symbol, hist, end, columns=columns)
    if not seed:
        return body
    return pa.concat_tables([_seed_table(lake, kind, symbol, hist, columns), body]).combine_chunks()


def build_day(
    lake: FeatureLake,
    symbol: str,
    day: dt.date,
    params: FeatureParams,
    *,
    use_book: bool,
    executor: Executor | None = None,
) -> DayBuild:
    """Build and write one day's silver and gold partitions.

    ``executor`` (threads) runs independent steps side by side: the two decimal conversions, the label
    beside the features, the silver and gold writes. The partitions are the same without it.
    """
    start = day_start_us(day)
    end = start + US_PER_DAY
    trade_days = set(lake.bronze_days("trades", symbol))
    warmed = any(d < day for d in trade_days)
    has_next = any(d > day for d in trade_days)
    hist = start - WARMUP_US if warmed else start
    read_end = end + labels.LABEL_HORIZON_US
    trades = trade_arrays_from_bronze(
        _read_span(lake, "trades", symbol, hist, read_end, seed=warmed, columns=BRONZE_TRADE_COLUMNS), executor
    )
    book: BestBidAskTape | None = None
    if use_book or params.with_spread:
        book = book_tape_from_bronze(_read_span(lake, "bookTicker", symbol, hist, read_end, seed=True))
    row_end = end
    data_end: int | None = read_end - 1 if has_next else None
    if not has_next:
        last_ts = int(trades.ts_event[-1]) if len(trades) else start
        row_end = max(start, min(end, floor_sec(last_ts) + US_PER_SEC))
    built = span_tables(
        trades, params, symbol, start_us=start, end_us=row_end, history_start_us=hist, book=book,
        use_book=use_book, data_end_us=data_end, executor=executor,
    )
    write = partial(lake.write_table, parquet_options=FEATURE_PARQUET_OPTIONS)
    writes = [
        run_beside(executor, write, layer, dataset, symbol, day, table)
        for layer, dataset, table in (("silver", SILVER_DATASET, built.silver), ("gold", GOLD_DATASET, built.gold))
    ]
    for written in writes:
        written()
    lo, hi = np.searchsorted(trades.ts_event, [start, end])
    n_day = int(hi - lo)
    result = DayBuild(day, n_day, len(built.frame), built.gold_rows, built.label_mid, warmed)
    log.info(
        "features built",
        extra={"symbol": symbol, "day": day.isoformat(), "trades": n_day, "silver_rows": len(built.frame),
               "gold_rows": built.gold_rows, "label_mid": built.label_mid, "warmed_up": warmed},
    )
    return result


def plan_span(
    lake: FeatureLake,
    symbol: str,
    days: list[dt.date],
    params: FeatureParams | None = None,
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
) -> tuple[FeatureParams, bool]:
    """What every day of a span is built with: the params (fitted on the span's training part unless
    given) and whether the labels use the best bid/ask mid. Checks that every day has bronze trades.

    Done once per span (in the driver when the days run elsewhere): each day's build then only reads.
    """
    have_trades = set(lake.bronze_days("trades", symbol))
    missing = [d for d in days if d not in have_trades]
    if missing:
        raise DataError(f"no bronze trades for {symbol} on {', '.join(d.isoformat() for d in missing)}")
    use_book = book_covers(lake, symbol, days)
    if params is None:
        params = fit_params_from_lake(
            lake, symbol, days[0], days[-1], with_spread=use_book, train_fraction=train_fraction
        )
    elif params.with_spread and not use_book:
        raise ConfigError("the params ask for 'spread' but the span has no complete bookTicker history")
    return params, use_book


def build_span(
    lake: FeatureLake,
    symbol: str,
    start_day: dt.date,
    end_day: dt.date,
    params: FeatureParams | None = None,
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    on_day: Callable[[DayBuild], None] | None = None,
    workers: int = 2,
) -> tuple[FeatureParams, list[DayBuild]]:
    """Build every day of ``[start_day, end_day]``; fit params on the span's training part unless given.

    ``workers``: threads per day (see ``build_day``; two is all a day's build can use); 1 runs every step
    in turn. The output is the same either way.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    days = days_in(start_day, end_day)
    params, use_book = plan_span(lake, symbol, days, params, train_fraction=train_fraction)
    results = []
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(workers)) if workers > 1 else None
        for day in days:
            result = build_day(lake, symbol, day, params, use_book=use_book, executor=executor)
            results.append(result)
            if on_day is not None:
                on_day(result)
    return params, results
