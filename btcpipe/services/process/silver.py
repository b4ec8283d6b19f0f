"""Live feature rows appended to the lake's silver layer, batched: ``silver/features_1s_live/…``.

The lake writes a silver day partition whole and atomically (``Lake.write_table``), so appending means
rewriting the day. The sink keeps the current day's rows in memory (a day is 86 400 rows) and rewrites
the partition every ``flush_rows`` new rows of a symbol (60 by default: about once a minute live) and on
``flush()``. After a restart the first write of a day merges the rows already in the lake, a later row
for the same second replacing the earlier one, so a restarted processor never loses what was written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from btcpipe.domain.errors import LakeError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import day_of
from btcpipe.features.batch import FeatureFrame
from btcpipe.features.spec import FeatureParams
from btcpipe.features.tables import feature_table, frame_from_table
from btcpipe.lake.lake import Lake

log = logging.getLogger(__name__)

LIVE_SILVER_DATASET = "features_1s_live"


@dataclass(slots=True)
class _Day:
    rows: dict[int, tuple[float, ...]]
    merged: bool = False  # rows already in the lake were read in
    pending: int = 0  # rows added since the last write


class LiveSilverSink:
    """Writes the processor's rows to the lake's live silver in batches."""

    def __init__(
        self, lake: Lake, params: FeatureParams, *, dataset: str = LIVE_SILVER_DATASET, flush_rows: int = 60
    ) -> None:
        if flush_rows < 1:
            raise LakeError(f"flush_rows must be >= 1, got {flush_rows}")
        self.lake = lake
        self.params = params
        self.dataset = dataset
        self.flush_rows = flush_rows
        self._days: dict[tuple[str, dt.date], _Day] = {}
        self.rows_written = 0
        self.writes = 0

    def add(self, vectors: Sequence[FeatureVector1s]) -> None:
        """Buffer rows; writes the partitions that reached ``flush_rows`` new rows."""
        for v in vectors:
            key = (v.symbol, day_of(v.ts_sec))
            day = self._days.get(key)
            if day is None:
                day = self._days[key] = _Day({})
            day.rows[v.ts_sec] = v.values
            day.pending += 1
        for key, day in list(self._days.items()):
            if day.pending >= self.flush_rows:
                self._write(key, day)

    def flush(self) -> None:
        """Write every partition with unwritten rows, then forget days older than each symbol's newest."""
        for key, day in list(self._days.items()):
            if day.pending:
                self._write(key, day)
        newest: dict[str, dt.date] = {}
        for symbol, d in self._days:
            newest[symbol] = max(newest.get(symbol, d), d)
        for key in [k for k in self._days if k[1] != newest[k[0]]]:
            del self._days[key]

    def _write(self, key: tuple[str, dt.date], day: _Day) -> None:
        symbol, date = key
        if not day.merged:
            existing = self.lake.read_table("silver", self.dataset, symbol, date, date)
            if existing.num_rows:
                frame = frame_from_table(existing)
                for i, ts in enumerate(frame.ts_sec.tolist()):
                    day.rows.setdefault(int(ts), tuple(frame.columns[:, i].tolist()))
            day.merged = True
        ts_sorted = sorted(day.rows)
        columns = np.array([day.rows[t] for t in ts_sorted], dtype=np.float64).T.reshape(
            len(self.params.names), len(ts_sorted)
        )
        frame = FeatureFrame(np.array(ts_sorted, dtype=np.int64), columns, self.params.names)
        self.lake.write_table("silver", self.dataset, symbol, date, feature_table(frame, self.params, symbol))
        self.rows_written += day.pending
        self.writes += 1
        log.debug("live silver written", extra={"symbol": symbol, "day": str(date), "rows": len(ts_sorted)})
        day.pending = 0
