"""`btcpipe process` as real processes over a real redis-server: two partitions, and SIGKILL + restart."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis
from support.process_cli import PARAMS, env, feature_rows, params_file, process_cmd
from support.processor import SEC, T0, batch_frame, mismatches, sim_tape

from btcpipe.bus.port import STREAM_FEATURES
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.services.replay import replay
from btcpipe.store.redis_store import RedisOnlineStore


def test_two_processes_split_two_symbols_over_redis_streams(tmp_path: Path, redis_url: str) -> None:
    btc, eth = sim_tape("BTCUSDT", duration_s=150, seed=31), sim_tape("ETHUSDT", duration_s=150, seed=32)
    bus = RedisStreamsBus(RedisOptions(redis_url), n_shards=2)
    pfile = params_file(tmp_path)
    procs = [
        subprocess.Popen(process_cmd(redis_url, pfile, "--symbols", "BTCUSDT,ETHUSDT", "--partition", f"{i}/2",
                                     "--idle-exit", "3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        for i in range(2)
    ]
    replay([btc, eth], bus)
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    summaries = [json.loads(o[0]) for o in outs]
    assert sorted(s for summary in summaries for s in summary["symbols"]) == ["BTCUSDT", "ETHUSDT"]
    assert all(len(summary["symbols"]) == 1 for summary in summaries)
    rows = feature_rows(bus)
    store = RedisOnlineStore(RedisOptions(redis_url))
    for summary in summaries:
        (symbol,) = summary["symbols"]
        tape = btc if symbol == "BTCUSDT" else eth
        assert summary["stats"]["trades"] == len(tape.trades)  # each process read only its own symbol
        assert summary["late_events"] == 0
        got = dict(rows[symbol])
        ts = sorted(got)
        assert ts == list(range(ts[0], ts[-1] + SEC, SEC))  # a full grid
        assert len(ts) > 140
        bars_from = ts[0] - SEC
        frame = batch_frame(tape, PARAMS, bars_from=bars_from, end_us=ts[-1] + SEC)
        assert mismatches(got, frame) == []
        latest = store.get_latest(symbol)
        assert latest is not None
        assert latest.ts_sec == ts[-1]
    store.close()


def test_processor_killed_and_restarted_leaves_no_hole_in_the_grid(tmp_path: Path, redis_url: str) -> None:
    tape = sim_tape("BTCUSDT", duration_s=240, start_us=T0, seed=41)
    bus = RedisStreamsBus(RedisOptions(redis_url), n_shards=2)
    pfile = params_file(tmp_path)
    cmd = process_cmd(redis_url, pfile, "--symbols", "BTCUSDT", "--idle-exit", "3")
    client = redis.Redis.from_url(redis_url)
    feature_key = bus.key(STREAM_FEATURES, bus.shard_for(STREAM_FEATURES, "BTCUSDT"))
    publisher = threading.Thread(target=replay, args=(tape, bus), kwargs={"speed": 40.0})
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    publisher.start()
    deadline = time.monotonic() + 60
    while client.xlen(feature_key) < 60:  # wait for a minute of rows, mid-replay
        assert time.monotonic() < deadline, first.stderr.read().decode() if first.poll() is not None else "slow"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = client.xlen(feature_key)
    second = subprocess.run(cmd, capture_output=True, timeout=90, env=env(), check=False)
    publisher.join(timeout=30)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    summary = json.loads(second.stdout)
    assert summary["stats"]["resumed_from"]["BTCUSDT"] > 0
    assert killed_at < 230  # the kill happened mid-stream
    rows = feature_rows(bus)["BTCUSDT"]
    got: dict[int, tuple[float, ...]] = {}
    for ts, values in rows:  # a row emitted before the kill but not yet committed comes again, unchanged
        if ts in got:
            assert mismatches({ts: values}, batch_frame(tape, PARAMS, bars_from=rows[0][0] - SEC,
                                                        end_us=ts + SEC).take(slice(-1, None))) == []
        got[ts] = values
    ts_sorted = sorted(got)
    assert ts_sorted == list(range(ts_sorted[0], ts_sorted[-1] + SEC, SEC))
    assert ts_sorted[-1] >= T0 + 230 * SEC
    frame = batch_frame(tape, PARAMS, bars_from=ts_sorted[0] - SEC, end_us=ts_sorted[-1] + SEC)
    assert mismatches(got, frame) == []
