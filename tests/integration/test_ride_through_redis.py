"""`btcpipe process` and `replay` ride through a Redis outage (a real redis-server that stops answering for
seconds), resume from their positions and leave no hole; `/readyz` says not ready meanwhile, `/healthz` stays up."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from support.process_cli import PARAMS, env, feature_rows, params_file, process_cmd
from support.processor import SEC, T0, batch_frame, collect, last_trade_row, mismatches, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_FEATURES, STREAM_TRADES, Position
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.errors import BusError
from btcpipe.features.spec import FeatureParams
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.devservers import free_port
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.process.ride import ProcessorRide
from btcpipe.services.replay import ReplayResult, replay
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire.trade_batches import decode_trade_columns

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]
PAUSE_MS = 4000  # Redis answers nothing for this long: longer than every client's 1 s timeout and retry


def _status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_processor_and_replay_ride_through_a_redis_outage_without_a_hole(tmp_path: Path, redis_url: str) -> None:
    tape = sim_tape("BTCUSDT", duration_s=240, start_us=T0, seed=47)
    bus = RedisStreamsBus(RedisOptions(redis_url), n_shards=2)
    port = free_port()
    cmd = process_cmd(redis_url, params_file(tmp_path), "--symbols", "BTCUSDT", "--idle-exit", "10",
                      "--metrics-port", str(port))
    client = redis.Redis.from_url(redis_url)  # no socket timeout: its commands wait the pause out
    feature_key = bus.key(STREAM_FEATURES, bus.shard_for(STREAM_FEATURES, "BTCUSDT"))
    replayed: list[ReplayResult] = []
    publisher = threading.Thread(target=lambda: replayed.append(replay(tape, bus, speed=30.0)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        publisher.start()
        deadline = time.monotonic() + 60
        while client.xlen(feature_key) < 40:  # mid-replay, rows flowing
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no feature rows"
            time.sleep(0.02)
        assert _status(f"http://127.0.0.1:{port}/readyz")[0] == 200
        client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        status, detail = _status(f"http://127.0.0.1:{port}/readyz")
        assert status == 503, detail
        assert "unreachable" in str(detail)
        assert _status(f"http://127.0.0.1:{port}/healthz")[0] == 200  # alive: riding it out, not to be restarted
        client.ping()  # returns when the pause is over
        deadline = time.monotonic() + 30
        while _status(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            assert time.monotonic() < deadline, "never ready again"
            time.sleep(0.1)
        publisher.join(timeout=60)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out)
    # The outage was felt (a bus error rebuilt the processor, or its store writes and commits failed and were
    # counted while it waited), and the process went on: exit 0 with the whole grid below.
    stats = summary["stats"]
    assert summary["bus_errors"] + stats["store_errors"] + stats["commit_errors"] + stats["publish_errors"] >= 1
    assert replayed
    assert replayed[0].trades == len(tape.trades)
    # Every trade reached the bus despite the outage (a retried publish may have written some twice).
    ids: set[int] = set()
    for shard in bus.shards(STREAM_TRADES):
        pos = Position(STREAM_TRADES, shard)
        while records := bus.read(pos, 5000)[0]:
            pos = Position(STREAM_TRADES, shard, records[-1].id)
            for r in records:
                ids.update(decode_trade_columns(r.payload).id.tolist())
    assert ids == set(tape.trades.id.tolist())
    got: dict[int, tuple[float, ...]] = {}
    for ts, values in feature_rows(bus)["BTCUSDT"]:
        got[ts] = values  # a row emitted again after the rebuild is the same row (checked below with the rest)
    ts_sorted = sorted(got)
    assert ts_sorted == list(range(ts_sorted[0], ts_sorted[-1] + SEC, SEC)), "a hole in the grid"
    assert ts_sorted[-1] >= T0 + 230 * SEC
    frame = batch_frame(tape, PARAMS, bars_from=ts_sorted[0] - SEC, end_us=ts_sorted[-1] + SEC)
    assert mismatches(got, frame) == []


class _ReadsFail(InProcessBus):
    """An in-process bus whose next ``failing`` reads raise, as a Redis connection reset would."""

    failing = 0

    def read(self, position: Position, max_count: int = 1000, block_ms: int = 0) -> Any:
        if self.failing:
            self.failing -= 1
            raise BusError("connection reset by peer")
        return super().read(position, max_count, block_ms)


def test_a_bus_error_rebuilds_the_processor_from_its_positions_after_a_backoff() -> None:
    tape = sim_tape("BTCUSDT", duration_s=300, seed=21)
    bus = _ReadsFail()
    replay(tape, bus)
    clock = ManualClock(tape.end_us + 3 * SEC)
    positions = InMemoryPositionStore()
    rows: dict[int, tuple[float, ...]] = {}
    params = FeatureParams(0.05, with_spread=True)

    def build() -> Processor:
        return Processor(bus, InProcessOnlineStore(clock), positions, params, symbols=["BTCUSDT"], clock=clock,
                         settings=ProcessorSettings(poll_max=20, block_ms=0), on_rows=collect(rows))

    waits: list[float] = []
    ride = ProcessorRide(build, should_stop=lambda: False, wait=waits.append, rng=random.Random(1))
    first = ride.start()
    assert first is not None
    while len(rows) < 75:
        ride.step()
    emitted = max(rows)
    bus.failing = 3
    idle = 0
    while idle < 3:
        idle = 0 if ride.step() or bus.failing else idle + 1
    assert ride.bus_errors == 3
    assert ride.rebuilds == 3
    assert len(waits) == 3
    assert all(0 < w <= ride.cap_s for w in waits)
    assert ride.processor is not first
    assert ride.processor is not None
    assert ride.processor.stats.resumed_from["BTCUSDT"] >= emitted  # from the committed positions
    bars_from = first.states["BTCUSDT"].bars_from
    assert bars_from is not None
    frame = batch_frame(tape, params, bars_from=bars_from, end_us=last_trade_row(tape) + SEC)
    assert mismatches(rows, frame) == []  # no hole, and a row computed again is the same row


class _DownFor(InProcessBus):
    """An in-process bus whose publishes fail ``failures`` times in a row from the ``after``-th on."""

    def __init__(self, after: int, failures: int) -> None:
        super().__init__()
        self.calls, self.after, self.failures = 0, after, failures

    def publish(self, stream: str, key: str, payloads: Any) -> int:
        self.calls += 1
        if self.after <= self.calls < self.after + self.failures:
            raise BusError("connection refused")
        return super().publish(stream, key, payloads)


def test_replay_publishes_again_after_bus_errors_and_gives_up_after_max_outage() -> None:
    tape = sim_tape("BTCUSDT", duration_s=30, seed=5)
    waits: list[float] = []
    bus = _DownFor(after=3, failures=4)
    result = replay(tape, bus, kinds=["trade"], sleep=waits.append)
    assert result.bus_errors == 4
    assert len(waits) == 4
    assert all(w > 0 for w in waits)
    got = [t for shard in bus.shards(STREAM_TRADES) for r in bus.read(Position(STREAM_TRADES, shard), 10**6)[0]
           for t in decode_trade_columns(r.payload).id.tolist()]
    assert sorted(got) == tape.trades.id.tolist()
    clock = iter(range(0, 10**6, 100))
    with pytest.raises(BusError):
        replay(tape, _DownFor(after=1, failures=10**6), kinds=["trade"], sleep=lambda s: None,
               wall=lambda: float(next(clock)), max_outage_s=250)
