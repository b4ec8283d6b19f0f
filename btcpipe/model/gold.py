"""Gold rows from the lake for training and evaluation (the lake edge of the model package).

Reads ``gold/features_labeled`` day by day so that a span built with different fitted parameters, or
by feature code whose schema hash is not the running one, is refused instead of mixed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from btcpipe.domain.errors import DataError, SchemaHashMismatchError
from btcpipe.domain.time import day_of, iso
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.features.tables import GOLD_DATASET, META_HASH, META_LABEL_MID, META_PARAMS
from btcpipe.lake.lake import Lake
from btcpipe.model.dataset import TS_COLUMN, LabeledRows, rows_from_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GoldSpan:
    """Gold rows read from the lake for a span, with the fitted parameters they were built with."""

    rows: LabeledRows  # every row in [start, end), incomplete ones included
    params: FeatureParams
    symbol: str
    days: int


def load_gold(lake: Lake, symbol: str, start_us: int, end_us: int) -> GoldSpan:
    """Gold rows of ``symbol`` with ``start_us <= ts_sec < end_us``, checked against the running schema."""
    if end_us <= start_us:
        raise DataError(f"empty span: end {iso(end_us)} is not after start {iso(start_us)}")
    days = [d for d in lake.table_days("gold", GOLD_DATASET, symbol) if day_of(start_us) <= d <= day_of(end_us - 1)]
    if not days:
        raise DataError(f"no gold {GOLD_DATASET} for {symbol} between {iso(start_us)} and {iso(end_us)}")
    tables: list[pa.Table] = []
    params: FeatureParams | None = None
    label_mid: str | None = None
    for day in days:
        table = lake.read_table("gold", GOLD_DATASET, symbol, day, day)
        meta = table.schema.metadata or {}
        if META_PARAMS not in meta:
            raise DataError(f"gold {symbol} {day} has no fitted feature params in its metadata")
        day_params = FeatureParams.from_json(json.loads(meta[META_PARAMS]))
        if params is not None and day_params != params:
            raise DataError(
                f"gold {symbol} {day} was built with params {day_params} but earlier days with {params}: "
                "rebuild the span with one --params file"
            )
        params = day_params
        stored_hash = meta.get(META_HASH, b"").decode()
        if stored_hash != schema_hash(day_params):
            raise SchemaHashMismatchError(
                f"gold {symbol} {day} has schema hash {stored_hash!r}, the running feature code "
                f"{schema_hash(day_params)!r}: rebuild the features"
            )
        day_mid = meta.get(META_LABEL_MID, b"unknown").decode()
        if label_mid is not None and day_mid != label_mid:
            raise DataError(f"gold {symbol} mixes label mids {label_mid!r} and {day_mid!r}")
        label_mid = day_mid
        tables.append(table)
    assert params is not None
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    ts = table[TS_COLUMN].to_numpy(zero_copy_only=False)
    keep = np.flatnonzero((ts >= start_us) & (ts < end_us))
    table = table.take(pa.array(keep))
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in (TS_COLUMN, "y", *params.names)}
    rows = rows_from_columns(columns, params.names, label_mid=label_mid or "unknown")
    log.info("gold loaded", extra={"symbol": symbol, "rows": len(rows), "days": len(days)})
    return GoldSpan(rows=rows, params=params, symbol=symbol, days=len(days))
