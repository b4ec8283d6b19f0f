"""``btcpipe backfill`` killed with SIGKILL at random points resumes without a gap or a duplicate."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest
from support.backfill import SYMBOL, assert_trades_equal_tape, sim_tape, stored_rows

from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.lake import Lake

pytestmark = pytest.mark.timeout(180)
KILLS = 6


def _command(base_url: str, lake: Path, tape: MarketTape) -> list[str]:
    return [
        sys.executable, "-m", "btcpipe.cli.main", "backfill",
        "--symbol", SYMBOL, "--kind", "trades", "--source", "rest",
        "--start", str(tape.start_us), "--end", str(tape.end_us + 1),
        "--base-url", base_url, "--lake", str(lake), "--page-limit", "300", "--progress", "none",
    ]


def _run_and_kill_after(cmd: list[str], pages: int, delay_s: float) -> int:
    """Start the backfill, SIGKILL it ``delay_s`` after its ``pages``-th page is written; its return code."""
    env = {**os.environ, "BTCPIPE_LOG_LEVEL": "DEBUG", "BTCPIPE_LOG_FORMAT": "json"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    seen = 0
    killer: threading.Timer | None = None
    for line in proc.stderr:
        if b'"page written"' not in line:
            continue
        seen += 1
        if seen == pages:
            # A random instant after a page: inside the next request, the next append, or between them.
            killer = threading.Timer(delay_s, proc.send_signal, args=(signal.SIGKILL,))
            killer.start()
            break
    proc.wait(timeout=60)
    if killer is not None:
        killer.join()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()
    return proc.returncode


def test_backfill_resumes_after_sigkill_at_random_points_without_gaps_or_duplicates(tmp_path: Path) -> None:
    tape = sim_tape(seed=23, duration_s=400)
    lake_dir = tmp_path / "lake"
    rng = random.Random(20240809)
    kills = 0
    with LocalExchange(tape) as ex:
        ex.faults.set(latency_s=0.001, jitter_s=0.004, seed=4)
        cmd = _command(ex.base_url, lake_dir, tape)
        held = 0
        for _ in range(KILLS):
            code = _run_and_kill_after(cmd, pages=rng.randint(1, 5), delay_s=rng.uniform(0.0, 0.03))
            assert code == -signal.SIGKILL, f"the run was meant to be killed mid-way (exit {code})"
            kills += 1
            # What a killed run leaves is a gap-free prefix of the trades, each once, and it only grows.
            lake = Lake.open(str(lake_dir))
            table = lake.read_bronze("trades", SYMBOL)
            ids = table.column("id").to_numpy()
            np.testing.assert_array_equal(ids, tape.trades.id[: ids.shape[0]])
            assert stored_rows(lake, "trades") == ids.shape[0]
            assert ids.shape[0] >= held
            held = ids.shape[0]
        assert 0 < held < len(tape.trades), "the kills should leave the backfill unfinished"
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = orjson.loads(done.stdout)
    assert kills >= 5
    assert result["resumed_from"] == held + int(tape.trades.id[0])
    assert result["rows_added"] == len(tape.trades) - held
    assert_trades_equal_tape(Lake.open(str(lake_dir)), tape)
