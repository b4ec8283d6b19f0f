"""Daily dumps: byte-identical to Binance's CSV rows, ms/µs era switch, deterministic zip + CHECKSUM."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import AggTradeTape, MarketTape, TradeTape, aggregate_trades
from btcpipe.domain.time import day_start_us
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.rest.dumps import (
    agg_trades_csv,
    daily_csv,
    daily_dump,
    dump_times_in_us,
    parse_dump_name,
    trades_csv,
)
from btcpipe.market.handmade import synthetic_tape


def _trades_from_dump_rows(raw: bytes, times_in_us: bool) -> TradeTape:
    rows = list(csv.reader(io.StringIO(raw.decode())))
    n = len(rows)
    return TradeTape(
        id=np.fromiter((int(r[0]) for r in rows), np.int64, n),
        ts_event=np.fromiter((int(r[4]) * (1 if times_in_us else 1000) for r in rows), np.int64, n),
        price=np.fromiter((parse_decimal(r[1]) for r in rows), np.int64, n),
        qty=np.fromiter((parse_decimal(r[2]) for r in rows), np.int64, n),
        is_buyer_maker=np.fromiter((r[5] == "True" for r in rows), np.bool_, n),
    )


@pytest.mark.parametrize(
    ("name", "times_in_us"),
    [("BTCUSDT-trades-2025-01-01.head210.csv", True), ("BTCUSDT-trades-2021-01-01.rows56023.head218.csv", False)],
)
def test_trades_csv_reproduces_real_dump_rows_byte_for_byte(shared_data: Path, name: str, times_in_us: bool) -> None:
    raw = (shared_data / "excerpts" / name).read_bytes()
    assert trades_csv(_trades_from_dump_rows(raw, times_in_us), times_in_us=times_in_us) == raw


def test_agg_trades_csv_reproduces_real_dump_rows_byte_for_byte(shared_data: Path) -> None:
    raw = (shared_data / "excerpts" / "minute-2026-09-16T02-30.head183.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode())))
    n = len(rows)
    aggs = AggTradeTape(
        agg_id=np.fromiter((int(r[0]) for r in rows), np.int64, n),
        ts_event=np.fromiter((int(r[5]) for r in rows), np.int64, n),
        price=np.fromiter((parse_decimal(r[1]) for r in rows), np.int64, n),
        qty=np.fromiter((parse_decimal(r[2]) for r in rows), np.int64, n),
        first_trade_id=np.fromiter((int(r[3]) for r in rows), np.int64, n),
        last_trade_id=np.fromiter((int(r[4]) for r in rows), np.int64, n),
        is_buyer_maker=np.fromiter((r[6] == "True" for r in rows), np.bool_, n),
    )
    assert agg_trades_csv(aggs, times_in_us=True) == raw


def test_quote_qty_is_exact_even_where_the_naive_int64_product_overflows() -> None:
    price = np.array([parse_decimal("999999.99"), parse_decimal("61837.63"), parse_decimal("0.01")], np.int64)
    qty = np.array([parse_decimal("9000.00000"), parse_decimal("0.00123"), parse_decimal("0.00001")], np.int64)
    got = quote_mantissas(price, qty)
    expect = [Decimal("999999.99") * Decimal("9000"), Decimal("61837.63") * Decimal("0.00123"), Decimal("1E-7")]
    assert [Decimal(int(m)) / Decimal(10**8) for m in got] == expect


def test_dump_era_switches_from_ms_to_us_on_2025_01_01() -> None:
    assert not dump_times_in_us(dt.date(2024, 12, 31))
    assert dump_times_in_us(dt.date(2025, 1, 1))
    # A tape spanning the switch: the last trades of 2024 print ms, the first of 2025 print µs.
    switch = day_start_us(dt.date(2025, 1, 1))
    tape = synthetic_tape(start_us=switch - 60_000_000, n_orders=400, mean_gap_us=300_000)
    before, n_before = daily_csv(tape, "trades", dt.date(2024, 12, 31))
    after, n_after = daily_csv(tape, "trades", dt.date(2025, 1, 1))
    assert n_before > 0
    assert n_after > 0
    assert n_before + n_after == len(tape.trades)
    times_before = [int(line.split(b",")[4]) for line in before.splitlines()]
    times_after = [int(line.split(b",")[4]) for line in after.splitlines()]
    assert times_before == (tape.trades.ts_event[:n_before] // 1000).tolist()
    assert times_after == tape.trades.ts_event[n_before:].tolist()
    assert max(times_before) < switch // 1000
    assert min(times_after) >= switch


def test_daily_dump_zip_holds_one_headerless_csv_and_checksum_matches() -> None:
    tape = synthetic_tape(n_orders=300)
    day = dt.date(2025, 1, 1)
    data, line = daily_dump(tape, "aggTrades", day)
    assert line == f"{hashlib.sha256(data).hexdigest()}  BTCUSDT-aggTrades-2025-01-01.zip"
    assert not line.endswith("\n")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["BTCUSDT-aggTrades-2025-01-01.csv"]
        text = zf.read("BTCUSDT-aggTrades-2025-01-01.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    aggs = aggregate_trades(tape.trades)
    assert len(rows) == len(aggs)
    assert rows[0][0] == str(aggs.agg_id[0])  # no header row
    assert [int(r[3]) for r in rows] == aggs.first_trade_id.tolist()
    assert [int(r[4]) for r in rows] == aggs.last_trade_id.tolist()
    assert {r[6] for r in rows} <= {"True", "False"}
    assert {r[7] for r in rows} == {"True"}
    assert [parse_decimal(r[2]) for r in rows] == aggs.qty.tolist()


def test_daily_dump_is_deterministic_and_only_holds_its_utc_day() -> None:
    start = day_start_us(dt.date(2025, 3, 1)) - 30_000_000
    tape = synthetic_tape(start_us=start, n_orders=300)
    first = daily_dump(tape, "trades", dt.date(2025, 3, 1))
    assert daily_dump(tape, "trades", dt.date(2025, 3, 1)) == first
    csv_text, n = daily_csv(tape, "trades", dt.date(2025, 3, 1))
    ids = [int(line.split(b",")[0]) for line in csv_text.splitlines()]
    in_day = tape.trades.ts_event >= day_start_us(dt.date(2025, 3, 1))
    assert ids == tape.trades.id[in_day].tolist()
    assert n == int(in_day.sum())


def test_daily_csv_of_a_day_without_trades_is_empty() -> None:
    tape = synthetic_tape(n_orders=10)
    assert daily_csv(tape, "trades", dt.date(2020, 1, 1)) == (b"", 0)


def test_a_busy_day_dump_keeps_every_row_in_order() -> None:
    n = 200_000  # bench/bench_exchange.py times a full 1.5 M-row day
    rng = np.random.default_rng(3)
    start = day_start_us(dt.date(2025, 1, 1))
    trades = TradeTape(
        id=np.arange(n, dtype=np.int64) + 4_359_935_386,
        ts_event=np.sort(rng.integers(start, start + 86_400_000_000, n)),
        price=rng.integers(9_000_000, 10_000_000, n) * 1_000_000,
        qty=rng.integers(1, 100_000, n) * 1_000,
        is_buyer_maker=rng.random(n) < 0.5,
    )
    data, _line = daily_dump(MarketTape("BTCUSDT", trades), "trades", dt.date(2025, 1, 1))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        body = zf.read("BTCUSDT-trades-2025-01-01.csv")
    assert body.count(b"\n") == n
    last = body.rsplit(b"\n", 2)[-2].split(b",")
    assert int(last[0]) == int(trades.id[-1])
    assert int(last[4]) == int(trades.ts_event[-1])


def test_dump_names_parse_and_refuse_garbage() -> None:
    name = parse_dump_name("BTCUSDT-aggTrades-2024-04-20.zip")
    assert (name.symbol, name.kind, name.day) == ("BTCUSDT", "aggTrades", dt.date(2024, 4, 20))
    assert name.path == "/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-04-20.zip"
    for bad in ("BTCUSDT-klines-2024-04-20.zip", "BTCUSDT-trades-2024-04.zip", "../etc/passwd", "x.zip"):
        with pytest.raises(DataError, match="not a daily dump name"):
            parse_dump_name(bad)
