"""Parity end to end: the whole live path (local exchange SBE → ingestor → bus → processor → online store)
against the batch builder, on the real recording and on a simulated hour; and the comparison itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.batch import FeatureFrame
from btcpipe.features.spec import FeatureParams, feature_names
from btcpipe.market.simulator import SimConfig, simulate
from btcpipe.run.parity import ParityReport, compare_rows, run_parity

REPO = Path(__file__).resolve().parents[2]


def test_parity_command_on_the_real_recording_finds_every_value_equal(recording_paths: list[Path]) -> None:
    args = [arg for p in recording_paths for arg in ("--recording", str(p))]
    done = subprocess.run([sys.executable, "-m", "btcpipe.cli.main", "parity", *args, "--speed", "40", "--json"],
                          capture_output=True, timeout=150, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["rows_compared"] > 500  # ~10 min of BTCUSDT after the warm-up
    assert report["rows_different"] == report["rows_missing_online"] == report["rows_missing_offline"] == 0
    assert set(report["max_abs_diff"]) == set(feature_names(with_spread=True))
    assert all(v == 0.0 for v in report["max_abs_diff"].values())
    assert report["warmup"]["rows"] == 59
    assert "lookback" in report["warmup"]["reason"]
    live = report["live"]
    assert live["late_events"] == 0
    assert live["trades_processed"] == live["trades_ingested"] > 19_000
    assert live["trade_gaps"] == 0


def test_parity_on_a_simulated_hour() -> None:
    tape = simulate(SimConfig(seed=5, duration_s=3600))
    report = run_parity(tape, speed=100.0, timeout_s=150)
    assert report.ok, json.dumps(report.to_dict())[:3000]
    assert report.rows_compared > 3400
    assert report.live["late_events"] == 0


def _frame(n: int) -> FeatureFrame:
    names = feature_names()
    rng = np.random.default_rng(0)
    ts = 1_704_067_200_000_000 + US_PER_SEC * np.arange(1, n + 1, dtype=np.int64)
    return FeatureFrame(ts, rng.normal(size=(len(names), n)), names)


def test_comparison_reports_a_changed_value_a_missing_row_and_one_sided_nan() -> None:
    frame = _frame(10)
    online = {int(t): tuple(frame.columns[:, i].tolist()) for i, t in enumerate(frame.ts_sec.tolist())}
    t2, t5, t7 = (int(frame.ts_sec[k]) for k in (2, 5, 7))
    changed = list(online[t2])
    changed[3] += 1e-12  # one ulp-scale difference is a difference
    online[t2] = tuple(changed)
    del online[t5]
    nan_row = list(online[t7])
    nan_row[0] = float("nan")
    online[t7] = tuple(nan_row)
    online[int(frame.ts_sec[-1]) - 60 * US_PER_SEC] = online[t2]  # before the compared span: ignored
    params = FeatureParams(0.1)
    report = compare_rows(online, frame, complete_from=int(frame.ts_sec[1]),
                          report=ParityReport("BTCUSDT", "test", "h", params.to_json()))
    assert not report.ok
    assert report.rows_compared == 8
    assert report.rows_missing_online == 1
    assert report.rows_different == 2
    assert report.max_abs_diff[frame.names[3]] > 0
    assert report.nan_mismatches[frame.names[0]] == 1
    assert {d["feature"] for d in report.first_differences} == {frame.names[3], frame.names[0]}


def test_comparison_of_identical_rows_with_warmup_nans_is_ok() -> None:
    frame = _frame(5)
    frame.columns[:, 0] = np.nan
    online = {int(t): tuple(frame.columns[:, i].tolist()) for i, t in enumerate(frame.ts_sec.tolist())}
    report = compare_rows(online, frame, complete_from=int(frame.ts_sec[0]),
                          report=ParityReport("BTCUSDT", "test", "h", {}))
    assert report.ok
    assert report.rows_equal == 5
