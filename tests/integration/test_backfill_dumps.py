"""Dump backfill from the local exchange's data.binance.vision twin: exact rows, ms/µs eras, refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from support.backfill import (
    MS_ERA_START,
    SYMBOL,
    US_ERA_START,
    assert_agg_trades_equal_tape,
    assert_trades_equal_tape,
    sim_tape,
)

from btcpipe.binance.dumps import DumpsClient
from btcpipe.domain.errors import ChecksumMismatchError, CorruptArchiveError, ExchangeRequestError
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.lake import Lake
from btcpipe.services.backfill import backfill

pytestmark = pytest.mark.timeout(120)
DAY_US = 86_400_000_000


def test_dump_backfill_of_a_us_era_day_equals_the_simulated_trades(tmp_path: Path) -> None:
    tape = sim_tape(seed=31, duration_s=900)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url, chunk_bytes=64 * 1024) as client:
        result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START,
                          end_us=US_ERA_START + DAY_US, source="dumps")
        backfill(client, lake, symbol=SYMBOL, kind="aggTrades", start_us=US_ERA_START,
                 end_us=US_ERA_START + DAY_US, source="dumps")
    assert_trades_equal_tape(lake, tape)
    assert_agg_trades_equal_tape(lake, tape)
    assert result.days == ["2025-01-01"]
    assert result.pages > 1, "several CSV chunks, each kept with its own raw bytes"
    manifest = lake.manifest("trades", SYMBOL, dt.date(2025, 1, 1))
    assert manifest is not None
    assert {r.format for r in manifest.raw} == {"csv"}
    assert {r.source for r in manifest.raw} == {"dumps"}


def test_span_across_the_ms_to_us_switch_gives_correct_us_times_on_both_sides(tmp_path: Path) -> None:
    # 10 minutes either side of 2025-01-01 00:00: the 2024-12-31 dump is in ms, the 2025-01-01 one in µs.
    start = US_ERA_START - 600_000_000
    tape = sim_tape(seed=37, duration_s=1200, start_us=start)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url) as client:
        result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=MS_ERA_START,
                          end_us=US_ERA_START + DAY_US, source="dumps")
    assert result.days == ["2024-12-31", "2025-01-01"]
    table = lake.read_bronze("trades", SYMBOL)
    t = tape.trades
    before = t.ts_event < US_ERA_START
    assert 0 < int(before.sum()) < len(t)
    expected = np.where(before, t.ts_event // 1000 * 1000, t.ts_event)  # the ms era keeps only ms
    np.testing.assert_array_equal(table.column("id").to_numpy(), t.id)
    np.testing.assert_array_equal(table.column("ts_event").to_numpy(), expected)


def test_checksum_mismatch_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    tape = sim_tape(seed=41, duration_s=300)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url) as client:
        ex.faults.set_dump_fault("wrong_checksum")
        refusal = r"BTCUSDT-trades-2025-01-01\.zip: sha256 is .* nothing written"
        with pytest.raises(ChecksumMismatchError, match=refusal):
            backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START,
                     end_us=US_ERA_START + DAY_US, source="dumps")
    assert lake.store.list() == []


def test_corrupt_zip_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    tape = sim_tape(seed=43, duration_s=300)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url) as client:
        ex.faults.set_dump_fault("corrupt_zip")
        with pytest.raises(CorruptArchiveError, match=r"BTCUSDT-trades-2025-01-01\.zip"):
            backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START,
                     end_us=US_ERA_START + DAY_US, source="dumps")
    assert lake.store.list() == []


def test_a_bad_second_day_keeps_the_good_first_day_and_writes_nothing_of_its_own(tmp_path: Path) -> None:
    start = US_ERA_START - 600_000_000
    tape = sim_tape(seed=47, duration_s=1200, start_us=start)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url) as client:

        def corrupt_after_first_day(progress: object) -> None:
            ex.faults.set_dump_fault("corrupt_zip")

        with pytest.raises(CorruptArchiveError, match="2025-01-01"):
            backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=MS_ERA_START,
                     end_us=US_ERA_START + DAY_US, source="dumps", progress=corrupt_after_first_day)
    assert lake.bronze_days("trades", SYMBOL) == [dt.date(2024, 12, 31)]
    table = lake.read_bronze("trades", SYMBOL)
    assert table.num_rows == int((tape.trades.ts_event < US_ERA_START).sum())


def test_a_day_not_yet_published_is_a_clear_error(tmp_path: Path) -> None:
    tape = sim_tape(seed=53, duration_s=300)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url) as client, pytest.raises(ExchangeRequestError) as info:
        backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START + 30 * DAY_US,
                 end_us=US_ERA_START + 31 * DAY_US, source="dumps")
    assert info.value.status == 404
    assert lake.store.list() == []
