"""REST bodies and dump CSV rows → bronze tables, checked against real Binance data in shared/data/excerpts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from btcpipe.binance.json_messages import parse_trade
from btcpipe.binance.rest_parsing import (
    agg_trades_table,
    dump_csv_table,
    klines_table,
    parse_dump_csv,
    rest_trades,
    trade_records,
    trades_table,
)
from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import Trade
from btcpipe.domain.time import day_of
from btcpipe.lake.schemas import BRONZE_AGG_TRADES, BRONZE_KLINES, BRONZE_TRADES

SYMBOL = "BTCUSDT"


def _excerpt(shared_data: Path, name: str) -> bytes:
    return (shared_data / "excerpts" / name).read_bytes()


def test_real_rest_page_equals_the_dump_rows_with_rest_ms_equal_to_dump_us_floor(shared_data: Path) -> None:
    rest = agg_trades_table(orjson.loads(_excerpt(shared_data, "rest-aggTrades-page-00.head131.json")))
    dump = dump_csv_table("aggTrades", _excerpt(shared_data, "minute-2026-09-16T02-30.head183.csv"))
    assert rest.schema.equals(BRONZE_AGG_TRADES)
    assert dump.schema.equals(BRONZE_AGG_TRADES)
    assert rest.num_rows == 131
    head = dump.slice(0, rest.num_rows)
    for column in ("agg_id", "price", "qty", "first_trade_id", "last_trade_id", "is_buyer_maker", "is_best_match"):
        assert rest.column(column).equals(head.column(column)), column
    rest_ts = rest.column("ts_event").to_numpy()
    dump_ts = head.column("ts_event").to_numpy()
    # REST carried ms, the dump µs: the REST time is the dump's truncated to the millisecond.
    np.testing.assert_array_equal(rest_ts, dump_ts // 1000 * 1000)
    assert bool(np.any(dump_ts % 1000 != 0)), "the dump rows should carry sub-millisecond digits"


def test_real_locator_response_is_the_first_row_of_the_minute(shared_data: Path) -> None:
    locator = agg_trades_table(orjson.loads(_excerpt(shared_data, "rest-aggTrades-locator.json")))
    dump = dump_csv_table("aggTrades", _excerpt(shared_data, "minute-2026-09-16T02-30.head183.csv"))
    assert locator.num_rows == 1
    assert locator.column("agg_id")[0].as_py() == dump.column("agg_id")[0].as_py() == 4064947752
    assert locator.column("first_trade_id")[0].as_py() == 6685595042


def test_decimals_are_exact_mantissas_of_the_csv_strings(shared_data: Path) -> None:
    data = _excerpt(shared_data, "BTCUSDT-trades-2025-01-01.head210.csv")
    table = dump_csv_table("trades", data)
    rows = [line.split(",") for line in data.decode().splitlines()]
    assert table.num_rows == len(rows) == 210
    assert decimal_mantissas(table.column("price")).tolist() == [parse_decimal(r[1]) for r in rows]
    assert decimal_mantissas(table.column("qty")).tolist() == [parse_decimal(r[2]) for r in rows]
    assert decimal_mantissas(table.column("quote_qty")).tolist() == [parse_decimal(r[3]) for r in rows]
    assert table.column("id").to_pylist() == [int(r[0]) for r in rows]
    assert table.column("is_buyer_maker").to_pylist() == [r[5] == "True" for r in rows]


def test_us_era_trades_keep_their_microseconds(shared_data: Path) -> None:
    table, unit = parse_dump_csv("trades", _excerpt(shared_data, "BTCUSDT-trades-2025-01-01.head210.csv"))
    assert table.schema.equals(BRONZE_TRADES)
    assert unit == "us"
    ts = table.column("ts_event").to_numpy()
    assert int(ts[0]) == 1735689600010866  # the first trade of 2025-01-01 (REST.md)
    assert day_of(int(ts.min())) == day_of(int(ts.max())) == dt.date(2025, 1, 1)


def test_ms_era_trades_are_converted_to_microseconds(shared_data: Path) -> None:
    data = _excerpt(shared_data, "BTCUSDT-trades-2021-01-01.rows56023.head218.csv")
    table, unit = parse_dump_csv("trades", data)
    assert unit == "ms"
    first_ms = int(data.split(b"\n", 1)[0].split(b",")[4])
    ts = table.column("ts_event").to_numpy()
    assert int(ts[0]) == first_ms * 1000 == 1609462631341000
    assert bool(np.all(ts % 1000 == 0))
    assert day_of(int(ts.min())) == day_of(int(ts.max())) == dt.date(2021, 1, 1)


def test_rest_microsecond_answers_are_taken_as_is(shared_data: Path) -> None:
    body = orjson.loads(_excerpt(shared_data, "rest-aggTrades-page-00.head131.json"))
    dump = dump_csv_table("aggTrades", _excerpt(shared_data, "minute-2026-09-16T02-30.head183.csv"))
    # The same page as the server sends it with X-MBX-TIME-UNIT: MICROSECOND.
    for item, us in zip(body, dump.column("ts_event").to_pylist(), strict=False):
        item["T"] = us
    table = agg_trades_table(body, time_unit="us")
    assert table.column("ts_event").equals(dump.column("ts_event").slice(0, 131))


def test_declared_unit_that_contradicts_the_values_is_refused(shared_data: Path) -> None:
    body = orjson.loads(_excerpt(shared_data, "rest-aggTrades-page-00.head131.json"))
    with pytest.raises(MalformedRecordError, match="declared in us"):
        agg_trades_table(body, time_unit="us")


def test_a_file_mixing_ms_and_us_is_refused() -> None:
    rows = b"1,10.00000000,1.00000000,10.00000000,1609462631341,True,True\n" \
           b"2,10.00000000,1.00000000,10.00000000,1735689600010866,True,True\n"
    with pytest.raises(MalformedRecordError, match="mix milliseconds and microseconds"):
        dump_csv_table("trades", rows)


def test_historical_trades_body_parses_to_bronze_trades() -> None:
    body = [
        {"id": 7, "price": "61837.63000000", "qty": "0.00012000", "quoteQty": "7.42051560", "time": 1723161253000,
         "isBuyerMaker": False, "isBestMatch": True},
        {"id": 8, "price": "61837.62", "qty": "1", "quoteQty": "61837.62", "time": 1723161253001,
         "isBuyerMaker": True, "isBestMatch": True},
    ]
    table = trades_table(body)
    assert table.schema.equals(BRONZE_TRADES)
    assert table.column("ts_event").to_pylist() == [1723161253000000, 1723161253001000]
    assert decimal_mantissas(table.column("price")).tolist() == [6183763000000, 6183762000000]
    assert decimal_mantissas(table.column("qty")).tolist() == [12000, 100000000]
    assert table.column("ts_recv").to_pylist() == [0, 0]


@pytest.mark.parametrize(
    "name", ["BTCUSDT-trades-2025-01-01.head210.csv", "BTCUSDT-trades-2021-01-01.rows56023.head218.csv"]
)
def test_real_trades_as_a_rest_page_give_records_equal_to_the_bronze_rows_and_the_stream_parser(
    shared_data: Path, name: str
) -> None:
    data = _excerpt(shared_data, name)
    rows = [line.split(",") for line in data.decode().splitlines()]
    body = [{"id": int(r[0]), "price": r[1], "qty": r[2], "quoteQty": r[3], "time": int(r[4]),
             "isBuyerMaker": r[5] == "True", "isBestMatch": r[6] == "True"} for r in rows]
    body.reverse()  # records come back in id order whatever the page's order
    records = rest_trades(body, SYMBOL, ts_recv=11)
    table = trades_table(body)
    dump = dump_csv_table("trades", data)  # the same rows through Arrow's CSV reader: an independent parser
    by_id = table.sort_by("id")
    for column in ("id", "ts_event", "price", "qty", "quote_qty", "is_buyer_maker", "is_best_match"):
        assert by_id.column(column).equals(dump.column(column)), column
    assert records == trade_records(dump, SYMBOL, ts_recv=11)
    assert [t.id for t in records] == [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    assert [(t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) for t in records] == [
        (parse_decimal(r[1]), parse_decimal(r[2]), r[5] == "True") for r in rows
    ]
    assert {t.ts_recv for t in records} == {11}
    # The JSON stream's parser gives the same records for the same trades.
    stream = [parse_trade({"s": SYMBOL, "t": t.id, "T": t.ts_event, "p": r[1], "q": r[2], "m": t.is_buyer_maker},
                          time_unit_us=True, ts_recv=11) for t, r in zip(records, rows, strict=True)]
    assert stream == records


def test_trade_records_keep_the_table_receive_times_unless_stamped() -> None:
    body = [{"id": 3, "price": "1.5", "qty": "2", "quoteQty": "3", "time": 1723161253000,
             "isBuyerMaker": True, "isBestMatch": True}]
    table = trades_table(body, ts_recv=99)
    assert trade_records(table, SYMBOL) == [Trade(SYMBOL, 3, 1723161253000000, 150_000_000, 200_000_000, True,
                                                  ts_recv=99)]
    assert trade_records(table, SYMBOL, ts_recv=7)[0].ts_recv == 7
    with pytest.raises(MalformedRecordError, match="bronze trades table"):
        trade_records(agg_trades_table([]), SYMBOL)


def test_klines_body_parses_to_bronze_klines() -> None:
    body = [[1723161240000, "61800.00000000", "61900.10000000", "61750.00000000", "61850.00000000",
             "12.34567000", 1723161299999, "763000.12345678", 421, "6.10000000", "377000.00000000", "0"]]
    table = klines_table(body)
    assert table.schema.equals(BRONZE_KLINES)
    row = table.to_pylist()[0]
    assert row["open_time"] == 1723161240000000
    assert row["close_time"] == 1723161299999000
    assert row["n_trades"] == 421
    assert str(row["high"]) == "61900.10000000"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"code": -1121}, "expected a JSON array"),
        ([{"a": 1, "p": "1.0", "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": False}], r"\[0\]: missing field"),
        ([{"a": "1", "p": "1.0", "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": False, "M": True}],
         "expected an integer"),
        ([{"a": 1, "p": 1.0, "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": False, "M": True}],
         "expected a decimal string"),
        ([{"a": 1, "p": "1.123456789", "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": False, "M": True}],
         "aggTrades.p"),
        ([{"a": 1, "p": "abc", "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": False, "M": True}], "aggTrades.p"),
        ([{"a": 1, "p": "1.0", "q": "1.0", "f": 1, "l": 1, "T": 1723161253000, "m": "no", "M": True}],
         "expected true/false"),
    ],
)
def test_malformed_rest_items_raise_clear_errors(body: object, match: str) -> None:
    with pytest.raises(MalformedRecordError, match=match):
        agg_trades_table(body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rows",
    [
        b"1,10.00000000,1.00000000,10.00000000,1609462631341,Maybe,True\n",
        b"1,10.000000001,1.00000000,10.00000000,1609462631341,True,True\n",
        b"1,10.00000000,1.00000000,10.00000000\n",
        b"1,10.00000000,,10.00000000,1609462631341,True,True\n",
    ],
)
def test_malformed_csv_rows_raise_clear_errors(rows: bytes) -> None:
    with pytest.raises(MalformedRecordError, match="trades dump CSV"):
        dump_csv_table("trades", rows)


def test_csv_with_a_header_row_is_read_without_it() -> None:
    rows = b"id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n" \
           b"5,10.50000000,2.00000000,21.00000000,1735689600010866,False,True\n"
    table = dump_csv_table("trades", rows)
    assert table.num_rows == 1
    assert table.column("id").to_pylist() == [5]


def test_empty_inputs_give_empty_tables_of_the_schema() -> None:
    assert dump_csv_table("aggTrades", b"").schema.equals(BRONZE_AGG_TRADES)
    assert agg_trades_table([]).num_rows == 0
    assert isinstance(trades_table([]), pa.Table)
