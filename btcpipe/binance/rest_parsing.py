"""Binance REST bodies and bulk-dump CSV rows → bronze Arrow tables (pure: no IO, no clock).

Prices and quantities stay exact: decimal strings become ``decimal128(·, 8)`` through Arrow's string →
decimal cast, which refuses to round (a value with a 9th decimal is an error, not a silent change).
Times become int64 µs. REST answers in ms unless asked for µs (``X-MBX-TIME-UNIT: MICROSECOND``), and
the dumps switched from ms to µs on 2025-01-01, so the unit is always read off the values' magnitude
(``btcpipe.domain.time.is_microseconds``); a declared unit that disagrees with the values is an error,
because trusting it would shift every time by a factor of 1000.

REST trades have ONE parser, ``trades_table``; ``trade_records`` turns its rows into ``Trade`` records, so
the bronze table and the records the ingestor publishes after a gap fill cannot disagree.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE, SCALE, decimal_mantissas
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_MS, is_microseconds
from btcpipe.lake.schemas import BRONZE_AGG_TRADES, BRONZE_KLINES, BRONZE_TRADES

TimeUnit = Literal["ms", "us"]
DumpKind = Literal["trades", "aggTrades"]

# Dump CSV columns (headerless), in file order, with the Arrow type each is read as.
_TRADES_CSV: list[tuple[str, pa.DataType]] = [
    ("id", pa.int64()),
    ("price", PRICE),
    ("qty", QTY),
    ("quote_qty", QUOTE),
    ("time", pa.int64()),
    ("is_buyer_maker", pa.bool_()),
    ("is_best_match", pa.bool_()),
]
_AGG_TRADES_CSV: list[tuple[str, pa.DataType]] = [
    ("agg_id", pa.int64()),
    ("price", PRICE),
    ("qty", QTY),
    ("first_trade_id", pa.int64()),
    ("last_trade_id", pa.int64()),
    ("time", pa.int64()),
    ("is_buyer_maker", pa.bool_()),
    ("is_best_match", pa.bool_()),
]
DUMP_CSV_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {"trades": _TRADES_CSV, "aggTrades": _AGG_TRADES_CSV}
DUMP_SCHEMAS: dict[str, pa.Schema] = {"trades": BRONZE_TRADES, "aggTrades": BRONZE_AGG_TRADES}


def detect_time_unit(values: npt.NDArray[np.int64], declared: TimeUnit | None = None) -> TimeUnit:
    """The unit of a column of epoch times, from their magnitude; all values must agree (and with ``declared``)."""
    if values.shape[0] == 0:
        return declared or "us"
    lo, hi = int(values.min()), int(values.max())
    if lo <= 0:
        raise MalformedRecordError(f"epoch time {lo} is not positive")
    unit: TimeUnit = "us" if is_microseconds(lo) else "ms"
    if is_microseconds(hi) != (unit == "us"):
        raise MalformedRecordError(f"times mix milliseconds and microseconds ({lo} .. {hi})")
    if declared is not None and declared != unit:
        raise MalformedRecordError(f"times were declared in {declared} but look like {unit} ({lo} .. {hi})")
    return unit


def times_to_us(values: npt.NDArray[np.int64], declared: TimeUnit | None = None) -> npt.NDArray[np.int64]:
    unit = detect_time_unit(values, declared)
    return values * US_PER_MS if unit == "ms" else values


def _int_column(values: list[Any], what: str) -> npt.NDArray[np.int64]:
    try:
        # Refuse floats and strings: Binance ids and times are JSON integers.
        if any(type(v) is not int for v in values):
            bad = next(v for v in values if type(v) is not int)
            raise MalformedRecordError(f"{what}: expected an integer, got {bad!r}")
        return np.array(values, dtype=np.int64)
    except OverflowError as exc:
        raise MalformedRecordError(f"{what}: integer out of int64 range") from exc


def _bool_column(values: list[Any], what: str) -> pa.Array:
    if any(type(v) is not bool for v in values):
        bad = next(v for v in values if type(v) is not bool)
        raise MalformedRecordError(f"{what}: expected true/false, got {bad!r}")
    return pa.array(values, type=pa.bool_())


def _decimal_column(values: list[Any], type_: pa.DataType, what: str) -> pa.Array:
    if any(type(v) is not str for v in values):
        bad = next(v for v in values if type(v) is not str)
        raise MalformedRecordError(f"{what}: expected a decimal string, got {bad!r}")
    try:
        return pa.array(values, type=pa.string()).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MalformedRecordError(f"{what}: {exc}") from exc


def _fields(items: Sequence[Any], keys: Sequence[str], what: str) -> dict[str, list[Any]]:
    if not isinstance(items, list):
        raise MalformedRecordError(f"{what}: expected a JSON array, got {type(items).__name__}")
    out: dict[str, list[Any]] = {k: [] for k in keys}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MalformedRecordError(f"{what}[{i}]: expected an object, got {item!r:.80}")
        try:
            for k in keys:
                out[k].append(item[k])
        except KeyError as exc:
            raise MalformedRecordError(f"{what}[{i}]: missing field {exc}") from exc
    return out


def agg_trades_table(items: Sequence[Any], *, time_unit: TimeUnit | None = None) -> pa.Table:
    """A REST ``/api/v3/aggTrades`` body (list of ``{a,p,q,f,l,T,m,M}``) as a BRONZE_AGG_TRADES table."""
    f = _fields(items, ("a", "p", "q", "f", "l", "T", "m", "M"), "aggTrades")
    return pa.Table.from_arrays(
        [
            pa.array(_int_column(f["a"], "aggTrades.a")),
            pa.array(times_to_us(_int_column(f["T"], "aggTrades.T"), time_unit)),
            _decimal_column(f["p"], PRICE, "aggTrades.p"),
            _decimal_column(f["q"], QTY, "aggTrades.q"),
            pa.array(_int_column(f["f"], "aggTrades.f")),
            pa.array(_int_column(f["l"], "aggTrades.l")),
            _bool_column(f["m"], "aggTrades.m"),
            _bool_column(f["M"], "aggTrades.M"),
        ],
        schema=BRONZE_AGG_TRADES,
    )


def trades_table(items: Sequence[Any], *, time_unit: TimeUnit | None = None, ts_recv: int = 0) -> pa.Table:
    """A REST ``/api/v3/historicalTrades`` (or ``/trades``) body as a BRONZE_TRADES table.

    ``ts_recv`` is 0 for history: nobody received these trades live, and a download time would lie.
    """
    f = _fields(items, ("id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"), "trades")
    n = len(f["id"])
    return pa.Table.from_arrays(
        [
            pa.array(_int_column(f["id"], "trades.id")),
            pa.array(times_to_us(_int_column(f["time"], "trades.time"), time_unit)),
            _decimal_column(f["price"], PRICE, "trades.price"),
            _decimal_column(f["qty"], QTY, "trades.qty"),
            _decimal_column(f["quoteQty"], QUOTE, "trades.quoteQty"),
            _bool_column(f["isBuyerMaker"], "trades.isBuyerMaker"),
            _bool_column(f["isBestMatch"], "trades.isBestMatch"),
            pa.array(np.full(n, ts_recv, dtype=np.int64)),
        ],
        schema=BRONZE_TRADES,
    )


def trade_records(table: pa.Table, symbol: str, *, ts_recv: int | None = None) -> list[Trade]:
    """BRONZE_TRADES rows as ``Trade`` records in id order, with the exact mantissas of the table's decimals.

    ``ts_recv`` stamps every record (a gap fill knows when its page arrived); None keeps the table's column.
    """
    if not table.schema.equals(BRONZE_TRADES):
        raise MalformedRecordError(f"expected a bronze trades table, got columns {table.column_names}")
    ids = table.column("id").to_numpy()
    order = np.argsort(ids, kind="stable")
    recv = (
        [ts_recv] * table.num_rows
        if ts_recv is not None
        else table.column("ts_recv").to_numpy()[order].tolist()
    )
    exponent = -SCALE
    return [
        Trade(symbol, i, ts, p, q, m, exponent, exponent, r)
        for i, ts, p, q, m, r in zip(
            ids[order].tolist(),
            table.column("ts_event").to_numpy()[order].tolist(),
            decimal_mantissas(table.column("price"))[order].tolist(),
            decimal_mantissas(table.column("qty"))[order].tolist(),
            np.asarray(table.column("is_buyer_maker").to_numpy(zero_copy_only=False))[order].tolist(),
            recv,
            strict=True,
        )
    ]


def rest_trades(
    items: Sequence[Any], symbol: str, *, time_unit: TimeUnit | None = None, ts_recv: int = 0
) -> list[Trade]:
    """A REST ``/api/v3/historicalTrades`` (or ``/trades``) body as ``Trade`` records in id order."""
    return trade_records(trades_table(items, time_unit=time_unit), symbol, ts_recv=ts_recv)


def klines_table(rows: Sequence[Any], *, time_unit: TimeUnit | None = None) -> pa.Table:
    """A REST ``/api/v3/klines`` body (arrays of 12) as a BRONZE_KLINES table."""
    if not isinstance(rows, list):
        raise MalformedRecordError(f"klines: expected a JSON array, got {type(rows).__name__}")
    cols: list[list[Any]] = [[] for _ in range(11)]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 11:
            raise MalformedRecordError(f"klines[{i}]: expected an array of 12 fields, got {row!r:.80}")
        for j in range(11):
            cols[j].append(row[j])
    open_us = times_to_us(_int_column(cols[0], "klines.openTime"), time_unit)
    close_us = times_to_us(_int_column(cols[6], "klines.closeTime"), time_unit)
    return pa.Table.from_arrays(
        [
            pa.array(open_us),
            pa.array(close_us),
            _decimal_column(cols[1], PRICE, "klines.open"),
            _decimal_column(cols[2], PRICE, "klines.high"),
            _decimal_column(cols[3], PRICE, "klines.low"),
            _decimal_column(cols[4], PRICE, "klines.close"),
            _decimal_column(cols[5], QUOTE, "klines.volume"),
            _decimal_column(cols[7], QUOTE, "klines.quoteVolume"),
            pa.array(_int_column(cols[8], "klines.count")),
            _decimal_column(cols[9], QUOTE, "klines.takerBuyBase"),
            _decimal_column(cols[10], QUOTE, "klines.takerBuyQuote"),
        ],
        schema=BRONZE_KLINES,
    )


def dump_csv_table(kind: DumpKind, data: bytes, *, time_unit: TimeUnit | None = None) -> pa.Table:
    """Headerless dump CSV rows (``trades`` or ``aggTrades``) as a bronze table; µs times."""
    return parse_dump_csv(kind, data, time_unit=time_unit)[0]


def parse_dump_csv(kind: DumpKind, data: bytes, *, time_unit: TimeUnit | None = None) -> tuple[pa.Table, TimeUnit]:
    """Dump CSV rows as a bronze table, and the unit the file's times were in.

    Decimals are parsed straight to decimal128 by Arrow's CSV reader (exact; a value needing a 9th
    decimal is refused). ``time_unit`` pins the unit for a chunk of a file whose unit is already known.
    """
    columns = DUMP_CSV_COLUMNS.get(kind)
    if columns is None:
        raise MalformedRecordError(f"no dump CSV layout for kind {kind!r}")
    if not data.strip():
        return DUMP_SCHEMAS[kind].empty_table(), time_unit or "us"
    # Spot dumps have no header; tolerate one (some archive revisions carried it) rather than misparse.
    skip = 1 if data[:1].isalpha() else 0
    try:
        raw = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=[n for n, _ in columns], skip_rows=skip, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types=dict(columns),
                true_values=["True", "true"],
                false_values=["False", "false"],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise MalformedRecordError(f"{kind} dump CSV: {exc}") from exc
    if any(raw.column(i).null_count for i in range(raw.num_columns)):
        raise MalformedRecordError(f"{kind} dump CSV has empty fields")
    times = raw.column("time").to_numpy()
    unit = detect_time_unit(times, time_unit)
    ts_col = pa.array(times * US_PER_MS if unit == "ms" else times)
    if kind == "trades":
        arrays = [
            raw.column("id"),
            ts_col,
            raw.column("price"),
            raw.column("qty"),
            raw.column("quote_qty"),
            raw.column("is_buyer_maker"),
            raw.column("is_best_match"),
            pa.array(np.zeros(raw.num_rows, dtype=np.int64)),
        ]
    else:
        arrays = [
            raw.column("agg_id"),
            ts_col,
            raw.column("price"),
            raw.column("qty"),
            raw.column("first_trade_id"),
            raw.column("last_trade_id"),
            raw.column("is_buyer_maker"),
            raw.column("is_best_match"),
        ]
    return pa.Table.from_arrays(arrays, schema=DUMP_SCHEMAS[kind]), unit


def in_time_range(table: pa.Table, start_us: int, end_us: int, column: str = "ts_event") -> pa.Table:
    """Rows with ``start_us <= column < end_us``."""
    col = table.column(column)
    mask = pc.and_(pc.greater_equal(col, start_us), pc.less(col, end_us))
    return table.filter(mask)
