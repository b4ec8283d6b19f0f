"""The lake: bronze (exactly what arrived, plus a typed copy), silver and gold, on any ``ObjectStore``.

Writes are atomic and idempotent. Data files go first, then each touched partition's manifest with one
atomic put; readers trust only manifest-listed files and verify their sha256. Re-appending rows that are
already there writes nothing. One writer per (layer, dataset, symbol) at a time: manifests are
read-modify-written, so two concurrent writers of the same dataset could lose one another's entries.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from btcpipe.domain.arrow_decimal import decimal_to_float
from btcpipe.domain.errors import LakeError, LakeIntegrityError
from btcpipe.domain.time import day_of
from btcpipe.lake import keys
from btcpipe.lake.manifest import (
    FileEntry,
    Manifest,
    RawEntry,
    column_range,
    file_entry,
    parquet_to_table,
    sha256_hex,
    table_to_parquet,
    verify,
)
from btcpipe.lake.objects import ObjectStore, list_dirs, open_store
from btcpipe.lake.schemas import BRONZE_SCHEMAS, ID_COLUMN, SILVER_TRADES

log = logging.getLogger(__name__)

US_PER_HOUR = 3_600_000_000
_READ_THREADS = 4  # parts fetched/decoded at once by read_bronze (IO-bound on S3, CPU-bound locally)
Layer = Literal["silver", "gold"]
# Columns that give silver/gold partitions a time and an id range in their manifests, first match wins.
_TABLE_TIME_COLUMNS = ("ts_sec", "ts_event", "ts", "open_time")


def time_column(kind: str) -> str:
    """The bronze column that partitions ``kind`` (the exchange time of the record)."""
    return "open_time" if kind == "klines" else "ts_event"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote: rows added, and rows already in the lake (skipped)."""

    rows_added: int
    rows_duplicate: int
    partitions: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompactResult:
    """What compaction did: hours merged and the file counts before and after."""

    hours_compacted: int
    files_before: int
    files_after: int


def _ids(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    return np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=np.int64)


def sort_dedup(table: pa.Table, id_column: str) -> tuple[pa.Table, int]:
    """Rows sorted by id with later repeats of an id dropped (the first arrival wins); and how many."""
    if table.num_rows == 0:
        return table, 0
    ids = _ids(table, id_column)
    if not np.all(ids[1:] >= ids[:-1]):
        order = np.argsort(ids, kind="stable")
        table, ids = table.take(pa.array(order)), ids[order]
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    duplicates = int(len(ids) - keep.sum())
    return (table.filter(pa.array(keep)) if duplicates else table), duplicates


def conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table`` with exactly ``schema`` (same names and order; lossless casts only, no null where the
    schema has a REQUIRED column)."""
    if table.column_names != schema.names:
        raise LakeError(f"{what}: columns {table.column_names} differ from the schema's {schema.names}")
    # Checked even when the schemas are equal: Arrow lets a table declared non-nullable hold nulls.
    for required in (f for f in schema if not f.nullable):
        if table[required.name].null_count:
            raise LakeError(f"{what}: {table[required.name].null_count} rows have no {required.name}")
    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LakeError(f"{what}: table does not fit the schema: {exc}") from exc


class Lake:
    """The Parquet lake on an object store: bronze appends, silver/gold partitions, manifests with hashes, reads."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @classmethod
    def open(cls, uri: str, *, endpoint_url: str | None = None) -> Lake:
        return cls(open_store(uri, endpoint_url=endpoint_url))

    def uri(self) -> str:
        return self.store.uri()

    # --- manifests ------------------------------------------------------------------------------------
    def _read_manifest(self, layer: str, dataset: str, symbol: str, day: dt.date) -> Manifest | None:
        key = keys.manifest_key(layer, dataset, symbol, day)
        if not self.store.exists(key):
            return None
        return Manifest.from_bytes(self.store.get(key), self.store.uri(key))

    def _put_manifest(self, manifest: Manifest) -> None:
        key = keys.manifest_key(manifest.layer, manifest.dataset, manifest.symbol, manifest.date)
        self.store.put(key, manifest.to_bytes())

    def _days(self, layer: str, dataset: str, symbol: str) -> list[dt.date]:
        days = []
        for name in list_dirs(self.store, keys.dataset_prefix(layer, dataset, symbol)):
            day = keys.parse_date_dir(name)
            # A date folder without a manifest holds only orphans of a write that never committed.
            if day is not None and self.store.exists(keys.manifest_key(layer, dataset, symbol, day)):
                days.append(day)
        return days

    def put_manifest(self, manifest: Manifest) -> None:
        """Commit ``manifest`` as it is (a repair rewrites one without the parts it took out)."""
        self._put_manifest(manifest)

    def read_file(self, entry: FileEntry, columns: list[str] | None = None) -> pa.Table:
        try:
            data = self.store.get(entry.path)
        except LakeError as exc:
            raise LakeIntegrityError(f"{entry.path} is listed in its manifest but cannot be read: {exc}") from exc
        verify(entry, data)
        table = parquet_to_table(data, entry.path, columns)
        if table.num_rows != entry.rows:
            raise LakeIntegrityError(f"{entry.path}: {table.num_rows} rows, the manifest says {entry.rows}")
        return table

    def manifest(self, kind: str, symbol: str, day: dt.date) -> Manifest | None:
        """The bronze manifest of ``kind``/``symbol`` for ``day`` (``None`` when nothing was committed)."""
        return self._read_manifest("bronze", keys.check_kind(kind), symbol, day)

    def table_manifest(self, layer: str, dataset: str, symbol: str, day: dt.date) -> Manifest | None:
        keys.check_dataset(layer, dataset)
        return self._read_manifest(layer, dataset, symbol, day)

    # --- bronze -------------------------------------------------------------------------------------
    def bronze_days(self, kind: str, symbol: str) -> list[dt.date]:
        return self._days("bronze", keys.check_kind(kind), symbol)

    def bronze_max_id(self, kind: str, symbol: str) -> int | None:
        """The highest id in bronze, from the manifests of the latest days (no data file is read)."""
        for day in reversed(self.bronze_days(kind, symbol)):
            manifest = self.manifest(kind, symbol, day)
            if manifest is not None and manifest.totals.last_id is not None:
                return manifest.totals.last_id
        return None

    def append_bronze(
        self, kind: str, symbol: str, table: pa.Table, *, raw: bytes, raw_format: str, source: str
    ) -> AppendResult:
        """Add the rows of ``table`` not yet in bronze, and keep ``raw`` (the payload they came from)."""
        keys.check_kind(kind)
        keys.check_symbol(symbol)
        keys.check_raw_format(raw_format)
        id_col, ts_col = ID_COLUMN[kind], time_column(kind)
        table = conform(table, BRONZE_SCHEMAS[kind], f"bronze {kind}")
        if table.num_rows == 0:
            return AppendResult(0, 0, [])
        payload_ids = column_range(table, id_col)
        table, duplicates = sort_dedup(table, id_col)

        hours = _ids(table, ts_col) // US_PER_HOUR
        if hours.min() < 0:
            raise LakeError(f"bronze {kind}: {ts_col} before 1970")
        manifests: dict[dt.date, Manifest] = {}
        new_parts: list[tuple[str, bytes, FileEntry, dt.date]] = []
        for hour_index in np.unique(hours):
            start = int(hour_index) * US_PER_HOUR
            day, hour = day_of(start), int(hour_index) % 24
            if day not in manifests:
                manifests[day] = self.manifest(kind, symbol, day) or Manifest(
                    "bronze", kind, symbol, day, id_col, ts_col, BRONZE_SCHEMAS[kind]
                )
            rows = table.filter(pa.array(hours == hour_index))
            rows, already = self._drop_existing(manifests[day], rows, id_col)
            duplicates += already
            if rows.num_rows == 0:
                continue
            data = table_to_parquet(rows)
            sha = sha256_hex(data)
            first, last = column_range(rows, id_col)
            key = keys.bronze_part_key(keys.hour_prefix(kind, symbol, day, hour), first or 0, last or 0, sha)
            new_parts.append((key, data, file_entry(key, data, rows, id_col, ts_col), day))

        if not new_parts:
            return AppendResult(0, duplicates, [])
        raw_entry = self._keep_raw(
            RawEntry("", sha256_hex(raw), len(raw), raw_format, source, table.num_rows + duplicates, *payload_ids),
            raw, beside=new_parts[0][0], manifests=list(manifests.values()),
        )
        for key, data, _, _ in new_parts:
            self.store.put(key, data)
        touched = sorted({day for *_, day in new_parts})
        for day in touched:
            manifest = manifests[day]
            added = [entry for *_, entry, d in new_parts if d == day]
            self._put_manifest(manifest.with_files([*manifest.files, *added]).with_raw(raw_entry))
        rows_added = sum(entry.rows for *_, entry, _ in new_parts)
        partitions = [key.rsplit("/", 1)[0] for key, *_ in new_parts]
        log.info("bronze append", extra={"kind": kind, "symbol": symbol, "rows_added": rows_added,
                                         "rows_duplicate": duplicates, "source": source})
        return AppendResult(rows_added, duplicates, partitions)

    def _drop_existing(self, manifest: Manifest, rows: pa.Table, id_col: str) -> tuple[pa.Table, int]:
        """Remove rows whose id is already in a committed part; only parts whose id range overlaps are read."""
        lo, hi = column_range(rows, id_col)
        overlapping = [f for f in manifest.files if f.first_id is not None and f.last_id is not None
                       and lo is not None and hi is not None and f.first_id <= hi and f.last_id >= lo]
        if not overlapping:
            return rows, 0
        existing = np.concatenate([_ids(self.read_file(f, [id_col]), id_col) for f in overlapping])
        fresh = ~np.isin(_ids(rows, id_col), existing)
        return rows.filter(pa.array(fresh)), int(len(fresh) - fresh.sum())

    def _keep_raw(self, entry: RawEntry, raw: bytes, *, beside: str, manifests: list[Manifest]) -> RawEntry:
        """Store the payload once (next to the part at ``beside``) unless an identical one is already kept."""
        for manifest in manifests:
            for kept in manifest.raw:
                if kept.sha256 == entry.sha256:
                    return kept
        partition = beside.rsplit("/", 1)[0] + "/"
        key = keys.raw_key(partition, entry.first_id or 0, entry.last_id or 0, entry.sha256, entry.format)
        self.store.put(key, raw)
        return replace(entry, path=key)

    def read_bronze(
        self,
        kind: str,
        symbol: str,
        start_us: int | None = None,
        end_us: int | None = None,
        *,
        columns: list[str] | tuple[str, ...] | None = None,
    ) -> pa.Table:
        """Bronze rows with ``start_us <= time < end_us``, sorted by id, without duplicates, hash-verified.

        ``columns`` reads only those columns (in that order; the id and time columns are read for the
        dedup and the time filter whether asked for or not, and kept only if asked for): Parquet decodes
        nothing else, which is most of the cost of a wide table. Parts are fetched, verified and decoded
        on a small thread pool (hashing and Parquet decoding release the GIL).
        """
        keys.check_kind(kind)
        id_col, ts_col = ID_COLUMN[kind], time_column(kind)
        full = BRONZE_SCHEMAS[kind]
        wanted = list(full.names) if columns is None else list(columns)
        unknown = [c for c in wanted if c not in full.names]
        if unknown:
            raise LakeError(f"bronze {kind} has no column(s) {unknown}")
        read_cols = wanted + [c for c in (id_col, ts_col) if c not in wanted]
        schema = pa.schema([full.field(c) for c in read_cols])
        entries: list[FileEntry] = []
        for day in self._days_between(self.bronze_days(kind, symbol), start_us, end_us):
            manifest = self.manifest(kind, symbol, day)
            for entry in manifest.files if manifest else ():
                if start_us is not None and entry.last_ts is not None and entry.last_ts < start_us:
                    continue
                if end_us is not None and entry.first_ts is not None and entry.first_ts >= end_us:
                    continue
                entries.append(entry)
        if not entries:
            return schema.empty_table().select(wanted)

        def read_part(entry: FileEntry) -> pa.Table:
            return conform(self.read_file(entry, read_cols), schema, entry.path)

        if len(entries) == 1:
            parts = [read_part(entries[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(entries))) as pool:
                parts = list(pool.map(read_part, entries))
        table = pa.concat_tables(parts)
        if table.num_rows and (start_us is not None or end_us is not None):
            ts = table[ts_col]
            lo = start_us if start_us is not None else -(2**62)
            hi = end_us if end_us is not None else 2**62
            if pc.min(ts).as_py() < lo or pc.max(ts).as_py() >= hi:  # parts wholly inside need no filter
                table = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        return sort_dedup(table, id_col)[0].combine_chunks().select(wanted)

    @staticmethod
    def _days_between(days: list[dt.date], start_us: int | None, end_us: int | None) -> list[dt.date]:
        first = day_of(start_us) if start_us is not None else dt.date.min
        last = day_of(end_us - 1) if end_us is not None else dt.date.max
        return [d for d in days if first <= d <= last]

    def silver_trades(self, symbol: str, start_us: int | None = None, end_us: int | None = None) -> pa.Table:
        """Raw trades as float64 (``SILVER_TRADES``), converted by the one decimal→float function."""
        bronze = self.read_bronze("trades", symbol, start_us, end_us)
        return pa.table(
            {
                "id": bronze["id"],
                "ts_event": bronze["ts_event"],
                "price": pa.array(decimal_to_float(bronze["price"]), pa.float64()),
                "qty": pa.array(decimal_to_float(bronze["qty"]), pa.float64()),
                "is_buyer_maker": bronze["is_buyer_maker"],
            },
            schema=SILVER_TRADES,
        )

    def compact(self, kind: str, symbol: str, day: dt.date) -> CompactResult:
        """Merge each hour's parts into one: new parts, then the manifest, then delete the old parts."""
        manifest = self.manifest(kind, symbol, day)
        if manifest is None:
            return CompactResult(0, 0, 0)
        id_col, ts_col = ID_COLUMN[kind], time_column(kind)
        by_hour: dict[str, list[FileEntry]] = {}
        for entry in manifest.files:
            by_hour.setdefault(entry.path.rsplit("/", 1)[0], []).append(entry)
        kept: list[FileEntry] = []
        retired: list[FileEntry] = []
        for partition, entries in sorted(by_hour.items()):
            if len(entries) == 1:
                kept.extend(entries)
                continue
            merged = pa.concat_tables([conform(self.read_file(e), BRONZE_SCHEMAS[kind], e.path) for e in entries])
            merged = sort_dedup(merged, id_col)[0].combine_chunks()
            data = table_to_parquet(merged)
            sha = sha256_hex(data)
            first, last = column_range(merged, id_col)
            key = keys.bronze_part_key(partition + "/", first or 0, last or 0, sha)
            self.store.put(key, data)
            kept.append(file_entry(key, data, merged, id_col, ts_col))
            retired.extend(entries)
        if not retired:
            return CompactResult(0, len(manifest.files), len(manifest.files))
        self._put_manifest(manifest.with_files(kept))
        live = {e.path for e in kept}
        for entry in retired:
            if entry.path not in live:
                self.store.delete(entry.path)
        hours = len({e.path.rsplit("/", 1)[0] for e in retired})
        log.info("bronze compact", extra={"kind": kind, "symbol": symbol, "day": day.isoformat(),
                                          "files_before": len(manifest.files), "files_after": len(kept)})
        return CompactResult(hours, len(manifest.files), len(kept))

    # --- silver / gold ------------------------------------------------------------------------------
    def write_table(
        self,
        layer: Layer,
        dataset: str,
        symbol: str,
        day: dt.date,
        table: pa.Table,
        *,
        parquet_options: dict[str, str | bool] | None = None,
    ) -> Manifest:
        """Replace the ``day`` partition of a silver/gold dataset with ``table`` (atomic, with a manifest).

        ``parquet_options``: ``pq.write_table`` keywords over the lake's defaults (``manifest.parquet_options``),
        e.g. no compression."""
        if layer not in ("silver", "gold"):  # bronze is append-only: append_bronze
            raise LakeError(f"write_table writes silver or gold, not {layer!r}")
        keys.check_dataset(layer, dataset)
        keys.check_symbol(symbol)
        old = self._read_manifest(layer, dataset, symbol, day)
        time_col = next((c for c in _TABLE_TIME_COLUMNS if c in table.column_names), None)
        id_col = "id" if "id" in table.column_names else None
        data = table_to_parquet(table, dict(parquet_options) if parquet_options else None)
        key = keys.table_part_key(layer, dataset, symbol, day, sha256_hex(data))
        self.store.put(key, data)
        manifest = Manifest(layer, dataset, symbol, day, id_col, time_col, table.schema).with_files(
            [file_entry(key, data, table, id_col, time_col)]
        )
        self._put_manifest(manifest)
        for entry in old.files if old else ():
            if entry.path != key:
                self.store.delete(entry.path)
        return manifest

    def table_days(self, layer: Layer, dataset: str, symbol: str) -> list[dt.date]:
        keys.check_dataset(layer, dataset)
        return self._days(layer, dataset, symbol)

    def read_table(self, layer: Layer, dataset: str, symbol: str, start_day: dt.date | None = None,
                   end_day: dt.date | None = None) -> pa.Table:
        """The partitions from ``start_day`` to ``end_day`` (both inclusive) in day order, hash-verified.

        An empty range gives an empty table with the dataset's schema (no columns if it has no days)."""
        days = self.table_days(layer, dataset, symbol)
        chosen = [d for d in days if (start_day is None or d >= start_day) and (end_day is None or d <= end_day)]
        tables: list[pa.Table] = []
        schema: pa.Schema | None = None
        for day in chosen or days[:1]:
            manifest = self._read_manifest(layer, dataset, symbol, day)
            if manifest is None:
                continue
            schema = schema or manifest.schema
            if chosen:
                tables.extend(self.read_file(entry) for entry in manifest.files)
        if not tables:
            return schema.empty_table() if schema is not None else pa.table({})
        try:
            # "default" merges nullability only: days written before the feature columns became REQUIRED
            # read together with newer days; a column of another type is still refused.
            return pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LakeError(f"{layer}/{dataset}/{symbol}: partitions have different schemas: {exc}") from exc


