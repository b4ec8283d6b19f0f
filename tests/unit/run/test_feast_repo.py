"""``btcpipe feast init|export`` without Feast: the repo's text, the Feast-shaped silver copy, the hash pin."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from support.engines import write_bronze
from support.features import same_tables

from btcpipe.cli.scale.feast import cli
from btcpipe.domain.errors import ConfigError
from btcpipe.engines.feature_build import build_partitions
from btcpipe.engines.serial import SerialRunner
from btcpipe.features.spec import FeatureParams, schema_document, schema_hash
from btcpipe.features.tables import SILVER_DATASET
from btcpipe.lake.lake import Lake
from btcpipe.lake.ref import LakeRef
from btcpipe.run.feast_repo import FEAST_DATASET, redis_connection_string, repo_files

D1 = dt.date(2024, 3, 1)


def _params_file(tmp_path: Path, params: FeatureParams) -> Path:
    path = tmp_path / f"schema-{params.with_spread}.json"
    path.write_text(json.dumps(schema_document(params)))
    return path


def test_export_copies_silver_rows_with_timestamp_and_entity_and_refuses_another_hash(tmp_path: Path) -> None:
    write_bronze(tmp_path / "lake", ("BTCUSDT",))
    params = FeatureParams(0.002)
    build_partitions(SerialRunner(), LakeRef(str(tmp_path / "lake")), ["BTCUSDT"], D1, D1, params=params)
    lake_args = ["--lake", str(tmp_path / "lake"), "--start", str(D1), "--end", str(D1)]
    out = CliRunner().invoke(cli, ["export", *lake_args, "--params", str(_params_file(tmp_path, params))])
    assert out.exit_code == 0, out.output
    lake = Lake.open(str(tmp_path / "lake"))
    silver = lake.read_table("silver", SILVER_DATASET, "BTCUSDT", D1, D1)
    copy = lake.read_table("silver", FEAST_DATASET, "BTCUSDT", D1, D1)
    assert copy.column_names[:3] == ["symbol", "date", "event_timestamp"]
    assert same_tables(copy.select(silver.column_names), silver)  # NaN where silver has NaN
    assert copy["event_timestamp"].type == pa.timestamp("us", tz="UTC")
    assert copy["event_timestamp"].cast(pa.int64()).equals(silver["ts_sec"])
    assert set(copy["symbol"].to_pylist()) == {"BTCUSDT"}
    refused = CliRunner().invoke(cli, ["export", *lake_args, "--params",
                                       str(_params_file(tmp_path, FeatureParams(0.002, with_spread=True)))])
    assert refused.exit_code == 1, refused.output
    assert "pinned to" in refused.output
    assert "Traceback" not in refused.output


def test_repo_on_an_s3_lake_reads_s3_through_the_endpoint_and_pins_the_hash(tmp_path: Path) -> None:
    params = FeatureParams(0.002, with_spread=True)
    lake = Lake.open("s3://btcpipe-lake/prod", endpoint_url="http://127.0.0.1:5000")
    files = repo_files(lake, params, endpoint_url="http://127.0.0.1:5000", redis_url="rediss://cache:6380/2",
                       redis_password_env="BTCPIPE_REDIS_PASSWORD")
    definitions = files["btcpipe_repo.py"]
    assert "path='s3://btcpipe-lake/prod/silver/features_1s_feast'" in definitions
    assert "s3_endpoint_override='http://127.0.0.1:5000'" in definitions
    assert f'SCHEMA_HASH = "{schema_hash(params)}"' in definitions
    assert '"spread"' in definitions
    compile(definitions, "btcpipe_repo.py", "exec")  # valid Python (Feast imports it)
    assert 'connection_string: "cache:6380,db=2,ssl=true,password=${BTCPIPE_REDIS_PASSWORD}"' in (
        files["feature_store.yaml"])


def test_redis_url_with_a_password_or_another_scheme_is_refused() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    with pytest.raises(ConfigError, match="environment variable"):
        redis_connection_string("redis://:secret@127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="redis://"):
        redis_connection_string("http://127.0.0.1:6379")
