"""The lake on S3 over real HTTP (``moto_server``): the whole store-generic suite, plus S3-only behaviour.

Every ``test_*`` function of ``tests/unit/test_lake.py`` is collected here again with the ``store``
fixture below, so the local directory and S3 pass the very same assertions.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from btcpipe.domain.errors import LakeError
from btcpipe.infra.devservers import MotoServer
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import ObjectStore, S3ObjectStore, list_dirs, open_store

pytestmark = pytest.mark.services

_spec = importlib.util.spec_from_file_location(
    "btcpipe_lake_suite", Path(__file__).resolve().parent.parent / "unit" / "lake" / "test_lake.py"
)
assert _spec is not None
assert _spec.loader is not None
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)
globals().update({name: fn for name, fn in vars(suite).items() if name.startswith("test_")})


def _client(moto_server: MotoServer) -> Any:
    return boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    _client(moto_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(moto_server: MotoServer, bucket: str) -> ObjectStore:
    return S3ObjectStore(bucket, "team/lake", endpoint_url=moto_server.endpoint)


def test_open_store_reads_an_s3_uri_and_keeps_the_prefix(moto_server: MotoServer, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/p/q", endpoint_url=moto_server.endpoint)
    store.put("bronze/x.bin", b"abc")
    keys = [o["Key"] for o in _client(moto_server).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["p/q/bronze/x.bin"]
    assert store.uri("bronze/x.bin") == f"s3://{bucket}/p/q/bronze/x.bin"
    assert Lake.open(f"s3://{bucket}/p/q", endpoint_url=moto_server.endpoint).store.get("bronze/x.bin") == b"abc"


def test_listing_follows_continuation_pages(moto_server: MotoServer, bucket: str) -> None:
    # 25 keys a page instead of S3's 1000 exercises the same continuation-token path without 1000 PUTs.
    store = S3ObjectStore(bucket, endpoint_url=moto_server.endpoint, page_size=25)
    client = _client(moto_server)
    for i in range(110):
        client.put_object(Bucket=bucket, Key=f"many/d{i % 3}/k{i:05d}", Body=b"")
    client.put_object(Bucket=bucket, Key="other/k", Body=b"")
    keys = store.list("many/")
    assert len(keys) == 110
    assert keys == sorted(keys)
    assert list_dirs(store, "many/") == ["d0", "d1", "d2"]


def test_missing_bucket_is_a_lake_error_naming_the_location(moto_server: MotoServer) -> None:
    store = S3ObjectStore("no-such-bucket-here", endpoint_url=moto_server.endpoint)
    with pytest.raises(LakeError, match="s3://no-such-bucket-here/a"):
        store.put("a", b"x")
    with pytest.raises(LakeError, match="list"):
        store.list()


def test_unreachable_endpoint_is_a_lake_error() -> None:
    from btcpipe.infra.devservers import free_port

    store = S3ObjectStore("b", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    with pytest.raises(LakeError, match="S3 get"):
        store.get("k")


def test_lake_check_command_reads_an_s3_lake(moto_server: MotoServer, bucket: str) -> None:
    import orjson
    from click.testing import CliRunner

    from btcpipe.cli.main import cli

    uri = f"s3://{bucket}/lake"
    lake = Lake.open(uri, endpoint_url=moto_server.endpoint)
    table = suite.trades([1, 2, 3, 7, 8], [suite.MIDNIGHT + k for k in range(5)])
    lake.append_bronze("trades", suite.SYMBOL, table, raw=b"[]", raw_format="json", source="test")
    args = ["lake", "check", "--lake", uri, "--endpoint-url", moto_server.endpoint, "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 1
    gaps = orjson.loads(result.output)["days"][0]["gaps"]
    assert [(g["first_missing"], g["last_missing"]) for g in gaps] == [(4, 6)]
    lake.store.put("lake/known_gaps.json", b'{"gaps": [{"first_id": 4, "last_id": 6}]}')
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    listing = CliRunner().invoke(cli, ["lake", "ls", "--lake", uri, "--endpoint-url", moto_server.endpoint, "--json"])
    assert orjson.loads(listing.output.splitlines()[0])["rows"] == 5


def test_debug_s3_command_never_logs_the_credentials(moto_server: MotoServer, bucket: str, tmp_path: Path) -> None:
    """At BTCPIPE_LOG_LEVEL=DEBUG botocore would print the session token and the access key id of every request."""
    import os
    import subprocess
    import sys

    uri = f"s3://{bucket}/lake"
    lake = Lake.open(uri, endpoint_url=moto_server.endpoint)
    table = suite.trades([1, 2, 3], [suite.MIDNIGHT + k for k in range(3)])
    lake.append_bronze("trades", suite.SYMBOL, table, raw=b"[]", raw_format="json", source="test")
    markers = {
        "AWS_ACCESS_KEY_ID": "AKIAMARKERACCESSKEY7",
        "AWS_SECRET_ACCESS_KEY": "MarkerSecretAccessKey0123456789abcdefXYZ",
        "AWS_SESSION_TOKEN": "MarkerSessionToken" + "Zm9vYmFy" * 8,
    }
    env = {**os.environ, **markers, "BTCPIPE_LOG_LEVEL": "DEBUG", "BTCPIPE_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-m", "btcpipe.cli.main", "lake", "check", "--lake", uri, "--endpoint-url",
         moto_server.endpoint, "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"days"' in done.stdout  # the command really read the lake over S3 with these credentials
    output = done.stdout + done.stderr
    for name, value in markers.items():
        assert value not in output, f"{name} appears in the output"
        assert value[:12] not in output, f"a prefix of {name} appears in the output"
