"""Where things live in the lake: one function per kind of key, so every module agrees on the layout.

```
bronze/{kind}/symbol={SYMBOL}/date={YYYY-MM-DD}/_manifest.json
bronze/{kind}/symbol={SYMBOL}/date={YYYY-MM-DD}/hour={HH}/part-{first}-{last}-{sha12}.parquet
bronze/{kind}/symbol={SYMBOL}/date={YYYY-MM-DD}/hour={HH}/raw-{first}-{last}-{sha12}.{json|jsonl|csv}
{silver|gold}/{dataset}/symbol={SYMBOL}/date={YYYY-MM-DD}/{_manifest.json, part-{sha12}.parquet}
lake/known_gaps.json
quarantine/{original key}{, .reason.json}     objects a repair took out of their manifest
```
Part names carry a content hash, so writing the same rows twice names the same object.
"""

from __future__ import annotations

import datetime as dt
import re

from btcpipe.domain.errors import LakeError
from btcpipe.lake.manifest import MANIFEST_NAME, RAW_FORMATS
from btcpipe.lake.schemas import BRONZE_SCHEMAS

LAYERS = ("bronze", "silver", "gold")
KNOWN_GAPS_KEY = "lake/known_gaps.json"
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


def check_symbol(symbol: str) -> str:
    if not _SYMBOL.fullmatch(symbol):
        raise LakeError(f"invalid symbol {symbol!r}: expected upper-case letters and digits, like BTCUSDT")
    return symbol


def check_kind(kind: str) -> str:
    if kind not in BRONZE_SCHEMAS:
        raise LakeError(f"unknown bronze kind {kind!r}; known: {', '.join(BRONZE_SCHEMAS)}")
    return kind


def check_dataset(layer: str, dataset: str) -> None:
    if layer not in LAYERS:
        raise LakeError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    if not _DATASET.fullmatch(dataset):
        raise LakeError(f"invalid dataset name {dataset!r}")


def dataset_prefix(layer: str, dataset: str, symbol: str) -> str:
    return f"{layer}/{dataset}/symbol={check_symbol(symbol)}/"


def date_prefix(layer: str, dataset: str, symbol: str, day: dt.date) -> str:
    return f"{dataset_prefix(layer, dataset, symbol)}date={day.isoformat()}/"


def manifest_key(layer: str, dataset: str, symbol: str, day: dt.date) -> str:
    return date_prefix(layer, dataset, symbol, day) + MANIFEST_NAME


def hour_prefix(kind: str, symbol: str, day: dt.date, hour: int) -> str:
    return f"{date_prefix('bronze', kind, symbol, day)}hour={hour:02d}/"


def bronze_part_key(partition: str, first: int, last: int, sha: str) -> str:
    """A typed part in ``partition`` (an hour prefix ending with ``/``)."""
    return f"{partition}part-{first}-{last}-{sha[:12]}.parquet"


def check_raw_format(fmt: str) -> str:
    if fmt not in RAW_FORMATS:
        raise LakeError(f"unknown raw format {fmt!r}; expected one of {', '.join(RAW_FORMATS)}")
    return fmt


def raw_key(partition: str, first: int, last: int, sha: str, fmt: str) -> str:
    """A raw payload kept in ``partition`` (an hour prefix ending with ``/``)."""
    return f"{partition}raw-{first}-{last}-{sha[:12]}.{check_raw_format(fmt)}"


def table_part_key(layer: str, dataset: str, symbol: str, day: dt.date, sha: str) -> str:
    return f"{date_prefix(layer, dataset, symbol, day)}part-{sha[:12]}.parquet"


def quarantine_key(key: str) -> str:
    """Where a repair moves an object whose bytes contradict its manifest (kept for inspection, never read)."""
    return f"quarantine/{key}"


def parse_date_dir(name: str) -> dt.date | None:
    match = _DATE_DIR.fullmatch(name)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None
