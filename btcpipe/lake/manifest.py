"""The manifest of one lake partition (one dataset, symbol and date) and the Parquet/bytes helpers around it.

A manifest is the partition's table of contents. Readers trust only the files it lists, and it is
replaced with one atomic put after the files it names have been written; so a crash in between leaves an
unlisted (orphan) file that nobody reads, never a half-visible write. Every file carries its sha256, row
count and id/time range, so a reader can verify what it reads and skip what it does not need.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from btcpipe.domain.errors import LakeError, LakeIntegrityError

MANIFEST_FORMAT = "btcpipe.manifest/1"
MANIFEST_NAME = "_manifest.json"
RAW_FORMATS = ("json", "jsonl", "csv")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A typed Parquet part. ``path`` is the key from the lake root; ids/times are ``None`` when the table
    has no such column or no rows."""

    path: str
    sha256: str
    rows: int
    bytes: int
    first_id: int | None = None
    last_id: int | None = None
    first_ts: int | None = None
    last_ts: int | None = None


@dataclass(frozen=True, slots=True)
class RawEntry:
    """The payload exactly as it arrived (REST JSON body, dump CSV rows, stream JSON lines)."""

    path: str
    sha256: str
    bytes: int
    format: str
    source: str
    rows: int
    first_id: int | None = None
    last_id: int | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    """Row and file counts of a dataset's partitions."""

    rows: int = 0
    files: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_ts: int | None = None
    last_ts: int | None = None


def _min(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A dataset's manifest: every part with its rows, id/time range and sha256."""

    layer: str
    dataset: str
    symbol: str
    date: dt.date
    id_column: str | None
    time_column: str | None
    schema: pa.Schema | None = None
    files: tuple[FileEntry, ...] = ()
    raw: tuple[RawEntry, ...] = ()
    totals: Totals = field(default_factory=Totals)

    def with_files(self, files: list[FileEntry] | tuple[FileEntry, ...]) -> Manifest:
        """A copy listing ``files`` (sorted by id, then path) with totals recomputed."""
        ordered = tuple(sorted(files, key=lambda f: (f.first_id if f.first_id is not None else -1, f.path)))
        totals = Totals(
            rows=sum(f.rows for f in ordered),
            files=len(ordered),
            first_id=_min([f.first_id for f in ordered]),
            last_id=_max([f.last_id for f in ordered]),
            first_ts=_min([f.first_ts for f in ordered]),
            last_ts=_max([f.last_ts for f in ordered]),
        )
        return replace(self, files=ordered, totals=totals)

    def with_raw(self, entry: RawEntry) -> Manifest:
        if any(r.path == entry.path for r in self.raw):
            return self
        return replace(self, raw=(*self.raw, entry))

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "layer": self.layer,
            "dataset": self.dataset,
            "symbol": self.symbol,
            "date": self.date.isoformat(),
            "id_column": self.id_column,
            "time_column": self.time_column,
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode() if self.schema else None,
            "totals": self.totals,
            "files": self.files,
            "raw": self.raw,
        }
        # orjson serialises the (slotted) dataclasses itself, far faster than dataclasses.asdict.
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            doc = orjson.loads(data)
            if doc.get("format") != MANIFEST_FORMAT:
                raise LakeError(f"format is {doc.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            schema = doc.get("schema")
            return cls(
                layer=str(doc["layer"]),
                dataset=str(doc["dataset"]),
                symbol=str(doc["symbol"]),
                date=dt.date.fromisoformat(doc["date"]),
                id_column=doc["id_column"],
                time_column=doc["time_column"],
                schema=pa.ipc.read_schema(pa.py_buffer(base64.b64decode(schema))) if schema else None,
                files=tuple(FileEntry(**f) for f in doc["files"]),
                raw=tuple(RawEntry(**r) for r in doc["raw"]),
                totals=Totals(**doc["totals"]),
            )
        except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise LakeIntegrityError(f"malformed manifest {where}: {exc}") from exc


# --- Parquet parts ------------------------------------------------------------------------------------
# Ids and times rise row by row: delta encoding stores them in a few bits each and decodes several times faster than
# dictionary or plain pages (a simulated day's five feature columns: 95 ms → 29 ms, file 48 → 26 MB with zstd).
_DELTA_COLUMNS = frozenset(
    {
        "id",
        "agg_id",
        "first_trade_id",
        "last_trade_id",
        "update_id",
        "first_update_id",
        "last_update_id",
        "ts_event",
        "ts_recv",
        "open_time",
        "close_time",
        "ts_sec",
    }
)


def parquet_options(table: pa.Table, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``pq.write_table`` keywords for ``table``: the lake's defaults, then ``options`` over them.

    zstd with statistics; id and time columns delta-encoded, the others dictionary-encoded; decimals that fit
    64 bits stored as INT64 (still logical DECIMAL for every reader), ~3x faster to decode than 9-byte decimals.
    """
    delta = [f.name for f in table.schema if f.name in _DELTA_COLUMNS and pa.types.is_integer(f.type)]
    out: dict[str, Any] = {"compression": "zstd", "write_statistics": True, "store_decimal_as_integer": True}
    if delta:
        out["use_dictionary"] = [n for n in table.column_names if n not in delta]
        out["column_encoding"] = dict.fromkeys(delta, "DELTA_BINARY_PACKED")
    out.update(options or {})
    if out.get("use_dictionary") is True:  # a caller asking for dictionaries everywhere gets exactly that
        out.pop("column_encoding", None)
    return out


def table_to_parquet(table: pa.Table, options: dict[str, Any] | None = None) -> bytes:
    """Parquet bytes of ``table`` with ``parquet_options`` (``options``: ``pq.write_table`` keywords over them)."""
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table, sink, **parquet_options(table, options))
    except pa.ArrowException as exc:
        raise LakeError(f"cannot encode a Parquet part: {exc}") from exc
    return bytes(sink.getvalue().to_pybytes())


def parquet_to_table(data: bytes, where: str, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except pa.ArrowException as exc:
        raise LakeIntegrityError(f"unreadable Parquet part {where}: {exc}") from exc


def column_range(table: pa.Table, column: str | None) -> tuple[int | None, int | None]:
    if column is None or column not in table.column_names or table.num_rows == 0:
        return None, None
    values = np.asarray(table[column].to_numpy(zero_copy_only=False))
    return int(values.min()), int(values.max())


def file_entry(path: str, data: bytes, table: pa.Table, id_column: str | None, time_column: str | None) -> FileEntry:
    first_id, last_id = column_range(table, id_column)
    first_ts, last_ts = column_range(table, time_column)
    return FileEntry(path, sha256_hex(data), table.num_rows, len(data), first_id, last_id, first_ts, last_ts)


def verify(entry: FileEntry | RawEntry, data: bytes) -> None:
    """``LakeIntegrityError`` unless ``data`` is exactly what the manifest recorded."""
    digest = sha256_hex(data)
    if digest != entry.sha256 or len(data) != entry.bytes:
        raise LakeIntegrityError(
            f"{entry.path}: sha256 {digest[:16]}… ({len(data)} bytes) differs from the manifest's "
            f"{entry.sha256[:16]}… ({entry.bytes} bytes)"
        )
