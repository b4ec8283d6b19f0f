"""``btcpipe ingest`` as a process: the local exchange's SBE streams to a real redis-server bus and a lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from support.ingest import API_KEY, SYMBOL, exchange, sim_tape

from btcpipe.bus.port import STREAM_TRADES, Position
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.exchange.streams.routes import replay_clock
from btcpipe.lake.lake import Lake
from btcpipe.wire.codec import decode_trades

pytestmark = pytest.mark.timeout(90)


def _ingest(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "btcpipe.cli.main", "ingest", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_ingest_command_publishes_to_redis_and_bronze_with_the_key_from_the_environment(
    redis_url: str, tmp_path: Path
) -> None:
    tape = sim_tape(600)
    env = {**os.environ, "H10_TEST_KEY": API_KEY}
    lake_dir = tmp_path / "lake"
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        done = _ingest("--exchange-url", ex.base_url, "--symbols", SYMBOL, "--api-key-env", "H10_TEST_KEY",
                       "--bus", "redis", "--bus-url", redis_url, "--lake", str(lake_dir), "--duration", "3",
                       "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["mode"] == "sbe"
    assert summary["books_synced"] == {SYMBOL: True}
    published = summary["ingest"]["trades_published"]
    assert published > 0
    assert API_KEY not in done.stderr + done.stdout
    bus = RedisStreamsBus(redis.Redis.from_url(redis_url))
    records, _ = bus.read(Position(STREAM_TRADES, bus.shard_for(STREAM_TRADES, SYMBOL)), max_count=100_000)
    ids = [t.id for r in records for t in decode_trades(r.payload)]
    assert len(ids) == published
    assert ids == sorted(set(ids))
    assert Lake.open(str(lake_dir)).read_bronze("trades", SYMBOL).column("id").to_pylist() == ids
    bus.close()


def test_ingest_command_without_a_key_says_it_uses_json(redis_url: str) -> None:
    tape = sim_tape(600)
    env = {k: v for k, v in os.environ.items() if k != "H10_MISSING_KEY"}
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        done = _ingest("--exchange-url", ex.base_url, "--api-key-env", "H10_MISSING_KEY", "--bus", "redis",
                       "--bus-url", redis_url, "--no-bronze", "--duration", "1.5", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "json"
    assert "using the public JSON streams" in done.stderr


def test_ingest_command_refuses_a_bad_exchange_url_clearly() -> None:
    done = _ingest("--exchange-url", "ftp://example", "--bus", "memory", "--no-bronze", env=dict(os.environ))
    assert done.returncode == 1
    assert "error: --exchange-url must be an http(s) URL" in done.stderr


def _emf_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTCPIPE_EMF")}
    return {**env, "H10_TEST_KEY": API_KEY, **extra}


def test_ingest_command_writes_emf_lines_on_stdout_when_enabled_and_none_when_not() -> None:
    tape = sim_tape(600)
    args = ("--symbols", SYMBOL, "--api-key-env", "H10_TEST_KEY", "--bus", "memory", "--no-bronze", "--json")
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        on = _ingest("--exchange-url", ex.base_url, *args, "--duration", "2.5", env=_emf_env(
            BTCPIPE_EMF="1", BTCPIPE_EMF_INTERVAL_S="1", BTCPIPE_EMF_NAMESPACE="btcpipe-h17"))
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        off = _ingest("--exchange-url", ex.base_url, *args, "--duration", "1.5", env=_emf_env())
    assert on.returncode == 0, on.stderr
    assert off.returncode == 0, off.stderr

    *emf, summary = [json.loads(line) for line in on.stdout.splitlines()]
    assert summary["mode"] == "sbe"
    assert len(emf) >= 2, "periodic snapshots plus the last one on exit"
    assert all(doc["Service"] == "ingestor" for doc in emf)
    assert {d["CloudWatchMetrics"][0]["Namespace"] for d in (doc["_aws"] for doc in emf)} == {"btcpipe-h17"}
    # Each snapshot reports the increase since the previous one: together they add up to what was received.
    received: dict[str, float] = {}
    for doc in emf:
        if "Stream" in doc and "IngestMessages" in doc:
            received[doc["Stream"]] = received.get(doc["Stream"], 0) + doc["IngestMessages"]
    assert received == summary["ingest"]["events"]
    assert summary["ingest"]["events"]["trade"] > 0
    assert API_KEY not in on.stdout + on.stderr

    assert "_aws" not in off.stdout
    assert json.loads(off.stdout)["ingest"]["events"]["trade"] > 0, "one summary document and nothing else"
