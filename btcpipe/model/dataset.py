"""Labeled rows for training and evaluation, and the contiguous time split with a purge gap.

A gold table is one row per second: ``ts_sec`` (int64 µs), the feature columns (float64) in schema order,
and the label ``y`` (float64). Rows whose features or label are NaN (the warm-up at the start, the tail
without a label) cannot be learned from; they are dropped and counted, never silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.time import US_PER_SEC

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

LABEL_HORIZON_US = 10 * US_PER_SEC
LABEL_COLUMN = "y"
TS_COLUMN = "ts_sec"


@dataclass(frozen=True, slots=True)
class LabeledRows:
    """Rows in time order: ``features[i]`` describes the second before ``ts_sec[i]``, ``y[i]`` its label."""

    ts_sec: I64
    features: F64  # [N, F], columns in ``feature_names`` order
    y: F64
    feature_names: tuple[str, ...]
    label_mid: str = "unknown"  # which mid the label used: best bid/ask or the last-trade proxy

    def __post_init__(self) -> None:
        n = self.ts_sec.shape[0]
        if self.features.ndim != 2 or self.features.shape != (n, len(self.feature_names)):
            raise DataError(
                f"features shape {self.features.shape} does not match {n} rows × {len(self.feature_names)} names"
            )
        if self.y.shape != (n,):
            raise DataError(f"label shape {self.y.shape} does not match {n} rows")
        if n > 1 and not bool(np.all(np.diff(self.ts_sec) > 0)):
            raise DataError("ts_sec must be strictly increasing (one row per second, in time order)")

    def __len__(self) -> int:
        return int(self.ts_sec.shape[0])

    def take(self, index: slice | npt.NDArray[Any]) -> LabeledRows:
        return LabeledRows(
            ts_sec=self.ts_sec[index],
            features=self.features[index],
            y=self.y[index],
            feature_names=self.feature_names,
            label_mid=self.label_mid,
        )

    def column(self, name: str) -> F64:
        try:
            return self.features[:, self.feature_names.index(name)]
        except ValueError as exc:
            raise DataError(f"no feature column {name!r}") from exc

    @property
    def span_us(self) -> tuple[int, int]:
        """First and last ``ts_sec`` (0, 0 when empty)."""
        if len(self) == 0:
            return (0, 0)
        return (int(self.ts_sec[0]), int(self.ts_sec[-1]))


def rows_from_columns(
    columns: dict[str, npt.NDArray[Any]], feature_names: Sequence[str], *, label_mid: str = "unknown"
) -> LabeledRows:
    """Build rows from named columns (a gold table's ``to_pydict``/numpy view), checking every name exists."""
    missing = [c for c in (TS_COLUMN, LABEL_COLUMN, *feature_names) if c not in columns]
    if missing:
        raise DataError(f"gold table lacks columns {missing}")
    ts = np.asarray(columns[TS_COLUMN], dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    features = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in feature_names])
    if features.size == 0:
        features = features.reshape(len(ts), len(feature_names))
    return LabeledRows(
        ts_sec=ts[order],
        features=features[order],
        y=np.asarray(columns[LABEL_COLUMN], dtype=np.float64)[order],
        feature_names=tuple(feature_names),
        label_mid=label_mid,
    )


def drop_incomplete(rows: LabeledRows) -> tuple[LabeledRows, int]:
    """Drop rows with a NaN/inf feature or label; return the kept rows and how many were dropped."""
    ok = np.isfinite(rows.y) & np.all(np.isfinite(rows.features), axis=1)
    dropped = int(len(rows) - int(ok.sum()))
    if dropped:
        log.info("dropped incomplete rows", extra={"count": dropped, "rows": len(rows)})
    return rows.take(ok), dropped


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """A contiguous train / validation / test split with purge gaps of at least the label horizon."""

    train: LabeledRows
    val: LabeledRows
    test: LabeledRows
    purge_us: int
    purged_rows: int  # rows dropped inside the two purge gaps

    def describe(self) -> dict[str, Any]:
        return {
            "purge_us": self.purge_us,
            "purged_rows": self.purged_rows,
            **{
                part: {"rows": len(rows), "first_ts": rows.span_us[0], "last_ts": rows.span_us[1]}
                for part, rows in (("train", self.train), ("val", self.val), ("test", self.test))
            },
        }


def split_by_time(
    rows: LabeledRows,
    *,
    train_fraction: float = 0.70,
    val_fraction: float = 0.15,
    purge_us: int = 2 * LABEL_HORIZON_US,
    horizon_us: int = LABEL_HORIZON_US,
) -> TimeSplit:
    """Contiguous train | gap | val | gap | test, cut by row position, gaps measured in time.

    A train label at t reads the mid up to t + horizon, so the next part may only begin once more than
    the horizon has passed: every row of val (test) is stamped at least ``purge_us`` after the last
    train (val) row, and ``purge_us`` must exceed the horizon.
    """
    if purge_us <= horizon_us:
        raise ConfigError(f"purge gap {purge_us} µs must exceed the label horizon {horizon_us} µs")
    if not (0 < train_fraction < 1 and 0 < val_fraction < 1 and train_fraction + val_fraction < 1):
        raise ConfigError(f"bad split fractions train={train_fraction} val={val_fraction}")
    n = len(rows)
    train_end = int(n * train_fraction)
    val_end = int(n * (train_fraction + val_fraction))
    train = rows.take(slice(0, train_end))
    if len(train) == 0:
        raise DataError(f"not enough rows to split: {n} rows give an empty training part")
    val_start = _first_after(rows.ts_sec, train_end, train.span_us[1] + purge_us)
    val = rows.take(slice(val_start, max(val_start, val_end)))
    if len(val) == 0:
        raise DataError(f"not enough rows to split: {n} rows leave no validation rows after the purge gap")
    test_start = _first_after(rows.ts_sec, max(val_end, val_start), val.span_us[1] + purge_us)
    test = rows.take(slice(test_start, n))
    if len(test) == 0:
        raise DataError(f"not enough rows to split: {n} rows leave no test rows after the purge gap")
    purged = (val_start - train_end) + (test_start - max(val_end, val_start))
    return TimeSplit(train=train, val=val, test=test, purge_us=purge_us, purged_rows=purged)


def _first_after(ts: I64, start: int, floor_us: int) -> int:
    """Index of the first row at or after ``start`` whose timestamp is ≥ ``floor_us``."""
    return start + int(np.searchsorted(ts[start:], floor_us, side="left"))


def split_from_description(rows: LabeledRows, description: Mapping[str, Any]) -> TimeSplit:
    """Rebuild a split recorded by ``TimeSplit.describe`` (e.g. in a model's manifest) on the same rows."""
    parts: dict[str, LabeledRows] = {}
    try:
        for part in ("train", "val", "test"):
            first, last = int(description[part]["first_ts"]), int(description[part]["last_ts"])
            parts[part] = rows.take((rows.ts_sec >= first) & (rows.ts_sec <= last))
            expected = int(description[part]["rows"])
            if len(parts[part]) != expected:
                raise DataError(
                    f"the {part} span now holds {len(parts[part])} complete rows, the model saw {expected}: "
                    "the gold data changed since training"
                )
        purge_us = int(description["purge_us"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed split description: {exc}") from exc
    return TimeSplit(parts["train"], parts["val"], parts["test"], purge_us, int(description.get("purged_rows", 0)))
