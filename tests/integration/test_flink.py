"""The Flink job (PyFlink in .venv-flink, a local MiniCluster per test) against the batch builder.

Bit-exact rows on both real recordings, a restore from a checkpoint after an injected failure with no
row missing or repeated, and a continuously monitored source where a heartbeat closes the last second
(rows also put in a real redis-server through the store adapter). Each job takes 30–90 s on 2 busy cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.flink import ensure_flink_python
from support.processor import sim_tape

from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.time import US_PER_SEC, floor_sec
from btcpipe.engines.flink.elements import encode_line
from btcpipe.engines.flink.launch import JobOptions, run_job, start_job
from btcpipe.features.batch import fit_params
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.spec import WINDOW_BARS, schema_hash
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.run.flink_parity import read_rows, run_flink_parity, write_payloads
from btcpipe.run.parity import ParityReport, batch_rows, compare_rows
from btcpipe.services.replay import tape_from_recording
from btcpipe.store.redis_store import RedisOnlineStore
from btcpipe.wire.codec import encode_heartbeat

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def flink_python() -> Path:
    python = ensure_flink_python()
    os.environ["BTCPIPE_FLINK_PYTHON"] = str(python)
    return python


def _summary(report: ParityReport) -> str:
    return (f"{report.rows_compared} compared, {report.rows_different} different, "
            f"{report.rows_missing_online} missing, {report.first_differences[:3]}, live {report.live}")


@pytest.mark.parametrize("day", ["20240808", "20240809"])
def test_flink_rows_equal_the_batch_builders_on_a_real_recording(
    flink_python: Path, recording_paths: list[Path], day: str, tmp_path: Path,
) -> None:
    recording = next(p for p in recording_paths if day in p.name)
    report = run_flink_parity(tape_from_recording([recording]), work_dir=tmp_path)
    assert report.ok, _summary(report)
    assert report.rows_compared > 200
    assert report.live["repeated_rows"] == 0


def test_flink_restores_from_its_checkpoint_after_a_failure_with_no_row_missing_or_repeated(
    flink_python: Path, recording_paths: list[Path], tmp_path: Path,
) -> None:
    recording = next(p for p in recording_paths if "20240808" in p.name)
    report = run_flink_parity(tape_from_recording([recording]), work_dir=tmp_path, checkpoint_ms=300,
                              fail_after=2000)
    # FailOnce raises only once a checkpoint has completed, so the restart restores from it (Flink deletes the
    # checkpoint when the job finishes)
    assert report.live["injected_failure"], "the failure was not injected"
    assert report.ok, _summary(report)
    assert report.live["repeated_rows"] == 0
    assert report.rows_compared > 200


def _wait(what: str, ok: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if proc.poll() is not None:
            pytest.fail(f"the Flink job exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _drop(directory: Path, name: str, lines: list[str]) -> None:
    """A new file appears whole in the watched directory (hidden while written: Flink skips dot files)."""
    hidden = directory / f".{name}"
    hidden.write_text("".join(line + "\n" for line in lines))
    hidden.rename(directory / name)


@pytest.mark.services
def test_streaming_source_closes_the_last_second_only_when_a_heartbeat_moves_the_watermark(
    flink_python: Path, redis_url: str, tmp_path: Path,
) -> None:
    tape = sim_tape(duration_s=100)
    params = fit_params(TradeArrays.from_tape(tape.trades, tape.exponent).qty, with_spread=False)
    watched, work = tmp_path / "in", tmp_path / "work"
    watched.mkdir()
    payloads = tmp_path / "payloads.txt"
    write_payloads(tape, payloads, with_best_bid_ask=False)
    out = tmp_path / "rows.jsonl"
    last_row = floor_sec(int(tape.trades.ts_event[-1])) + US_PER_SEC  # the row holding the last trade
    proc = start_job(JobOptions(watched, out, params, work, follow=True, checkpoint_ms=300, redis_url=redis_url))
    try:
        _drop(watched, "part-0.txt", payloads.read_text().splitlines())

        def rows() -> dict[int, tuple[float, ...]]:
            return read_rows(out, tape.symbol)[0] if out.exists() else {}

        _wait("the rows before the last one", lambda: last_row - US_PER_SEC in rows(), proc, work / "job.log", 240)
        assert last_row not in rows()  # nothing has shown its second is over: it stays open
        _drop(watched, "part-1.txt", [encode_line(encode_heartbeat(Heartbeat(tape.symbol, last_row)))])
        _wait("the heartbeat's row", lambda: last_row in rows(), proc, work / "job.log", 120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    got, repeated = read_rows(out, tape.symbol)
    assert repeated == 0
    assert max(got) == last_row
    bars_from = min(got) - US_PER_SEC
    frame = batch_rows(tape, params, bars_from=bars_from, end_us=last_row + US_PER_SEC)
    report = compare_rows(got, frame, complete_from=bars_from + WINDOW_BARS * US_PER_SEC,
                          report=ParityReport(tape.symbol, "flink streaming", schema_hash(params), params.to_json()))
    assert report.ok, _summary(report)
    store = RedisOnlineStore(RedisOptions(url=redis_url))
    try:
        vector = store.get_features(tape.symbol, last_row)
        assert vector is not None
        assert np.array_equal(np.array(vector.values), np.array(got[last_row]), equal_nan=True)
    finally:
        store.close()


def test_two_symbols_at_parallelism_two_each_equal_their_batch_rows(flink_python: Path, tmp_path: Path) -> None:
    tapes = [sim_tape("BTCUSDT", seed=5, duration_s=300), sim_tape("ETHUSDT", seed=6, duration_s=300)]
    params = fit_params(TradeArrays.from_tape(tapes[0].trades, tapes[0].exponent).qty, with_spread=False)
    payloads, out, work = tmp_path / "payloads.txt", tmp_path / "rows.jsonl", tmp_path / "work"
    write_payloads(tapes, payloads, with_best_bid_ask=False)
    run_job(JobOptions(payloads, out, params, work, parallelism=2))
    for tape in tapes:
        got, repeated = read_rows(out, tape.symbol)
        assert repeated == 0
        bars_from = min(got) - US_PER_SEC
        last_row = floor_sec(int(tape.trades.ts_event[-1])) + US_PER_SEC
        frame = batch_rows(tape, params, bars_from=bars_from, end_us=last_row + US_PER_SEC)
        report = compare_rows(got, frame, complete_from=bars_from + WINDOW_BARS * US_PER_SEC, report=ParityReport(
            tape.symbol, "flink p=2", schema_hash(params), params.to_json()))
        assert report.ok, _summary(report)
        assert report.rows_compared >= 230
