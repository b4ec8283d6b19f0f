"""A feature build on threads against an S3 lake (moto_server): each task opens the lake from its address
(URI and endpoint) and writes the parts a serial build writes to a local directory, byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from support.engines import D1, D3, SYMBOLS, lake_files, write_bronze

from btcpipe.engines.feature_build import build_partitions
from btcpipe.engines.serial import SerialRunner
from btcpipe.engines.threads import ThreadRunner
from btcpipe.infra.devservers import MotoServer
from btcpipe.lake.ref import LakeRef

pytestmark = pytest.mark.services


def test_threads_build_on_an_s3_lake_writes_the_serial_builds_bytes(tmp_path: Path, moto_server: MotoServer) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    bucket = f"engines-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    local = tmp_path / "local"
    write_bronze(local)
    # The same bronze on S3: copy the local lake's objects key for key.
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.put_object(Bucket=bucket, Key=f"lake/{path.relative_to(local)}", Body=path.read_bytes())
    build_partitions(SerialRunner(), LakeRef(str(local)), SYMBOLS, D1, D3)
    runner = ThreadRunner(3)
    try:
        built = build_partitions(runner, LakeRef(f"s3://{bucket}/lake", moto_server.endpoint), SYMBOLS, D1, D3)
    finally:
        runner.close()
    on_s3 = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/"):
        for item in page.get("Contents", []):
            key = item["Key"].removeprefix("lake/")
            if key.startswith(("silver/", "gold/")):
                on_s3[key] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    assert on_s3 == {**lake_files(local, "silver"), **lake_files(local, "gold")}
    assert [p.build.day for p in built[0].days] == [D1, D1.replace(day=2), D3]
