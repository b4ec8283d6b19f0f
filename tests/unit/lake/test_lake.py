"""The lake's behaviour on any ObjectStore.

This module is the one suite for every store: here it runs on a local directory, and
``tests/integration/test_lake_s3.py`` runs the same test functions on S3 (``moto_server``) by
overriding the ``store`` fixture.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE, mantissas_to_decimal
from btcpipe.domain.decimal import parse_decimal, to_float
from btcpipe.domain.errors import LakeError, LakeIntegrityError
from btcpipe.domain.time import US_PER_SEC, day_start_us
from btcpipe.lake.lake import Lake
from btcpipe.lake.manifest import sha256_hex
from btcpipe.lake.objects import LocalObjectStore, ObjectStore, list_dirs
from btcpipe.lake.schemas import BRONZE_KLINES, BRONZE_SCHEMAS, BRONZE_TRADES, SILVER_TRADES

SYMBOL = "BTCUSDT"
MIDNIGHT = day_start_us(dt.date(2024, 8, 9))
D8, D9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "lake")


def trades(ids: list[int], ts: list[int], prices: list[str] | None = None) -> pa.Table:
    """A bronze trades table; prices default to distinct exact values derived from the id."""
    n = len(ids)
    price_m = np.array([parse_decimal(p) for p in prices] if prices else [6_180_000_000_000 + i for i in ids])
    qty_m = np.array([1_000 + i % 997 for i in ids], dtype=np.int64)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts_event": pa.array(ts, pa.int64()),
            "price": mantissas_to_decimal(price_m, PRICE),
            "qty": mantissas_to_decimal(qty_m, QTY),
            "quote_qty": mantissas_to_decimal(np.zeros(n, dtype=np.int64), QUOTE),
            "is_buyer_maker": pa.array([i % 3 == 0 for i in ids]),
            "is_best_match": pa.array([True] * n),
            "ts_recv": pa.array([t + 5 for t in ts], pa.int64()),
        },
        schema=BRONZE_TRADES,
    )


def raw_of(table: pa.Table) -> bytes:
    return orjson.dumps(table.select(["id", "ts_event"]).to_pylist())


def append(lake: Lake, table: pa.Table, raw: bytes | None = None):  # type: ignore[no-untyped-def]
    return lake.append_bronze("trades", SYMBOL, table, raw=raw if raw is not None else raw_of(table),
                              raw_format="json", source="test")


def span(first: int, n: int, start_ts: int, step: int = 400_000) -> pa.Table:
    ids = list(range(first, first + n))
    return trades(ids, [start_ts + (i - first) * step for i in ids])


# --- the object store itself ------------------------------------------------------------------------
def test_store_put_get_list_delete_round_trip(store: ObjectStore) -> None:
    store.put("a/b/c.bin", b"one")
    store.put("a/b/c.bin", b"two")  # replaces
    store.put("a/x.bin", b"\x00" * 10)
    store.put("z.bin", b"")
    assert store.get("a/b/c.bin") == b"two"
    assert store.get("z.bin") == b""
    assert store.list() == ["a/b/c.bin", "a/x.bin", "z.bin"]
    assert store.list("a/") == ["a/b/c.bin", "a/x.bin"]
    assert list_dirs(store, "a/") == ["b"]
    assert store.exists("a/x.bin")
    assert not store.exists("a/nothing.bin")
    store.delete("a/x.bin")
    store.delete("a/x.bin")  # deleting a missing key is fine
    assert not store.exists("a/x.bin")
    with pytest.raises(LakeError, match="no object"):
        store.get("a/x.bin")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a"])
def test_store_refuses_keys_that_escape_or_are_empty(store: ObjectStore, key: str) -> None:
    with pytest.raises(LakeError, match="invalid object key"):
        store.put(key, b"x")


# --- bronze -----------------------------------------------------------------------------------------
def test_append_partitions_by_date_and_hour_across_midnight(store: ObjectStore) -> None:
    lake = Lake(store)
    # 20 trades from 23:59:55 on the 8th to 00:00:03 on the 9th.
    table = span(100, 20, MIDNIGHT - 5 * US_PER_SEC)
    result = append(lake, table)
    assert (result.rows_added, result.rows_duplicate) == (20, 0)
    assert result.partitions == [
        f"bronze/trades/symbol={SYMBOL}/date=2024-08-08/hour=23",
        f"bronze/trades/symbol={SYMBOL}/date=2024-08-09/hour=00",
    ]
    assert lake.bronze_days("trades", SYMBOL) == [D8, D9]
    m8, m9 = lake.manifest("trades", SYMBOL, D8), lake.manifest("trades", SYMBOL, D9)
    assert m8 is not None
    assert m9 is not None
    assert m8.totals.last_ts is not None
    assert m8.totals.last_ts < MIDNIGHT <= (m9.totals.first_ts or 0)
    assert m8.totals.rows + m9.totals.rows == 20
    assert (m8.totals.first_id, m9.totals.last_id) == (100, 119)
    assert m8.totals.last_id is not None
    assert m9.totals.first_id == m8.totals.last_id + 1
    assert lake.read_bronze("trades", SYMBOL).equals(table)


def test_reappending_the_same_payload_writes_nothing(store: ObjectStore) -> None:
    lake = Lake(store)
    table = span(1, 50, MIDNIGHT)
    append(lake, table)
    before = {k: store.get(k) for k in store.list()}
    again = append(lake, table)
    assert (again.rows_added, again.rows_duplicate, again.partitions) == (0, 50, [])
    assert {k: store.get(k) for k in store.list()} == before
    assert lake.read_bronze("trades", SYMBOL).num_rows == 50


def test_dedup_within_the_table_and_against_existing_parts(store: ObjectStore) -> None:
    lake = Lake(store)
    append(lake, span(1, 10, MIDNIGHT))  # ids 1..10
    # ids 6..15, with 12 twice and out of order: 5 already stored, one repeat inside the table.
    overlap = span(6, 10, MIDNIGHT + 5 * 400_000)
    repeated = pa.concat_tables([overlap.slice(6, 1), overlap]).take(pa.array([3, 1, 0, 2, 4, 5, 6, 7, 8, 9, 10]))
    result = append(lake, repeated)
    assert (result.rows_added, result.rows_duplicate) == (5, 6)
    out = lake.read_bronze("trades", SYMBOL)
    assert out["id"].to_pylist() == list(range(1, 16))
    assert out.equals(span(1, 15, MIDNIGHT))
    manifest = lake.manifest("trades", SYMBOL, D9)
    assert manifest is not None
    assert [(f.first_id, f.last_id, f.rows) for f in manifest.files] == [(1, 10, 10), (11, 15, 5)]


def test_manifest_totals_and_sha256_describe_every_file(store: ObjectStore) -> None:
    lake = Lake(store)
    append(lake, span(1, 30, MIDNIGHT + 3_600 * US_PER_SEC - 10 * US_PER_SEC, step=US_PER_SEC))
    append(lake, span(31, 5, MIDNIGHT + 3_700 * US_PER_SEC))
    manifest = lake.manifest("trades", SYMBOL, D9)
    assert manifest is not None
    assert len(manifest.files) == 3  # hour 00, hour 01, then a second part in hour 01
    for entry in manifest.files:
        data = store.get(entry.path)
        assert entry.sha256 == sha256_hex(data)
        assert entry.bytes == len(data)
    assert manifest.totals.rows == sum(f.rows for f in manifest.files) == 35
    assert (manifest.totals.first_id, manifest.totals.last_id) == (1, 35)
    assert manifest.totals.first_ts == MIDNIGHT + 3_590 * US_PER_SEC
    assert manifest.totals.last_ts == MIDNIGHT + 3_700 * US_PER_SEC + 4 * 400_000
    assert lake.bronze_max_id("trades", SYMBOL) == 35


def test_raw_payload_is_kept_byte_for_byte_once(store: ObjectStore) -> None:
    lake = Lake(store)
    table = span(500, 4, MIDNIGHT - 2 * US_PER_SEC, step=US_PER_SEC)  # touches both days
    raw = b'[{"a":1}, {"odd spacing": true}]\n'
    append(lake, table, raw)
    raws = [k for k in store.list() if "/raw-" in k]
    assert len(raws) == 1
    assert store.get(raws[0]) == raw
    assert raws[0].endswith(".json")
    for day in (D8, D9):
        manifest = lake.manifest("trades", SYMBOL, day)
        assert manifest is not None
        assert [(r.path, r.sha256, r.source, r.first_id, r.last_id) for r in manifest.raw] == [
            (raws[0], sha256_hex(raw), "test", 500, 503)
        ]


def test_tampered_part_raises_integrity_error(store: ObjectStore) -> None:
    lake = Lake(store)
    append(lake, span(1, 10, MIDNIGHT))
    manifest = lake.manifest("trades", SYMBOL, D9)
    assert manifest is not None
    path = manifest.files[0].path
    good = store.get(path)
    store.put(path, good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(LakeIntegrityError, match="sha256"):
        lake.read_bronze("trades", SYMBOL)
    store.delete(path)
    with pytest.raises(LakeIntegrityError, match="listed in its manifest"):
        lake.read_bronze("trades", SYMBOL)


def test_malformed_manifest_is_an_integrity_error(store: ObjectStore) -> None:
    lake = Lake(store)
    append(lake, span(1, 3, MIDNIGHT))
    store.put(f"bronze/trades/symbol={SYMBOL}/date=2024-08-09/_manifest.json", b'{"format": "btcpipe.manif')
    with pytest.raises(LakeIntegrityError, match="malformed manifest"):
        lake.read_bronze("trades", SYMBOL)


class CrashBeforeManifest:
    """A store that dies (like a killed process) when the lake tries to commit a manifest."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        if key.endswith("_manifest.json"):
            raise KeyboardInterrupt("killed before the manifest")
        self.inner.put(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_crash_between_data_and_manifest_leaves_an_ignored_orphan(store: ObjectStore) -> None:
    lake = Lake(store)
    append(lake, span(1, 10, MIDNIGHT))
    committed = lake.read_bronze("trades", SYMBOL)
    with pytest.raises(KeyboardInterrupt):
        append(Lake(CrashBeforeManifest(store)), span(11, 10, MIDNIGHT + 4 * US_PER_SEC))  # type: ignore[arg-type]
    assert any("part-11-20" in k for k in store.list())  # the orphan is there ...
    assert lake.read_bronze("trades", SYMBOL).equals(committed)  # ... and nobody sees it
    assert lake.bronze_max_id("trades", SYMBOL) == 10
    retry = append(lake, span(11, 10, MIDNIGHT + 4 * US_PER_SEC))
    assert retry.rows_added == 10
    assert lake.read_bronze("trades", SYMBOL).equals(span(1, 20, MIDNIGHT))


def test_crash_in_a_first_ever_write_hides_the_whole_day(store: ObjectStore) -> None:
    with pytest.raises(KeyboardInterrupt):
        append(Lake(CrashBeforeManifest(store)), span(1, 5, MIDNIGHT))  # type: ignore[arg-type]
    lake = Lake(store)
    assert lake.bronze_days("trades", SYMBOL) == []
    assert lake.bronze_max_id("trades", SYMBOL) is None
    assert lake.read_bronze("trades", SYMBOL).num_rows == 0


def test_read_bronze_selects_the_half_open_time_range(store: ObjectStore) -> None:
    lake = Lake(store)
    table = span(1, 100, MIDNIGHT - 50 * US_PER_SEC, step=US_PER_SEC)
    append(lake, table)
    start, end = MIDNIGHT - 10 * US_PER_SEC, MIDNIGHT + 10 * US_PER_SEC
    out = lake.read_bronze("trades", SYMBOL, start, end)
    assert out["ts_event"].to_pylist() == list(range(start, end, US_PER_SEC))
    assert lake.read_bronze("trades", SYMBOL, end_us=MIDNIGHT - 50 * US_PER_SEC).num_rows == 0
    assert lake.read_bronze("trades", SYMBOL, start_us=MIDNIGHT).num_rows == 50
    assert lake.read_bronze("trades", "ETHUSDT").schema.equals(BRONZE_TRADES)


def test_compact_merges_parts_and_keeps_content_identical(store: ObjectStore) -> None:
    lake = Lake(store)
    for page in range(8):  # a REST backfill: one part per page
        append(lake, span(1 + page * 25, 25, MIDNIGHT + page * 25 * 100_000, step=100_000))
    before = lake.read_bronze("trades", SYMBOL)
    old = lake.manifest("trades", SYMBOL, D9)
    assert old is not None
    assert len(old.files) == 8
    result = lake.compact("trades", SYMBOL, D9)
    assert (result.hours_compacted, result.files_before, result.files_after) == (1, 8, 1)
    new = lake.manifest("trades", SYMBOL, D9)
    assert new is not None
    assert len(new.files) == 1
    assert dataclasses.replace(new.totals, files=8) == old.totals
    assert new.raw == old.raw
    assert lake.read_bronze("trades", SYMBOL).equals(before)
    assert not any(store.exists(f.path) for f in old.files)
    assert lake.compact("trades", SYMBOL, D9).hours_compacted == 0
    assert append(lake, span(1, 200, MIDNIGHT, step=100_000)).rows_added == 0


def test_klines_are_partitioned_and_deduplicated_by_open_time(store: ObjectStore) -> None:
    lake = Lake(store)
    opens = [MIDNIGHT - 60_000_000, MIDNIGHT, MIDNIGHT + 60_000_000]
    p = mantissas_to_decimal(np.full(3, 6_180_000_000_000, dtype=np.int64), PRICE)
    q = mantissas_to_decimal(np.full(3, 100_000_000, dtype=np.int64), QUOTE)
    klines = pa.table(
        [pa.array(opens, pa.int64()), pa.array([o + 59_999_999 for o in opens], pa.int64()), p, p, p, p,
         q, q, pa.array([7, 8, 9], pa.int64()), q, q],
        schema=BRONZE_KLINES,
    )
    result = lake.append_bronze("klines", SYMBOL, klines, raw=b"a,b\n", raw_format="csv", source="dumps")
    assert result.rows_added == 3
    assert lake.bronze_days("klines", SYMBOL) == [D8, D9]
    assert lake.read_bronze("klines", SYMBOL, MIDNIGHT)["n_trades"].to_pylist() == [8, 9]
    assert lake.append_bronze("klines", SYMBOL, klines, raw=b"x", raw_format="csv", source="d").rows_added == 0


def test_bad_appends_are_refused_with_clear_errors(store: ObjectStore) -> None:
    lake = Lake(store)
    table = span(1, 3, MIDNIGHT)
    with pytest.raises(LakeError, match="unknown bronze kind"):
        lake.append_bronze("candles", SYMBOL, table, raw=b"", raw_format="json", source="t")
    with pytest.raises(LakeError, match="invalid symbol"):
        lake.append_bronze("trades", "btc/usdt", table, raw=b"", raw_format="json", source="t")
    with pytest.raises(LakeError, match="raw format"):
        lake.append_bronze("trades", SYMBOL, table, raw=b"", raw_format="xml", source="t")
    with pytest.raises(LakeError, match="columns"):
        lake.append_bronze("trades", SYMBOL, table.drop_columns(["qty"]), raw=b"", raw_format="json", source="t")
    assert store.list() == []
    empty = lake.append_bronze("trades", SYMBOL, table.slice(0, 0), raw=b"[]", raw_format="json", source="t")
    assert (empty.rows_added, store.list()) == (0, [])


def test_a_null_in_a_required_bronze_column_is_refused_by_name(store: ObjectStore) -> None:
    lake = Lake(store)
    table = span(1, 3, MIDNIGHT)
    loose = pa.schema([f.with_nullable(True) for f in BRONZE_TRADES])
    price = pa.array([None, *table["price"].to_pylist()[1:]], PRICE)
    with_null = table.cast(loose).set_column(2, loose.field("price"), price)
    with pytest.raises(LakeError, match="1 rows have no price"):
        append(lake, with_null)
    # Arrow lets a table declared with the required schema itself hold a null: refused all the same.
    ids = pa.array([1, None, 3], pa.int64())
    declared = pa.Table.from_arrays([ids, *table.columns[1:]], schema=BRONZE_TRADES)
    with pytest.raises(LakeError, match="1 rows have no id"):
        append(lake, declared)
    assert store.list() == []


def test_parts_written_before_the_columns_were_required_still_read(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lake written when every bronze column was nullable reads back with today's schema."""
    lake = Lake(store)
    old_schema = pa.schema([f.with_nullable(True) for f in BRONZE_TRADES])
    with monkeypatch.context() as m:
        m.setitem(BRONZE_SCHEMAS, "trades", old_schema)
        append(lake, span(1, 3, MIDNIGHT).cast(old_schema))
    old_part = next(k for k in store.list() if k.endswith(".parquet"))
    assert pq.read_metadata(pa.BufferReader(store.get(old_part))).schema.column(0).max_definition_level == 1
    append(lake, span(4, 3, MIDNIGHT + 2 * 3_600 * US_PER_SEC))
    back = lake.read_bronze("trades", SYMBOL)
    assert back.schema.equals(BRONZE_TRADES)
    assert back["id"].to_pylist() == list(range(1, 7))


def test_silver_trades_floats_are_the_exact_decimal_conversion(store: ObjectStore) -> None:
    lake = Lake(store)
    prices = ["61837.63000000", "0.00000001", "99999.99999999", "61837.62", "0.1", "12345678.90123456"]
    table = trades(list(range(1, 7)), [MIDNIGHT + i for i in range(6)], prices)
    append(lake, table)
    silver = lake.silver_trades(SYMBOL, MIDNIGHT, MIDNIGHT + US_PER_SEC)
    assert silver.schema.equals(SILVER_TRADES)
    assert silver["price"].to_pylist() == [to_float(parse_decimal(p)) for p in prices]
    assert silver["qty"].to_pylist() == [to_float(1_000 + i) for i in range(1, 7)]
    assert silver["is_buyer_maker"].to_pylist() == table["is_buyer_maker"].to_pylist()


# --- silver / gold ----------------------------------------------------------------------------------
def features(day: dt.date, n: int, scale: float) -> pa.Table:
    start = day_start_us(day)
    return pa.table({"ts_sec": [start + i * US_PER_SEC for i in range(n)], "ret_1s": [i * scale for i in range(n)]})


def test_write_table_replaces_the_partition_and_reads_by_day(store: ObjectStore) -> None:
    lake = Lake(store)
    lake.write_table("gold", "features_v1", SYMBOL, D8, features(D8, 5, 1.0))
    lake.write_table("gold", "features_v1", SYMBOL, D9, features(D9, 3, 1.0))
    first = lake.table_manifest("gold", "features_v1", SYMBOL, D9)
    manifest = lake.write_table("gold", "features_v1", SYMBOL, D9, features(D9, 4, 2.0))
    assert first is not None
    assert not store.exists(first.files[0].path)  # the replaced part is gone
    assert manifest.totals.rows == 4
    assert manifest.totals.first_ts == day_start_us(D9)
    assert lake.table_days("gold", "features_v1", SYMBOL) == [D8, D9]
    assert lake.read_table("gold", "features_v1", SYMBOL).num_rows == 9
    assert lake.read_table("gold", "features_v1", SYMBOL, start_day=D9).equals(features(D9, 4, 2.0))
    assert lake.read_table("gold", "features_v1", SYMBOL, end_day=D8).equals(features(D8, 5, 1.0))
    empty = lake.read_table("gold", "features_v1", SYMBOL, start_day=dt.date(2030, 1, 1))
    assert (empty.num_rows, empty.schema) == (0, features(D8, 1, 1.0).schema)
    assert lake.read_table("silver", "nothing", SYMBOL).num_rows == 0
    assert lake.table_days("silver", "features_v1", SYMBOL) == []


def test_days_written_nullable_and_required_read_together_but_other_types_do_not(store: ObjectStore) -> None:
    lake = Lake(store)
    old_day = features(D8, 3, 1.0)
    required = pa.schema([f.with_nullable(False) for f in old_day.schema])
    lake.write_table("gold", "features_v1", SYMBOL, D8, old_day)
    lake.write_table("gold", "features_v1", SYMBOL, D9, features(D9, 2, 2.0).cast(required))
    both = lake.read_table("gold", "features_v1", SYMBOL)
    assert both["ret_1s"].to_pylist() == [0.0, 1.0, 2.0, 0.0, 2.0]
    lake.write_table("gold", "features_v1", SYMBOL, D9, features(D9, 2, 2.0).cast(
        pa.schema([("ts_sec", pa.int64()), ("ret_1s", pa.float32())])))
    with pytest.raises(LakeError, match="different schemas"):
        lake.read_table("gold", "features_v1", SYMBOL)


def test_write_table_is_idempotent_and_refuses_bronze(store: ObjectStore) -> None:
    lake = Lake(store)
    lake.write_table("silver", "bars", SYMBOL, D8, features(D8, 5, 1.0))
    keys_before = store.list()
    lake.write_table("silver", "bars", SYMBOL, D8, features(D8, 5, 1.0))
    assert store.list() == keys_before
    with pytest.raises(LakeError, match="not 'bronze'"):
        lake.write_table("bronze", "trades", SYMBOL, D8, features(D8, 1, 1.0))  # type: ignore[arg-type]
    with pytest.raises(LakeError, match="invalid dataset"):
        lake.write_table("silver", "../x", SYMBOL, D8, features(D8, 1, 1.0))


def test_real_dump_rows_keep_their_csv_and_exact_values(store: ObjectStore, shared_data: Path) -> None:
    from btcpipe.binance.rest_parsing import dump_csv_table

    lake = Lake(store)
    for name in ("BTCUSDT-trades-2025-01-01.head210.csv", "BTCUSDT-trades-2021-01-01.rows56023.head218.csv"):
        raw = (shared_data / "excerpts" / name).read_bytes()
        table = dump_csv_table("trades", raw)
        assert lake.append_bronze("trades", SYMBOL, table, raw=raw, raw_format="csv", source="dumps").rows_added
        rows = [line.split(",") for line in raw.decode().splitlines()]
        first, last = int(rows[0][0]), int(rows[-1][0])
        day = dt.date(int(name[15:19]), 1, 1)
        manifest = lake.manifest("trades", SYMBOL, day)
        assert manifest is not None
        assert [store.get(r.path) for r in manifest.raw] == [raw]  # the CSV exactly as it came
        back = lake.read_bronze("trades", SYMBOL, day_start_us(day), day_start_us(day + dt.timedelta(days=1)))
        assert back["id"].to_pylist() == list(range(first, last + 1))
        assert [str(p) for p in back["price"].to_pylist()] == [r[1] for r in rows]
        assert [str(q) for q in back["qty"].to_pylist()] == [r[2] for r in rows]
        silver = lake.silver_trades(SYMBOL, day_start_us(day), day_start_us(day + dt.timedelta(days=1)))
        assert silver["price"].to_pylist() == [to_float(parse_decimal(r[1])) for r in rows]
