"""Inference on real servers: the online store on its own redis-server (killed and restarted mid-run),
the bus on Redis Streams, and the ``btcpipe infer`` command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from support.inference import PARAMS, SYMBOL, T0, WARM, MarketWorld, linear_model, sim_tape

from btcpipe.bus.port import STREAM_PREDICTIONS, Position
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import schema_hash
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.devservers import RedisServer
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.registry import ModelRegistry
from btcpipe.model.runtime import OnnxPredictor
from btcpipe.services.infer.archive import PredictionArchive, read_predictions
from btcpipe.services.infer.fallback import MarketTap
from btcpipe.services.infer.inference import InferenceService, TickResult
from btcpipe.services.infer.model_loader import ModelWatcher
from btcpipe.store.redis_store import RedisOnlineStore
from btcpipe.wire.codec import decode_prediction

pytestmark = pytest.mark.services


@pytest.fixture
def store_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own: it gets killed."""
    with RedisServer() as server:
        yield server


def test_redis_killed_and_restarted_mid_run_inference_falls_back_and_recovers(
    tmp_path: Path, store_server: RedisServer, redis_url: str
) -> None:
    clock = ManualClock(T0)
    bus = RedisStreamsBus(RedisOptions(redis_url))
    store = RedisOnlineStore(RedisOptions(store_server.url, socket_timeout_s=0.2, connect_timeout_s=0.2))
    lake = Lake(LocalObjectStore(tmp_path / "lake"))
    registry = ModelRegistry(lake.store)
    registry.register("btc", linear_model(seed=1))
    registry.promote("btc", "v1")
    metrics = Metrics()
    watcher = ModelWatcher(registry, "btc", metrics=metrics, clock=clock)
    watcher.load()
    world = MarketWorld(sim_tape(), bus, store, clock)
    results: list[TickResult] = []
    service = InferenceService(
        symbols=[SYMBOL], model=watcher, store=store, bus=bus, metrics=metrics, clock=clock,
        market=MarketTap(bus, [SYMBOL]), archive=PredictionArchive(lake, clock), sleep=world.sleep,
        on_result=results.append,
    )
    service.run(max_ticks=WARM + 5)
    assert [r.outcome for r in results[-5:]] == ["predicted"] * 5

    store_server.kill()
    service.run(max_ticks=6)
    down = results[-6:]
    assert [r.outcome for r in down] == ["fallback"] * 6
    assert all(r.reasons == ("store_error",) for r in down)
    assert world.store_failures >= 6  # the processor could not write either
    model = watcher.current.predictor
    for r in down:  # the fallback rows are the processor's rows
        assert r.prediction is not None
        assert r.prediction.yhat == model.predict(world.rows[r.ts_sec].values)

    store_server.restart()  # empty: the processor writes again from the next second on
    service.run(max_ticks=4)
    assert [r.outcome for r in results[-3:]] == ["predicted"] * 3
    assert metrics.registry.get_sample_value("btcpipe_store_requests_total", {"op": "get", "result": "error"}) == 6
    service.close()
    archived = read_predictions(lake, SYMBOL)
    assert archived.column("source").to_pylist().count("fallback") == 6
    assert archived.num_rows == sum(r.prediction is not None for r in results)
    published = []
    for shard in bus.shards(STREAM_PREDICTIONS):
        records, _ = bus.read(Position(STREAM_PREDICTIONS, shard), max_count=10_000)
        published.extend(decode_prediction(r.payload) for r in records)
    assert [p.ts_sec for p in published] == [r.ts_sec for r in results if r.prediction is not None]
    store.close()
    bus.close()


def test_infer_command_serves_store_rows_from_redis_and_archives_them(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    lake_dir = tmp_path / "lake"
    artifacts = linear_model(seed=4)
    registry = ModelRegistry(LocalObjectStore(lake_dir))
    registry.register("btcusdt-10s", artifacts)
    registry.promote("btcusdt-10s", "v1")
    store = RedisOnlineStore(RedisOptions(redis_url))
    now_sec = time.time_ns() // 1000 // US_PER_SEC * US_PER_SEC
    rng = np.random.default_rng(2)
    values = {now_sec + k * US_PER_SEC: tuple(rng.normal(size=len(PARAMS.names)).tolist()) for k in range(-2, 12)}
    # the processor's rows for the coming seconds, written ahead of time (the store does not look at the clock)
    store.put_many([FeatureVector1s(SYMBOL, t, schema_hash(PARAMS), v, t) for t, v in values.items()])
    proc = subprocess.run(
        [sys.executable, "-m", "btcpipe.cli.main", "infer", "--lake", str(lake_dir), "--bus", "redis",
         "--bus-url", redis_url, "--store", "redis", "--store-url", redis_url, "--duration", "3.2", "--json",
         "--archive-every", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outcomes"]["predicted"] >= 2
    assert summary["model_version"] == "v1"
    bus = RedisStreamsBus(RedisOptions(redis_url))
    records, _ = bus.read(Position(STREAM_PREDICTIONS, bus.shards(STREAM_PREDICTIONS)[0]), max_count=100)
    predictions = [decode_prediction(r.payload) for r in records]
    assert len(predictions) == summary["outcomes"]["predicted"]
    predictor = OnnxPredictor(artifacts)
    for p in predictions:
        assert p.yhat == predictor.predict(np.asarray(values[p.ts_sec]))
        assert p.model_version == "v1"
        assert 0 < p.latency_ms < 100
        assert p.feature_age_ms >= 80.0  # on arrival, and no row came on features-1s here: after the 80-ms wait
    archived = read_predictions(Lake(LocalObjectStore(lake_dir)), SYMBOL)
    assert archived.column("ts_sec").to_pylist() == [p.ts_sec for p in predictions]
    bus.close()
    store.close()
    redis.Redis.from_url(redis_url).close()


def test_infer_command_refuses_a_model_from_other_feature_code(tmp_path: Path, redis_url: str) -> None:
    registry = ModelRegistry(LocalObjectStore(tmp_path / "lake"))
    registry.register("btcusdt-10s", linear_model(schema_hash="e" * 64))
    registry.promote("btcusdt-10s", "v1")
    proc = subprocess.run(
        [sys.executable, "-m", "btcpipe.cli.main", "infer", "--lake", str(tmp_path / "lake"), "--bus", "redis",
         "--bus-url", redis_url, "--store", "redis", "--store-url", redis_url, "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert "refused" in proc.stderr
    assert "schema hash" in proc.stderr
