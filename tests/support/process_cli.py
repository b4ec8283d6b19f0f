"""Helpers for the tests that run `btcpipe process` as a real process over redis-server (no tests here)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from btcpipe.bus.port import STREAM_FEATURES, Position
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.features.spec import FeatureParams, schema_document
from btcpipe.wire.codec import decode_feature_vector

PARAMS = FeatureParams(0.05, with_spread=True)
BTCPIPE = [sys.executable, "-m", "btcpipe.cli.main"]


def process_cmd(redis_url: str, params_file: Path, *extra: str) -> list[str]:
    return [*BTCPIPE, "process", "--bus", "redis", "--bus-url", redis_url, "--bus-shards", "2", "--store", "redis",
            "--store-url", redis_url, "--params", str(params_file), "--clock", "event", "--json", *extra]


def feature_rows(bus: RedisStreamsBus) -> dict[str, list[tuple[int, tuple[float, ...]]]]:
    out: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
    for shard in bus.shards(STREAM_FEATURES):
        pos = Position(STREAM_FEATURES, shard)
        while True:
            records, pos = bus.read(pos, 5000)
            if not records:
                break
            for r in records:
                v = decode_feature_vector(r.payload)
                out.setdefault(v.symbol, []).append((v.ts_sec, v.values))
    return out


def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema_v1.json"
    path.write_text(json.dumps(schema_document(PARAMS)))
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


