"""Every long-running command stops within its grace period after SIGTERM, however it is blocked, and nothing
it accepted before the signal is missing afterwards. Each command runs as a real process; the exit time is
measured from the signal. Exit status 0 (or the shell's 128 + signal for work cut short) proves the graceful
path finished: the watchdog that enforces the bound would exit with 70."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import redis
from support.backfill import sim_tape as backfill_tape
from support.inference import PARAMS as INFER_PARAMS
from support.inference import linear_model
from support.ingest import API_KEY, SYMBOL, exchange, sim_tape
from support.processor import sim_tape as processor_tape
from support.shutdown import EXIT_SLACK_S, Command, Stopped

from btcpipe.bus.port import (
    STREAM_BEST_BID_ASK,
    STREAM_DEPTH,
    STREAM_FEATURES,
    STREAM_PREDICTIONS,
    STREAM_TRADES,
    Position,
)
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import replay_clock
from btcpipe.features.spec import FeatureParams, schema_document, schema_hash
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.registry import ModelRegistry
from btcpipe.services.infer.archive import read_predictions
from btcpipe.services.replay import replay
from btcpipe.store.redis_store import RedisOnlineStore
from btcpipe.wire.codec import decode_feature_vector, decode_prediction, decode_trades

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

GRACE_S = 5.0


def _records(bus: RedisStreamsBus, stream: str) -> list[bytes]:
    records, _ = bus.read(Position(stream, bus.shard_for(stream, SYMBOL)), max_count=1_000_000)
    return [r.payload for r in records]


def test_ingest_stops_within_grace_while_its_depth_snapshot_waits_on_a_slow_server(
    redis_url: str, tmp_path: Path
) -> None:
    tape = sim_tape(600)
    lake_dir = tmp_path / "lake"
    bus = RedisStreamsBus(RedisOptions(redis_url))
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        ex.faults.set(latency_s=120.0, path_prefixes=("/api/v3/depth",))  # the snapshot never comes in time
        cmd = Command("ingest", "--exchange-url", ex.base_url, "--symbols", SYMBOL, "--api-key-env", "STOP_KEY",
                      "--bus", "redis", "--bus-url", redis_url, "--lake", str(lake_dir), "--grace", str(GRACE_S),
                      "--json", env={**os.environ, "STOP_KEY": API_KEY})
        cmd.wait_for(lambda: ex.fault_stats.delayed >= 1 and len(_records(bus, STREAM_TRADES)) >= 3,
                     what="a pending depth snapshot and published trades")
        done = cmd.stop()
    print(f"ingest exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    summary = done.summary()
    assert summary["ingest"]["abandoned"] == {"depth_snapshot": 1}
    assert summary["shutdown"]["reason"] == "SIGTERM"
    assert summary["shutdown"]["seconds"] < GRACE_S
    assert any("depth_snapshot" in u for u in summary["shutdown"]["unfinished"])
    # Everything received before the signal is on the bus and in bronze.
    events = summary["ingest"]["events"]
    ids = [t.id for p in _records(bus, STREAM_TRADES) for t in decode_trades(p)]
    assert len(ids) == summary["ingest"]["trades_published"] > 0
    lake = Lake.open(str(lake_dir))
    assert lake.read_bronze("trades", SYMBOL).column("id").to_pylist() == ids
    assert len(_records(bus, STREAM_DEPTH)) == events.get("depth", 0) == lake.read_bronze("depth", SYMBOL).num_rows
    assert len(_records(bus, STREAM_BEST_BID_ASK)) == events.get("bestBidAsk", 0)
    bus.close()


def _params_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema_v1.json"
    path.write_text(json.dumps(schema_document(FeatureParams(0.05))))
    return path


def test_process_stops_within_grace_and_commits_what_it_emitted(redis_url: str, tmp_path: Path) -> None:
    bus = RedisStreamsBus(RedisOptions(redis_url))
    replay(processor_tape(SYMBOL, duration_s=300, seed=5), bus, kinds=("trade",))
    args = ("process", "--bus", "redis", "--bus-url", redis_url, "--store", "redis", "--store-url", redis_url,
            "--params", str(_params_file(tmp_path)), "--clock", "event", "--symbols", SYMBOL, "--json")
    features = redis.Redis.from_url(redis_url)
    feature_key = bus.key(STREAM_FEATURES, bus.shard_for(STREAM_FEATURES, SYMBOL))
    cmd = Command(*args, "--grace", str(GRACE_S))
    cmd.wait_for(lambda: features.xlen(feature_key) >= 30, what="feature rows")
    done = cmd.stop()
    print(f"process exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    first = done.summary()
    assert first["shutdown"]["reason"] == "SIGTERM"
    assert first["shutdown"]["unfinished"] == []
    # The positions it committed on the way out: a new processor continues right after its last row.
    again = Command(*args, "--idle-exit", "1.5")
    again.wait_for(lambda: again.proc.poll() is not None, what="the second processor")
    second = Stopped(again.proc.returncode, *again.output(), 0.0).summary()
    assert second["stats"]["resumed_from"][SYMBOL] == first["last_row"][SYMBOL]
    emitted = [decode_feature_vector(p).ts_sec for p in _records(bus, STREAM_FEATURES)]
    assert len(emitted) == len(set(emitted)), "no row emitted twice: the stop committed what it emitted"
    assert emitted == sorted(emitted)
    bus.close()
    features.close()


def test_infer_stops_within_grace_and_archives_every_prediction_it_made(redis_url: str, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    registry = ModelRegistry(LocalObjectStore(lake_dir))
    registry.register("btcusdt-10s", linear_model(seed=4))
    registry.promote("btcusdt-10s", "v1")
    store = RedisOnlineStore(RedisOptions(redis_url))
    now_sec = time.time_ns() // 1000 // US_PER_SEC * US_PER_SEC
    rng = np.random.default_rng(2)
    store.put_many([FeatureVector1s(SYMBOL, now_sec + k * US_PER_SEC, schema_hash(INFER_PARAMS),
                                    tuple(rng.normal(size=len(INFER_PARAMS.names)).tolist()), now_sec + k * US_PER_SEC)
                    for k in range(-2, 60)])
    bus = RedisStreamsBus(RedisOptions(redis_url))
    cmd = Command("infer", "--lake", str(lake_dir), "--bus", "redis", "--bus-url", redis_url, "--store", "redis",
                  "--store-url", redis_url, "--grace", str(GRACE_S), "--json")
    cmd.wait_for(lambda: len(_records(bus, STREAM_PREDICTIONS)) >= 2, what="predictions")
    done = cmd.stop()
    print(f"infer exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    summary = done.summary()
    assert summary["shutdown"]["reason"] == "SIGTERM"
    predicted = [decode_prediction(p).ts_sec for p in _records(bus, STREAM_PREDICTIONS)]
    assert len(predicted) == summary["outcomes"]["predicted"] >= 2
    # The archive flushes once a minute; the stop flushed it, so every prediction made is in gold.
    archived = read_predictions(Lake(LocalObjectStore(lake_dir)), SYMBOL)
    assert archived.column("ts_sec").to_pylist() == predicted
    bus.close()
    store.close()


def test_replay_stops_within_grace_and_counts_exactly_what_it_published(
    redis_url: str, recording_paths: list[Path]
) -> None:
    bus = RedisStreamsBus(RedisOptions(redis_url))
    cmd = Command("replay", "--recording", str(recording_paths[0]), "--bus", "redis", "--bus-url", redis_url,
                  "--speed", "1", "--grace", str(GRACE_S), "--json")
    cmd.wait_for(lambda: len(_records(bus, STREAM_TRADES)) >= 3, what="replayed trades")
    done = cmd.stop()
    print(f"replay exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    summary = done.summary()
    assert summary["shutdown"]["reason"] == "SIGTERM"
    trades = [t for p in _records(bus, STREAM_TRADES) for t in decode_trades(p)]
    assert len(trades) == summary["trades"] > 0
    assert len(_records(bus, STREAM_BEST_BID_ASK)) == summary["best_bid_ask"]
    bus.close()


def test_exchange_serve_stops_within_grace_with_a_stream_client_connected() -> None:
    cmd = Command("exchange", "serve", "--sim-hours", "0.05", "--replay-speed", "1", "--grace", str(GRACE_S))
    cmd.wait_for(lambda: cmd.output()[0].startswith("http://"), what="the exchange's URL")
    base = cmd.output()[0].split()[0]
    ws_url = base.replace("http://", "ws://") + "/json/ws/btcusdt@trade"

    async def connected_while_stopping() -> tuple[Stopped, aiohttp.WSMsgType]:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            first = await ws.receive(timeout=10)
            assert first.type == aiohttp.WSMsgType.TEXT  # the stream is live
            done = await asyncio.to_thread(cmd.stop)
            while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                pass
            return done, msg.type

    done, last = asyncio.run(connected_while_stopping())
    assert last in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    print(f"exchange serve exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S


def test_backfill_stops_within_grace_while_waiting_for_the_weight_window(tmp_path: Path) -> None:
    tape = backfill_tape(seed=3, duration_s=3600)
    lake_dir = tmp_path / "lake"
    # 100 weight a minute, bulk share 0.8 − 0.2: two 25-weight pages, then a wait of most of a minute.
    with LocalExchange(tape, weight_limit=100) as ex:
        cmd = Command("backfill", "--kind", "trades", "--start", str(tape.start_us), "--end", str(tape.end_us + 1),
                      "--base-url", ex.base_url, "--lake", str(lake_dir), "--weight-limit", "100",
                      "--progress", "none", "--grace", str(GRACE_S))
        cmd.wait_for(lambda: ex.stats.max_used_weight >= 54, what="two pages written")
        done = cmd.stop()
    print(f"backfill exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    result = done.summary()
    assert result["stopped"] is not None
    assert result["pages"] == 2
    assert result["shutdown"]["reason"] == "SIGTERM"
    # Every page that arrived is in bronze, in one unbroken id run from the start of the span.
    ids = Lake.open(str(lake_dir)).read_bronze("trades", SYMBOL).column("id").to_pylist()
    assert len(ids) == result["rows_added"] == 2000
    assert ids == list(range(int(tape.trades.id[0]), int(tape.trades.id[0]) + 2000))


def test_run_stops_within_grace_while_its_backfill_waits_for_the_weight_window(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # A tiny weight budget: the backfill's third page waits for the window to roll.
    env = {**os.environ, "BTCPIPE__EXCHANGE__WEIGHT_LIMIT": "100", "BTCPIPE_LOG_FORMAT": "json"}
    cmd = Command("run", "--history", "20m", "--duration", "15s", "--epochs", "2", "--view", "log",
                  "--out", str(out), "--grace", str(GRACE_S), env=env)
    cmd.wait_for(lambda: "waiting for the window to roll" in cmd.output()[1], what="the backfill's window wait")
    done = cmd.stop()
    print(f"run exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_stage"] == "backfill"
    assert "interrupted" in summary["error"] or "stopping" in summary["error"]
    # The pages that arrived before the signal are in bronze.
    held = Lake.open(str(out / "lake")).read_bronze("trades", "BTCUSDT").num_rows
    assert held == 2000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_stops_within_grace_during_its_live_part_with_the_live_trades_in_bronze(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = Command("run", "--history", "15m", "--duration", "60s", "--epochs", "2", "--view", "log",
                  "--out", str(out), "--grace", str(GRACE_S), env={**os.environ, "BTCPIPE_LOG_FORMAT": "json"})
    cmd.wait_for(lambda: re.search(r'"predictions":\s*[1-9]', cmd.output()[1]) is not None, timeout=240,
                 what="the live part predicting")
    done = cmd.stop()
    print(f"run (live part) exit after SIGTERM: {done.exit_s:.2f} s")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.exit_s < GRACE_S + EXIT_SLACK_S
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_stage"] == "live"
    assert "interrupted" in summary["error"]
    # The ingestor flushed on its way out: bronze holds the backfill, the REST fill and the live trades as one
    # unbroken id run (nothing it received is missing).
    backfill = next(s for s in summary["stages"] if s["name"] == "backfill")["summary"]
    ids = Lake.open(str(out / "lake")).read_bronze("trades", "BTCUSDT").column("id").to_pylist()
    assert ids[-1] > backfill["last_id"]
    assert ids == list(range(ids[0], ids[-1] + 1))
