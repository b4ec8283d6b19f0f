"""Helpers shared by the backfill integration tests: simulated tapes and exact bronze-vs-tape checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.tape import MarketTape, aggregate_trades
from btcpipe.lake.lake import Lake
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate

SYMBOL = "BTCUSDT"
# 2025-01-01 00:00 UTC: the µs era of the dumps; 2024-12-31 is the ms era.
US_ERA_START = 1_735_689_600_000_000
MS_ERA_START = US_ERA_START - 86_400_000_000


def sim_tape(seed: int, duration_s: int, start_us: int = US_ERA_START) -> MarketTape:
    return simulate(SimConfig(symbol=SYMBOL, seed=seed, start_us=start_us, duration_s=duration_s))


def stored_rows(lake: Lake, kind: str) -> int:
    """Rows in every committed bronze part (before any read-time de-duplication)."""
    total = 0
    for day in lake.bronze_days(kind, SYMBOL):
        manifest = lake.manifest(kind, SYMBOL, day)
        assert manifest is not None
        total += sum(f.rows for f in manifest.files)
    return total


def assert_trades_equal_tape(lake: Lake, tape: MarketTape, *, ms_times: bool = False) -> None:
    """Bronze trades equal the tape's trades exactly: ids, times, prices, quantities, sides; no duplicates."""
    table = lake.read_bronze("trades", SYMBOL)
    t = tape.trades
    assert table.num_rows == len(t), f"{table.num_rows} rows in bronze, {len(t)} in the tape"
    assert stored_rows(lake, "trades") == len(t), "bronze holds duplicate rows"
    np.testing.assert_array_equal(table.column("id").to_numpy(), t.id)
    expected_ts = t.ts_event // 1000 * 1000 if ms_times else t.ts_event
    np.testing.assert_array_equal(table.column("ts_event").to_numpy(), expected_ts)
    np.testing.assert_array_equal(decimal_mantissas(table.column("price")), t.price)
    np.testing.assert_array_equal(decimal_mantissas(table.column("qty")), t.qty)
    np.testing.assert_array_equal(table.column("is_buyer_maker").to_numpy(zero_copy_only=False), t.is_buyer_maker)


def assert_agg_trades_equal_tape(lake: Lake, tape: MarketTape) -> None:
    table = lake.read_bronze("aggTrades", SYMBOL)
    aggs = aggregate_trades(tape.trades)
    assert table.num_rows == len(aggs)
    assert stored_rows(lake, "aggTrades") == len(aggs)
    np.testing.assert_array_equal(table.column("agg_id").to_numpy(), aggs.agg_id)
    np.testing.assert_array_equal(table.column("ts_event").to_numpy(), aggs.ts_event)
    np.testing.assert_array_equal(table.column("first_trade_id").to_numpy(), aggs.first_trade_id)
    np.testing.assert_array_equal(table.column("last_trade_id").to_numpy(), aggs.last_trade_id)
    np.testing.assert_array_equal(decimal_mantissas(table.column("price")), aggs.price)
    np.testing.assert_array_equal(decimal_mantissas(table.column("qty")), aggs.qty)


def tape_day(tape: MarketTape) -> dt.date:
    return dt.datetime.fromtimestamp(tape.start_us // 1_000_000, tz=dt.UTC).date()


def two_symbol_tapes(seed: int, duration_s: int, start_us: int) -> list[MarketTape]:
    """BTCUSDT and ETHUSDT over the same span, simulated from different seeds."""
    return [simulate(SimConfig(symbol=symbol, seed=seed + i, start_us=start_us, duration_s=duration_s))
            for i, symbol in enumerate(("BTCUSDT", "ETHUSDT"))]


def bronze_files(root: Path) -> dict[str, bytes]:
    """Every bronze file (parts, kept raw payloads, manifests) by path, for byte comparisons."""
    base = root / "bronze"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
