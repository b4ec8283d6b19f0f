"""The gold predictions archive: every prediction with its realized return, as Parquet in the lake.

Dataset ``gold/predictions_1s/symbol=S/date=D`` (one partition per UTC day of ``ts_sec``). Rows arrive
from the shadow evaluator once their outcome is known (or given up on) and are written in batches
(``flush_every_s``). The archive is the only writer of its partitions, so it keeps the day it is
writing in memory and replaces the partition with ``Lake.write_table`` (atomic, manifest last): one put
per flush, and a restart picks up the day already written. A second written twice (a restarted
service predicting it again) keeps the newest row.

A failed write keeps the rows buffered and retries on the next flush; nothing is dropped silently: if
the buffer passes ``max_buffered`` rows, the oldest are dropped, counted in ``dropped`` and logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import US_PER_SEC, Clock, day_of
from btcpipe.lake.lake import Lake
from btcpipe.services.infer.shadow import ShadowRow

log = logging.getLogger(__name__)

DATASET = "predictions_1s"

PREDICTIONS_SCHEMA = pa.schema([
    pa.field("ts_sec", pa.int64(), nullable=False),
    pa.field("yhat", pa.float64()),
    pa.field("latency_ms", pa.float64()),
    pa.field("model_version", pa.string()),
    pa.field("uncertainty", pa.float64()),
    pa.field("feature_age_ms", pa.float64()),
    pa.field("ts_pred", pa.int64()),
    pa.field("source", pa.string()),
    pa.field("published", pa.bool_()),
    pa.field("realized", pa.float64()),
    pa.field("abs_error", pa.float64()),
    pa.field("rolling_mae", pa.float64()),
    pa.field("rolling_hit_rate", pa.float64()),
])


def rows_to_table(rows: list[ShadowRow]) -> pa.Table:
    p = [r.prediction for r in rows]
    return pa.table({
        "ts_sec": pa.array([x.ts_sec for x in p], pa.int64()),
        "yhat": pa.array([x.yhat for x in p], pa.float64()),
        "latency_ms": pa.array([x.latency_ms for x in p], pa.float64()),
        "model_version": pa.array([x.model_version for x in p], pa.string()),
        "uncertainty": pa.array([x.uncertainty for x in p], pa.float64()),
        "feature_age_ms": pa.array([x.feature_age_ms for x in p], pa.float64()),
        "ts_pred": pa.array([x.ts_pred for x in p], pa.int64()),
        "source": pa.array([r.source for r in rows], pa.string()),
        "published": pa.array([r.published for r in rows], pa.bool_()),
        "realized": pa.array([r.realized for r in rows], pa.float64()),
        "abs_error": pa.array([r.abs_error for r in rows], pa.float64()),
        "rolling_mae": pa.array([r.rolling_mae for r in rows], pa.float64()),
        "rolling_hit_rate": pa.array([r.rolling_hit_rate for r in rows], pa.float64()),
    }, schema=PREDICTIONS_SCHEMA)


def _newest_per_second(table: pa.Table) -> pa.Table:
    """Sort by ts_sec and keep the last row written for each second."""
    ts = table.column("ts_sec").to_numpy()
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    keep = np.ones(sorted_ts.shape[0], dtype=np.bool_)
    keep[:-1] = sorted_ts[1:] != sorted_ts[:-1]
    return table.take(pa.array(order[keep]))


class PredictionArchive:
    """Buffers predictions and writes them to the lake's gold predictions, flushed by time and size."""

    def __init__(self, lake: Lake, clock: Clock, *, flush_every_s: float = 60.0, max_buffered: int = 1_000_000) -> None:
        self.lake = lake
        self.clock = clock
        self.flush_every_us = int(flush_every_s * US_PER_SEC)
        self.max_buffered = max_buffered
        self._buffer: list[tuple[str, ShadowRow]] = []
        self._days: dict[tuple[str, dt.date], pa.Table] = {}
        self._last_flush = clock.now_us()
        self.written = 0
        self.dropped = 0
        self.failed_flushes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, rows: Iterable[ShadowRow]) -> None:
        self._buffer.extend((r.prediction.symbol, r) for r in rows)
        over = len(self._buffer) - self.max_buffered
        if over > 0:
            del self._buffer[:over]
            self.dropped += over
            log.error("prediction archive buffer full; dropped the oldest rows",
                      extra={"dropped": over, "dropped_total": self.dropped})

    def maybe_flush(self) -> int:
        """Flush when ``flush_every_s`` has passed since the last flush; returns rows written."""
        if self.clock.now_us() - self._last_flush < self.flush_every_us:
            return 0
        return self.flush()

    def flush(self) -> int:
        """Write every buffered row now; on a lake error keep them for the next try (and return 0)."""
        self._last_flush = self.clock.now_us()
        if not self._buffer:
            return 0
        groups: dict[tuple[str, dt.date], list[ShadowRow]] = {}
        for symbol, row in self._buffer:
            groups.setdefault((symbol, day_of(row.prediction.ts_sec)), []).append(row)
        written = 0
        failed: list[tuple[str, ShadowRow]] = []
        for (symbol, day), rows in sorted(groups.items()):
            try:
                self._write_day(symbol, day, rows)
                written += len(rows)
            except BtcpipeError as exc:
                failed.extend((symbol, r) for r in rows)
                self.failed_flushes += 1
                log.error("writing predictions to the lake failed; keeping them for the next flush",
                          extra={"symbol": symbol, "day": day.isoformat(), "rows": len(rows), "error": str(exc)})
        self._buffer = failed
        self.written += written
        return written

    def _write_day(self, symbol: str, day: dt.date, rows: list[ShadowRow]) -> None:
        key = (symbol, day)
        current = self._days.get(key)
        if current is None:
            current = self._existing(symbol, day)
        table = _newest_per_second(pa.concat_tables([current, rows_to_table(rows)]))
        self.lake.write_table("gold", DATASET, symbol, day, table)
        # Only the partitions still being written stay in memory: today's and, around midnight, yesterday's.
        for old in [k for k in self._days if k[0] == symbol and k[1] < day - dt.timedelta(days=1)]:
            del self._days[old]
        self._days[key] = table

    def _existing(self, symbol: str, day: dt.date) -> pa.Table:
        if day not in self.lake.table_days("gold", DATASET, symbol):
            return PREDICTIONS_SCHEMA.empty_table()
        table = self.lake.read_table("gold", DATASET, symbol, day, day)
        return table.select(PREDICTIONS_SCHEMA.names).cast(PREDICTIONS_SCHEMA)


def read_predictions(lake: Lake, symbol: str, start_day: dt.date | None = None,
                     end_day: dt.date | None = None) -> pa.Table:
    """The archived predictions of ``symbol`` (days inclusive), sorted by ``ts_sec``."""
    table = lake.read_table("gold", DATASET, symbol, start_day, end_day)
    if table.num_columns == 0:
        return PREDICTIONS_SCHEMA.empty_table()
    return table.sort_by("ts_sec") if table.num_rows else table

