"""Every long-running command stops within its grace period after SIGTERM, however it is blocked, and nothing
it accepted before the signal is missing afterwards. Each command runs as a real process; the exit time is
measured from the signal. Exit status 0 (or the shell's 128 + signal for work cut short) proves the graceful
path finished: the watchdog that enforces the bound would exit with 70."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from support.ingest import API_KEY, SYMBOL, exchange, sim_tape
from support.shutdown import EXIT_SLACK_S, Command

from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_TRADES, Position
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.exchange.streams.routes import replay_clock
from btcpipe.lake.lake import Lake
from btcpipe.wire.codec import decode_trades

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
    bus = RedisStreamsBus(redis.Redis.from_url(redis_url))
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
