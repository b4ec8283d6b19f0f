"""A Feast feature repository over the lake's silver features (Feast is the optional wrapper, not the hot path).

Feast's file offline store (dask) needs what silver ``features_1s`` deliberately does not carry: an event
timestamp typed as a timestamp (silver has ``ts_sec`` in int64 µs) and the entity (``symbol``) as a
column (silver has it in the path). So ``export_silver`` writes a Feast-shaped copy of silver beside it,
``silver/features_1s_feast``: the same rows and float64 values, plus ``event_timestamp`` (timestamp[us,
UTC]) and the partition columns ``symbol`` and ``date`` repeated in the file (dask reads hive folders
only when every partition column is also in the file, or none is). It goes through ``Lake.write_table``
like every silver partition: content-named part, manifest, and a partition of another schema hash is
refused, so the Feast view holds only rows of the schema its feature service is pinned to.

Feast reads the files directly (its readers know nothing of manifests or hashes): it is a reader of the
lake, never a writer of it. btcpipe's own online rows (``features:{symbol}:{ts_sec}`` in Redis, written by
the processor) stay the inference path; Feast's Redis keys are its own (a hash per entity key).
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from btcpipe.domain.errors import ConfigError, SchemaHashMismatchError
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.features.tables import FEATURE_PARQUET_OPTIONS, META_HASH, SILVER_DATASET
from btcpipe.lake.lake import Lake

FEAST_DATASET = "features_1s_feast"
FEAST_VERSION = "0.67.0"  # the isolated venv's pin (Makefile .venv-feast): its pandas/redis pins conflict with ours
PROJECT = "btcpipe"
FEATURE_VIEW = "features_1s"
ENTITY = "symbol"
TIMESTAMP_FIELD = "event_timestamp"
DEFAULT_TTL_S = 3  # a row older than this is stale for serving (inference's stale_after_s)


@dataclass(frozen=True, slots=True)
class ExportedDay:
    """A day written to ``silver/features_1s_feast``: its rows and the part's key."""

    symbol: str
    day: dt.date
    rows: int
    path: str


def feast_table(silver: pa.Table, symbol: str, day: dt.date) -> pa.Table:
    """A silver ``features_1s`` partition in Feast's shape (same rows and values; see the module doc)."""
    n = silver.num_rows
    stamps = pc.cast(silver["ts_sec"], pa.timestamp("us", tz="UTC"))
    # Plain strings: dask reads the folder values over them (as categories); a dictionary type in the
    # file would make it refuse to merge the two.
    head = pa.table({
        ENTITY: pa.array([symbol] * n, pa.string()),
        "date": pa.array([day.isoformat()] * n, pa.string()),
        TIMESTAMP_FIELD: stamps,
    })
    table = head
    for name in silver.column_names:
        table = table.append_column(silver.schema.field(name), silver[name])
    return table.replace_schema_metadata(silver.schema.metadata)


def export_silver(
    lake: Lake, symbols: Sequence[str], start_day: dt.date, end_day: dt.date, *, pinned_hash: str
) -> list[ExportedDay]:
    """Write the Feast-shaped copy of every silver day of ``symbols`` in ``[start_day, end_day]``.

    Raises ``SchemaHashMismatchError`` before writing a day whose silver has another schema hash."""
    done = []
    for symbol in symbols:
        for day in lake.table_days("silver", SILVER_DATASET, symbol):
            if not start_day <= day <= end_day:
                continue
            silver = lake.read_table("silver", SILVER_DATASET, symbol, day, day)
            found = (silver.schema.metadata or {}).get(META_HASH, b"").decode()
            if found != pinned_hash:
                raise SchemaHashMismatchError(
                    f"silver {symbol} {day} has schema hash {found[:16] or 'none'}…, the feature service is "
                    f"pinned to {pinned_hash[:16]}…; rebuild the day with those params or init another repo"
                )
            manifest = lake.write_table("silver", FEAST_DATASET, symbol, day, feast_table(silver, symbol, day),
                                        parquet_options=FEATURE_PARQUET_OPTIONS)
            done.append(ExportedDay(symbol, day, silver.num_rows, manifest.files[0].path))
    return done


def redis_connection_string(url: str) -> str:
    """Feast's Redis form (``host:port,db=N[,ssl=true]``) of a ``redis://`` / ``rediss://`` URL without secrets;
    a password goes in through Feast's ``${VAR}`` substitution instead (see ``repo_files``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"not a redis:// URL: {url!r}")
    if parts.password:
        raise ConfigError("put the Redis password in an environment variable (--redis-password-env), not the URL")
    db = parts.path.lstrip("/") or "0"
    out = f"{parts.hostname}:{parts.port or 6379},db={db}"
    return out + (",ssl=true" if parts.scheme == "rediss" else "")


def repo_files(
    lake: Lake, params: FeatureParams, *, endpoint_url: str | None, redis_url: str,
    redis_password_env: str | None = None, ttl_s: int = DEFAULT_TTL_S,
) -> dict[str, str]:
    """``feature_store.yaml`` and the definitions module of the repo, as text."""
    pinned = schema_hash(params)
    connection = redis_connection_string(redis_url)
    if redis_password_env:
        connection += f",password=${{{redis_password_env}}}"
    source_path = lake.store.uri(f"silver/{FEAST_DATASET}")
    store_yaml = textwrap.dedent(f"""\
        # Written by `btcpipe feast init` (Feast {FEAST_VERSION}); the definitions are in btcpipe_repo.py.
        project: {PROJECT}
        provider: local
        registry: data/registry.db
        offline_store:
          type: dask
        online_store:
          type: redis
          connection_string: "{connection}"
        entity_key_serialization_version: 3
        """)
    names = json.dumps(list(params.names))
    definitions = textwrap.dedent(f'''\
        """btcpipe schema v1 features for Feast (written by `btcpipe feast init`; regenerate, do not edit).

        Source: the Feast-shaped copy of the lake's silver (`btcpipe feast export`). Schema hash {pinned}.
        """

        from datetime import timedelta

        from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
        from feast.data_format import ParquetFormat
        from feast.types import Float64

        SCHEMA_HASH = "{pinned}"
        FEATURE_NAMES = {names}

        symbol = Entity(name="{ENTITY}", join_keys=["{ENTITY}"], value_type=ValueType.STRING,
                        description="Binance symbol, e.g. BTCUSDT")

        silver = FileSource(
            name="btcpipe_silver_{FEAST_DATASET}",
            path={source_path!r},
            timestamp_field="{TIMESTAMP_FIELD}",
            file_format=ParquetFormat(),
            s3_endpoint_override={endpoint_url!r},
        )

        {FEATURE_VIEW} = FeatureView(
            name="{FEATURE_VIEW}",
            entities=[symbol],
            ttl=timedelta(seconds={ttl_s}),
            schema=[Field(name=name, dtype=Float64) for name in FEATURE_NAMES],
            source=silver,
            online=True,
            tags={{"schema_hash": SCHEMA_HASH, "schema_version": "1"}},
        )

        btcpipe_v1 = FeatureService(
            name="btcpipe_v1_" + SCHEMA_HASH[:16],
            features=[{FEATURE_VIEW}],
            tags={{"schema_hash": SCHEMA_HASH}},
            description="The model's inputs, in schema order, for exactly this schema hash.",
        )
        ''')
    return {"feature_store.yaml": store_yaml, "btcpipe_repo.py": definitions}


def write_repo(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write the repo's files (replacing earlier ones of the same name); the registry goes in ``data/``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
