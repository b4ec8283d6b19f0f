"""The model registry on S3 over real HTTP (``moto_server``): the whole store-generic registry suite."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import boto3
import pytest

from btcpipe.infra.devservers import MotoServer
from btcpipe.lake.objects import ObjectStore, open_store

pytestmark = pytest.mark.services

_spec = importlib.util.spec_from_file_location(
    "btcpipe_model_registry_suite", Path(__file__).resolve().parent.parent / "unit" / "model" / "test_registry.py"
)
assert _spec is not None
assert _spec.loader is not None
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)
globals().update({name: obj for name, obj in vars(suite).items() if name.startswith("test_") or name == "registry"})


@pytest.fixture
def store(moto_server: MotoServer) -> ObjectStore:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/lake", endpoint_url=moto_server.endpoint)
