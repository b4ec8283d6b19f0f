"""End to end: ``btcpipe run`` as a user runs it (a real process), embedded and on real servers.

Each run simulates a market ending now, serves it on the local exchange (REST + SBE WebSockets), backfills,
checks, builds features, trains, promotes, runs ingestor → processor → inference live, and writes its report.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from btcpipe.domain.time import US_PER_SEC
from btcpipe.lake.check import check_lake
from btcpipe.lake.lake import Lake
from btcpipe.model.registry import ModelRegistry

STAGES = ["exchange", "backfill", "check", "features", "train", "promote", "live"]  # summary.json: all but report
SHORT = ["--history", "15m", "--duration", "15s", "--epochs", "5", "--view", "log"]


def _btcpipe(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    # The tests share 2 cores with the rest of the suite: a 400 ms tick deadline (config, as a user would set it)
    # keeps a scheduling hiccup from turning a tick into a counted skip; the runs' own latencies stay ~1 ms.
    full_env = {**os.environ, "BTCPIPE_LOG_FORMAT": "json", "BTCPIPE__INFERENCE__DEADLINE_MS": "400", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "btcpipe.cli.main", "run", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, check=False,
    )


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def _predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open() as fh:
        return list(csv.DictReader(fh))


def _assert_live_run(proc: subprocess.CompletedProcess[str], out: Path, max_late: int = 5) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {out / 'report.html'}" in proc.stdout
    summary = _summary(out)
    assert summary["ok"] is True
    assert [s["name"] for s in summary["stages"]] == STAGES
    assert all(s["ok"] for s in summary["stages"])
    live = summary["live"]["summary"]
    assert live["stream_mode"] == "sbe"  # the run's API key made the ingestor use the SBE streams
    # The backfill spent the bulk share of the REST budget; the live reserve lets the depth snapshot go at once.
    assert live["book_synced_after_s"] is not None
    assert live["book_synced_after_s"] < 5.0
    # The trades that happened while the offline stages ran came back as one REST-filled gap.
    assert live["counters"]["gaps"] >= 1
    assert live["counters"]["gap_trades_filled"] > 0
    # ... and the processor read them before closing their seconds. Had it started before the fill reached the bus,
    # every filled trade (hundreds) would be late; a loaded machine (or Kinesis on moto_server, whose reads take
    # 100-300 ms) may still bring a few stream trades past the 200 ms lateness.
    assert live["counters"]["late"] <= max_late

    rows = _predictions(out)
    predicted = {int(r["ts_sec"]) for r in rows}
    assert live["predictions"] == len(rows) == len(predicted)
    # What the product guarantees, loaded machine or not: every tick second of the run is either predicted or
    # listed as skipped with its reason (a tick over its deadline, no features...), never silently missing.
    skipped = {s["ts_sec"]: s for s in live["skipped"]}
    assert all(s["reasons"] and s["outcome"] != "predicted" for s in skipped.values()), skipped
    assert not predicted & skipped.keys()
    ticks = range(live["first_tick"], live["last_tick"] + US_PER_SEC, US_PER_SEC)
    assert len(ticks) >= 12  # 15 s of ticks, a tick or two may fall on the edges
    assert predicted | skipped.keys() == set(ticks)
    assert live["ticks"] == len(ticks)
    c = live["counters"]
    assert c["skipped_ticks"] + c["no_features"] + c["errors"] == len(skipped)
    assert len(predicted) > len(ticks) // 2, f"most seconds should be predicted: {live['skipped']}"
    # The last predictions' outcomes were awaited: all but none realized means shadow evaluation ran.
    assert sum(1 for r in rows if r["realized"]) >= len(rows) - 2
    for name in ("report.html", "predictions_vs_realized.png", "latency_hops.png", "training_loss.png"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "predictions_vs_realized.png" in html
    assert "latency_hops.png" in html
    hops = summary["live"]["hops"]
    for hop in ("exchange→ingest", "ingest→bus", "second end→feature row", "feature row→prediction",
                "second end→prediction", "tick"):
        assert hops[hop]["n"] > 0, hop
        assert 0 <= hops[hop]["p50_ms"] <= hops[hop]["p99_ms"], hop
    return summary


def _assert_lake_clean(lake: Lake, summary: dict[str, Any]) -> None:
    # Backfilled history, the REST gap fill and the live stream's trades together: one id chain, no gap.
    report = check_lake(lake, "trades", "BTCUSDT")
    assert report.ok, report.to_dict()
    backfill = next(s for s in summary["stages"] if s["name"] == "backfill")["summary"]
    assert max(d.last_id for d in report.days if d.last_id) > backfill["last_id"]  # live trades reached bronze
    assert ModelRegistry(lake.store).production_version("btcusdt-10s") == "v1"


@pytest.mark.slow
def test_run_embedded_accounts_for_every_second_and_writes_report_and_a_clean_lake(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _btcpipe([*SHORT, "--out", str(out)])
    summary = _assert_live_run(proc, out)
    assert summary["wiring"]["bus"] == "in-process"
    assert summary["wiring"]["lake"] == str(out / "lake")
    _assert_lake_clean(Lake.open(str(out / "lake")), summary)


@pytest.mark.slow
@pytest.mark.services
def test_run_on_services_uses_kinesis_s3_and_redis(
    tmp_path: Path, redis_url: str, moto_server: Any
) -> None:
    import boto3
    import redis

    boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1").create_bucket(Bucket="run-e2e")
    out = tmp_path / "svc"
    lake_uri = f"s3://run-e2e/{tmp_path.name}"
    env = {"BTCPIPE__STORE__REDIS_URL": redis_url, "BTCPIPE__BUS__KINESIS_ENDPOINT": moto_server.endpoint,
           "BTCPIPE__LAKE__S3_ENDPOINT": moto_server.endpoint}
    proc = _btcpipe([*SHORT, "--out", str(out), "--services", "--use-running", "--lake", lake_uri], env=env)
    summary = _assert_live_run(proc, out, max_late=30)
    assert summary["wiring"]["bus"].startswith("kinesis")
    assert summary["wiring"]["lake"] == lake_uri
    # The rows really went through redis-server: the processor's latest pointer is there.
    client = redis.Redis.from_url(redis_url)
    assert client.exists("features:BTCUSDT:latest") == 1
    client.close()
    _assert_lake_clean(Lake.open(lake_uri, endpoint_url=moto_server.endpoint), summary)


def test_run_names_the_failed_stage_and_exits_nonzero(tmp_path: Path) -> None:
    out = tmp_path / "short"
    # Two minutes of history cannot give the training split enough rows: the train stage must say so.
    proc = _btcpipe(["--history", "2m", "--offline-only", "--view", "log", "--out", str(out)])
    assert proc.returncode == 1
    assert "stage 'train' failed" in proc.stderr
    assert "raise --history" in proc.stderr
    summary = _summary(out)
    assert summary["ok"] is False
    assert summary["failed_stage"] == "train"
    done = {s["name"]: s["ok"] for s in summary["stages"]}
    assert done == {"exchange": True, "backfill": True, "check": True, "features": True, "train": False}
    assert (out / "report.html").read_text().count("FAILED at stage “train”") == 1  # the headline names it


def test_run_refuses_binance_without_allow_network(tmp_path: Path) -> None:
    proc = _btcpipe(["--exchange", "binance", "--out", str(tmp_path / "b")], timeout=60)
    assert proc.returncode == 2
    assert "--allow-network" in proc.stderr
    assert not (tmp_path / "b").exists()  # refused before anything ran


def test_run_rejects_a_garbage_duration() -> None:
    proc = _btcpipe(["--duration", "ten minutes"], timeout=60)
    assert proc.returncode == 2
    assert "not a duration" in proc.stderr


@pytest.mark.slow
def test_run_replays_the_real_recording_live_after_training_on_its_beginning(
    tmp_path: Path, recording_paths: list[Path]
) -> None:
    out = tmp_path / "rec"
    args = [*SHORT, "--out", str(out)]
    for path in recording_paths:
        args += ["--recording", str(path)]
    summary = _assert_live_run(_btcpipe(args), out)
    market = summary["market"]
    assert market["source"] == "recording"
    assert market["trades"] == 19_904  # every trade of the two files (PROVENANCE.md)
    assert market["shift_s"] == int(market["shift_s"])  # whole seconds: second boundaries stay where they were
    _assert_lake_clean(Lake.open(str(out / "lake")), summary)
