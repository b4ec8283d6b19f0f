"""Completeness report of a bronze dataset, per day: id gaps, duplicates, seconds with data, time order, and
whether every file matches its manifest.

Gaps are judged in the id space of the kind: trades and aggTrades ids are contiguous, depth diffs chain
(``first_update_id`` = previous ``last_update_id`` + 1), klines follow each other by their interval.
bookTicker update ids are shared by every symbol, so they have no gaps to find. Binance's own archives miss
a few ids; such gaps are *known* when a known-gaps file (JSON or TOML, or ``lake/known_gaps.json`` in the
lake) covers them, and then they do not fail the check.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from btcpipe.domain.errors import ConfigError, LakeError, LakeIntegrityError
from btcpipe.domain.time import US_PER_DAY, US_PER_SEC, day_of, day_start_us
from btcpipe.lake import keys
from btcpipe.lake.lake import Lake, time_column
from btcpipe.lake.manifest import MANIFEST_NAME, Manifest, verify
from btcpipe.lake.schemas import ID_COLUMN

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class KnownGap:
    """A trade-id gap the exchange itself has (ids it never issued), so the check does not report it."""

    first_id: int
    last_id: int
    symbol: str | None = None
    kind: str | None = None
    note: str = ""

    def covers(self, symbol: str, kind: str, first: int, last: int) -> bool:
        return (self.symbol in (None, symbol) and self.kind in (None, kind)
                and self.first_id <= first and last <= self.last_id)


@dataclass(frozen=True, slots=True)
class IdGap:
    """Ids ``first_missing..last_missing`` (inclusive) are absent between two present records."""

    first_missing: int
    last_missing: int
    missing: int
    after_ts: int
    before_ts: int
    known: bool


@dataclass(slots=True)
class DayReport:
    """The check's findings for one day: rows, id gaps, duplicates, order and manifest problems."""

    day: dt.date
    rows: int = 0
    files: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_ts: int | None = None
    last_ts: int | None = None
    gaps: list[IdGap] = field(default_factory=list)
    duplicates: int = 0
    seconds_with_data: int = 0
    seconds_in_window: int = 0
    out_of_order: int = 0
    first_out_of_order_id: int | None = None
    integrity_errors: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.seconds_with_data / self.seconds_in_window if self.seconds_in_window else 0.0

    @property
    def span_coverage(self) -> float:
        """Share of seconds with data between the day's first and last record (ignores a late start)."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return self.seconds_with_data / (self.last_ts // US_PER_SEC - self.first_ts // US_PER_SEC + 1)

    @property
    def unknown_gaps(self) -> list[IdGap]:
        return [g for g in self.gaps if not g.known]

    @property
    def ok(self) -> bool:
        return not (self.unknown_gaps or self.duplicates or self.out_of_order or self.integrity_errors)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        out.update(coverage=round(self.coverage, 6), span_coverage=round(self.span_coverage, 6), ok=self.ok,
                   missing_ids=sum(g.missing for g in self.gaps),
                   unknown_missing_ids=sum(g.missing for g in self.unknown_gaps))
        return out


@dataclass(slots=True)
class CheckReport:
    """The lake check over a span: a report per day and whether the whole span passes."""

    lake: str
    kind: str
    symbol: str
    days: list[DayReport]

    @property
    def has_data(self) -> bool:
        return any(d.rows for d in self.days)

    @property
    def integrity_ok(self) -> bool:
        return not any(d.integrity_errors for d in self.days)

    @property
    def ok(self) -> bool:
        return self.has_data and all(d.ok for d in self.days)

    def to_dict(self) -> dict[str, Any]:
        return {"lake": self.lake, "kind": self.kind, "symbol": self.symbol, "ok": self.ok,
                "has_data": self.has_data, "integrity_ok": self.integrity_ok,
                "days": [d.to_dict() for d in self.days]}


# --- known gaps -------------------------------------------------------------------------------------
def parse_known_gaps(data: bytes, where: str) -> list[KnownGap]:
    """``{"gaps": [{"first_id", "last_id", "symbol"?, "kind"?, "note"?}, ...]}`` as JSON, or as TOML
    (``[[gaps]]`` tables) when ``where`` ends with ``.toml``; a bare JSON list is accepted too."""
    try:
        doc: Any = tomllib.loads(data.decode()) if where.endswith(".toml") else orjson.loads(data)
        items = doc if isinstance(doc, list) else doc.get("gaps", [])
        gaps = []
        for item in items:
            gap = KnownGap(int(item["first_id"]), int(item["last_id"]), item.get("symbol"), item.get("kind"),
                           str(item.get("note", "")))
            if gap.last_id < gap.first_id:
                raise LakeError(f"last_id {gap.last_id} < first_id {gap.first_id}")
            gaps.append(gap)
        return gaps
    except (ValueError, KeyError, TypeError, AttributeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"malformed known-gaps file {where}: {exc}") from exc


def lake_known_gaps(lake: Lake) -> list[KnownGap]:
    if not lake.store.exists(keys.KNOWN_GAPS_KEY):
        return []
    return parse_known_gaps(lake.store.get(keys.KNOWN_GAPS_KEY), lake.store.uri(keys.KNOWN_GAPS_KEY))


# --- the check --------------------------------------------------------------------------------------
def _column(table: pa.Table, name: str) -> I64:
    return np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=np.int64)


def _verify_day(lake: Lake, manifest: Manifest, report: DayReport, columns: list[str]) -> list[pa.Table]:
    """Read ``columns`` of every listed file (the whole file is hashed), recording, not raising, what
    contradicts the manifest."""
    id_col, ts_col = columns[0], columns[1]
    tables = []
    for entry in manifest.files:
        try:
            table = lake.read_file(entry, columns)
        except LakeIntegrityError as exc:
            report.integrity_errors.append(str(exc))
            continue
        ids, ts = _column(table, id_col), _column(table, ts_col)
        if table.num_rows and (int(ids.min()), int(ids.max()), int(ts.min()), int(ts.max())) != (
            entry.first_id, entry.last_id, entry.first_ts, entry.last_ts
        ):
            report.integrity_errors.append(f"{entry.path}: id/time range differs from the manifest")
        tables.append(table)
    for raw in manifest.raw:
        try:
            verify(raw, lake.store.get(raw.path))
        except LakeError as exc:
            report.integrity_errors.append(f"raw payload: {exc}")
    recomputed = manifest.with_files(manifest.files).totals
    if recomputed != manifest.totals:
        report.integrity_errors.append(f"manifest totals {manifest.totals} differ from its files' {recomputed}")
    prefix = keys.date_prefix("bronze", manifest.dataset, manifest.symbol, manifest.date)
    listed = {f.path for f in manifest.files} | {r.path for r in manifest.raw} | {prefix + MANIFEST_NAME}
    report.orphans = [k for k in lake.store.list(prefix) if k not in listed]
    return tables


_EXTRA_COLUMN = {"depth": "first_update_id", "klines": "close_time"}


def _gaps(kind: str, ids: I64, extra: I64) -> tuple[I64, I64, I64, I64]:
    """Breaks in the id chain of records sorted by id without repeats: (index of the record before each
    break, first missing id, last missing id, how many are missing). ``extra`` is the depth diffs'
    ``first_update_id`` or the klines' ``close_time``."""
    empty = np.zeros(0, dtype=np.int64)
    if len(ids) < 2:
        return empty, empty, empty, empty
    if kind in ("trades", "aggTrades"):
        step = np.diff(ids)
        at = np.flatnonzero(step > 1)
        return at, ids[at] + 1, ids[at + 1] - 1, step[at] - 1
    if kind == "depth":
        at = np.flatnonzero(extra[1:] > ids[:-1] + 1)
        return at, ids[at] + 1, extra[at + 1] - 1, extra[at + 1] - ids[at] - 1
    if kind == "klines":
        # close_time is the interval's last ms (or µs): the interval is that plus one, rounded up to a second.
        interval = int(np.median(extra - ids)) + 1
        interval = -(-interval // US_PER_SEC) * US_PER_SEC
        step = np.diff(ids)
        at = np.flatnonzero(step > interval)
        return at, ids[at] + interval, ids[at + 1] - interval, step[at] // interval - 1
    return empty, empty, empty, empty


def check_lake(lake: Lake, kind: str, symbol: str, start_us: int | None = None, end_us: int | None = None, *,
               known_gaps: list[KnownGap] | None = None) -> CheckReport:
    """Check bronze ``kind``/``symbol`` day by day over ``[start_us, end_us)`` (all days when omitted)."""
    keys.check_kind(kind)
    id_col, ts_col = ID_COLUMN[kind], time_column(kind)
    extra_col = _EXTRA_COLUMN.get(kind, id_col)
    known = [*(known_gaps or []), *lake_known_gaps(lake)]
    first_day = dt.date.min if start_us is None else day_of(start_us)
    last_day = dt.date.max if end_us is None else day_of(end_us - 1)
    reports: list[DayReport] = []
    previous: tuple[I64, I64, I64] | None = None  # the previous day's last record: id, ts, extra
    for day in (d for d in lake.bronze_days(kind, symbol) if first_day <= d <= last_day):
        manifest = lake.manifest(kind, symbol, day)
        report = DayReport(day)
        reports.append(report)
        if manifest is None:
            continue
        report.files = len(manifest.files)
        tables = _verify_day(lake, manifest, report, list(dict.fromkeys([id_col, ts_col, extra_col])))
        lo = max(day_start_us(day), start_us if start_us is not None else -(2**62))
        hi = min(day_start_us(day) + US_PER_DAY, end_us if end_us is not None else 2**62)
        report.seconds_in_window = int(-(-(hi - lo) // US_PER_SEC))
        if not tables:
            continue
        table = pa.concat_tables(tables)
        ts_all = _column(table, ts_col)
        table = table.filter(pa.array((ts_all >= lo) & (ts_all < hi)))
        order = np.argsort(_column(table, id_col), kind="stable")
        ids, ts, extra = (_column(table, c)[order] for c in (id_col, ts_col, extra_col))
        if len(ids) == 0:
            continue
        report.rows, report.duplicates = len(ids), int(np.count_nonzero(ids[1:] == ids[:-1]))
        report.first_id, report.last_id = int(ids[0]), int(ids[-1])
        report.first_ts, report.last_ts = int(ts.min()), int(ts.max())
        seconds = np.sort(ts // US_PER_SEC)  # nearly sorted already: cheaper than a hash-based unique
        report.seconds_with_data = int(np.count_nonzero(seconds[1:] != seconds[:-1])) + 1
        backwards = np.flatnonzero(ts[1:] < ts[:-1])
        report.out_of_order = len(backwards)
        report.first_out_of_order_id = int(ids[backwards[0] + 1]) if len(backwards) else None
        # Chain onto the previous day's last record so that a gap across midnight is seen too.
        chain = [ids, ts, extra] if previous is None else [np.concatenate([p, a]) for p, a in
                                                           zip(previous, (ids, ts, extra), strict=True)]
        unique = np.concatenate([[True], chain[0][1:] != chain[0][:-1]])
        c_ids, c_ts, c_extra = (a[unique] for a in chain)
        at, firsts, lasts, missing = _gaps(kind, c_ids, c_extra)
        for i, first, last, count in zip(at.tolist(), firsts.tolist(), lasts.tolist(), missing.tolist(),
                                         strict=True):
            report.gaps.append(IdGap(first, last, count, int(c_ts[i]), int(c_ts[i + 1]),
                                     any(k.covers(symbol, kind, first, last) for k in known)))
        previous = (ids[-1:], ts[-1:], extra[-1:])
    return CheckReport(lake.uri(), kind, symbol, reports)
