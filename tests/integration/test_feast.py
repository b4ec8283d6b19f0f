"""Feast over the lake and Redis (``btcpipe feast init|export``, Feast in its own venv): point-in-time
``get_historical_features`` equals btcpipe's gold rows value for value, and after ``feast materialize`` the
online features equal the latest row the live processor computed from the same trades."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.features import bronze_trades_table
from support.processor import PARAMS, sim_tape

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.cli.scale.feast import cli
from btcpipe.domain.time import day_of
from btcpipe.engines.feature_build import build_partitions
from btcpipe.engines.serial import SerialRunner
from btcpipe.features.spec import schema_document, schema_hash
from btcpipe.features.tables import GOLD_DATASET, SILVER_DATASET
from btcpipe.infra.clocks import ManualClock
from btcpipe.lake.lake import Lake
from btcpipe.lake.ref import LakeRef
from btcpipe.run.feast_repo import FEAST_VERSION
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.services.replay import replay
from btcpipe.store.memory import InProcessOnlineStore

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
FEAST_VENV = REPO / ".venv-feast"
QUERY = Path(__file__).parent / "feast" / "query_features.py"
_OFFLINE = re.compile(r"Temporary failure in name resolution|Name or service not known|Network is unreachable|"
                      r"NewConnectionError|Failed to establish a new connection|No matching distribution found")


@pytest.fixture(scope="session")
def feast_bin() -> Path:
    """The isolated Feast venv's bin/ (`make feast-venv`; built here once when missing).

    Built in place under a lock rather than in a staging folder that is renamed: a venv's scripts carry the
    absolute path of its interpreter, so a renamed venv's ``feast`` points at a python that no longer exists.
    """
    stamp = FEAST_VENV / ".installed"
    with (REPO / ".venv-feast.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers (and a parallel make) wait for the one building it
        if not stamp.exists():
            shutil.rmtree(FEAST_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True, timeout=120)
            install = subprocess.run([str(FEAST_VENV / "bin" / "pip"), "install", "--quiet",
                                      f"feast[redis]=={FEAST_VERSION}"],
                                     capture_output=True, text=True, timeout=900, check=False)
            if install.returncode != 0:
                shutil.rmtree(FEAST_VENV, ignore_errors=True)
                if _OFFLINE.search(install.stdout + install.stderr):
                    pytest.skip(f"feast {FEAST_VERSION} could not be installed without network")
                pytest.fail(f"installing feast failed:\n{install.stdout}\n{install.stderr}")
            stamp.touch()
    return FEAST_VENV / "bin"


def _feast(bin_dir: Path, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=repo, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _iso(ts_us: int) -> str:
    return dt.datetime.fromtimestamp(ts_us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def test_historical_features_equal_gold_and_online_features_equal_the_processors_latest_row(
    tmp_path: Path, redis_url: str, feast_bin: Path
) -> None:
    import redis

    tape = sim_tape(duration_s=300, seed=3)
    day = day_of(tape.start_us)
    lake = Lake.open(str(tmp_path / "lake"))
    lake.append_bronze("trades", "BTCUSDT", bronze_trades_table(tape.trades), raw=b"sim", raw_format="csv",
                       source="test")
    build_partitions(SerialRunner(), LakeRef(lake.uri()), ["BTCUSDT"], day, day, params=PARAMS)
    gold = lake.read_table("gold", GOLD_DATASET, "BTCUSDT", day, day).to_pandas()

    # The live processor over the same trades: its latest closed second. Seconds close on event time only
    # (not on the clock), so it stops where the trades stop, inside what silver holds.
    bus, online_store = InProcessBus(), InProcessOnlineStore(ManualClock(tape.end_us + 2_000_000))
    replay(tape, bus, kinds=["trade"])
    processor = Processor(bus, online_store, InMemoryPositionStore(), PARAMS, symbols=["BTCUSDT"],
                          clock=ManualClock(tape.end_us + 2_000_000),
                          settings=ProcessorSettings(close_on_clock=False))
    while processor.step(block_ms=0):
        pass
    processor.step(block_ms=0)
    latest = online_store.get_latest("BTCUSDT")
    assert latest is not None
    assert latest.schema_hash == schema_hash(PARAMS)
    silver_ts = lake.read_table("silver", SILVER_DATASET, "BTCUSDT", day, day)["ts_sec"].to_pylist()
    assert latest.ts_sec in silver_ts[1:]

    params_file = tmp_path / "schema_v1.json"
    params_file.write_text(json.dumps(schema_document(PARAMS)))
    repo = tmp_path / "repo"
    common = ["--lake", str(tmp_path / "lake"), "--params", str(params_file)]
    exported = CliRunner().invoke(cli, ["export", *common, "--start", str(day), "--end", str(day)])
    assert exported.exit_code == 0, exported.output
    made = CliRunner().invoke(cli, ["init", "--repo", str(repo), *common, "--redis-url", redis_url])
    assert made.exit_code == 0, made.output

    _feast(feast_bin, repo, "feast", "apply")
    # Materialize up to the processor's latest second: Redis then holds Feast's row for that second.
    _feast(feast_bin, repo, "feast", "materialize", _iso(tape.start_us), _iso(latest.ts_sec + 500_000))
    entity = pd.DataFrame({"symbol": "BTCUSDT",
                           "event_timestamp": pd.to_datetime(gold["ts_sec"], unit="us", utc=True)})
    entity.to_parquet(tmp_path / "entity.parquet")
    _feast(feast_bin, repo, "python", str(QUERY), str(tmp_path / "entity.parquet"), str(tmp_path / "hist.parquet"),
           "BTCUSDT", str(tmp_path / "online.json"))

    historical = pq.read_table(tmp_path / "hist.parquet").to_pandas().sort_values("event_timestamp")
    assert len(historical) == len(gold) > 200
    assert (historical["event_timestamp"].astype("int64") // 1000).tolist() == gold["ts_sec"].tolist()
    for name in PARAMS.names:
        # Exact: the same float64 values, NaN where silver has NaN (the first seconds, before warm-up).
        np.testing.assert_array_equal(historical[name].to_numpy(), gold[name].to_numpy(), err_msg=name)

    online = json.loads((tmp_path / "online.json").read_text())
    assert online["service"] == f"btcpipe_v1_{schema_hash(PARAMS)[:16]}"
    assert online["tags"] == {"schema_hash": schema_hash(PARAMS)}
    served = [online["rows"][name][0] for name in PARAMS.names]
    np.testing.assert_array_equal(np.asarray(served, dtype=np.float64), np.asarray(latest.values))
    # Feast's keys are its own: btcpipe's features:{symbol}:{ts_sec} rows are not Feast's business.
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys
    assert not any(k.startswith(b"features:") for k in keys)
