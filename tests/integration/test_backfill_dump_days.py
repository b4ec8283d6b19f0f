"""Dump backfills of several symbols × days as one task per (symbol, day): threads equal serial byte for
byte, a second run adds nothing, a bad checksum stops the run with nothing written for that day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.backfill import US_ERA_START, bronze_files, two_symbol_tapes

from btcpipe.cli.backfill import cli
from btcpipe.engines.serial import SerialRunner
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.lake import Lake
from btcpipe.lake.ref import LakeRef
from btcpipe.services.backfill_days import backfill_dump_days

pytestmark = pytest.mark.timeout(180)
SYMBOLS = ("BTCUSDT", "ETHUSDT")
# Ten minutes either side of 2025-01-01: the 2024-12-31 dump has ms times, the 2025-01-01 one µs.
START = US_ERA_START - 600_000_000
DAYS = (dt.date(2024, 12, 31), dt.date(2025, 1, 1))


def _cli(lake: Path, url: str, *extra: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli, ["--symbols", ",".join(SYMBOLS), "--source", "dumps", "--kind", "trades",
                                   "--start", "2024-12-31", "--end", "2025-01-02", "--lake", str(lake),
                                   "--base-url", url, "--max-retries", "0", *extra])
    return out.exit_code, out.output


def test_threads_backfill_every_symbol_and_day_like_serial_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    tapes = two_symbol_tapes(41, 1200, START)
    with LocalExchange(tapes) as ex:
        serial = backfill_dump_days(SerialRunner(), LakeRef(str(tmp_path / "serial")), ex.base_url, kind="trades",
                                    symbols=SYMBOLS, start_day=DAYS[0], end_day=DAYS[1])
        code, output = _cli(tmp_path / "threads", ex.base_url, "--engine", "threads", "--jobs", "4")
        assert code == 0, output
        again_code, again = _cli(tmp_path / "threads", ex.base_url, "--engine", "threads", "--jobs", "4")
    assert again_code == 0, again
    results = json.loads(output)["results"]
    assert [(r["symbol"], r["days"]) for r in results] == [(s, [d.isoformat()]) for s in SYMBOLS for d in DAYS]
    assert [r["rows_added"] for r in results] == [r.rows_added for r in serial]
    lake = Lake.open(str(tmp_path / "threads"))
    for tape in tapes:
        assert lake.read_bronze("trades", tape.symbol).num_rows == len(tape.trades)
    assert bronze_files(tmp_path / "threads") == bronze_files(tmp_path / "serial")
    rerun = json.loads(again)["results"]
    assert [r["rows_added"] for r in rerun] == [0, 0, 0, 0]  # every row already there: nothing written
    assert all(r["rows_duplicate"] > 0 for r in rerun)


def test_a_bad_checksum_fails_the_run_and_writes_nothing_for_that_day(tmp_path: Path) -> None:
    with LocalExchange(two_symbol_tapes(43, 1200, START)) as ex:
        ex.faults.set_dump_fault("wrong_checksum")
        code, output = _cli(tmp_path / "lake", ex.base_url, "--engine", "threads")
    assert code == 1
    assert "sha256" in output
    assert "CHECKSUM" in output
    assert "Traceback" not in output
    assert not (tmp_path / "lake" / "bronze").exists()


def test_rest_is_not_spread_over_an_engine(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["--symbols", "BTCUSDT", "--source", "rest", "--start", "2025-01-01",
                                   "--end", "2025-01-02", "--lake", str(tmp_path / "lake")])
    assert out.exit_code == 2
    assert "REST pages run in one process" in out.output
