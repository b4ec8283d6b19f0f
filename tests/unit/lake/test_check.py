"""``lake check`` and the ``btcpipe lake`` commands, on real recorded trades and on crafted defects."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result

from btcpipe.binance.recording import load_recording
from btcpipe.cli.main import cli
from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE, mantissas_to_decimal
from btcpipe.domain.decimal import to_float
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_SEC, day_start_us
from btcpipe.lake.check import KnownGap, check_lake
from btcpipe.lake.keys import KNOWN_GAPS_KEY
from btcpipe.lake.lake import Lake
from btcpipe.lake.schemas import BRONZE_DEPTH, BRONZE_TRADES

SYMBOL = "BTCUSDT"
DAY9 = dt.date(2024, 8, 9)
D9 = day_start_us(DAY9)


def trades_from_records(records: list[Trade]) -> pa.Table:
    n = len(records)
    return pa.table(
        {
            "id": pa.array([t.id for t in records], pa.int64()),
            "ts_event": pa.array([t.ts_event for t in records], pa.int64()),
            "price": mantissas_to_decimal(np.array([t.price_mantissa for t in records], dtype=np.int64), PRICE),
            "qty": mantissas_to_decimal(np.array([t.qty_mantissa for t in records], dtype=np.int64), QTY),
            # the trade stream carries no quote quantity
            "quote_qty": mantissas_to_decimal(np.zeros(n, dtype=np.int64), QUOTE),
            "is_buyer_maker": pa.array([t.is_buyer_maker for t in records]),
            "is_best_match": pa.array([True] * n),
            "ts_recv": pa.array([t.ts_recv for t in records], pa.int64()),
        },
        schema=BRONZE_TRADES,
    )


def synthetic(ids: list[int], ts: list[int] | None = None) -> pa.Table:
    records = [Trade(SYMBOL, i, (ts[k] if ts else D9 + i * 100_000), 6_180_000_000_000 + i, 1_000, i % 2 == 0,
                     ts_recv=0) for k, i in enumerate(ids)]
    return trades_from_records(records)


def lake_with(tmp_path: Path, *tables: pa.Table) -> Lake:
    lake = Lake.open(str(tmp_path / "lake"))
    for table in tables:
        lake.append_bronze("trades", SYMBOL, table, raw=b"[]", raw_format="json", source="test")
    return lake


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["lake", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def recorded(recording_paths: list[Path]) -> list[tuple[Path, list[Trade]]]:
    return [(path, load_recording([path]).trades) for path in recording_paths]


def test_real_recording_across_midnight_checks_clean_and_converts_exactly(
    tmp_path: Path, recorded: list[tuple[Path, list[Trade]]]
) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    for path, records in recorded:
        raw = gzip.decompress(path.read_bytes())
        result = lake.append_bronze("trades", SYMBOL, trades_from_records(records), raw=raw, raw_format="jsonl",
                                    source="recording")
        assert result.rows_added == len(records)
    report = check_lake(lake, "trades", SYMBOL)
    assert [d.day.isoformat() for d in report.days] == ["2024-08-08", "2024-08-09"]
    assert report.ok, report.to_dict()
    assert sum(d.rows for d in report.days) == 19_904
    assert (report.days[0].first_id, report.days[1].last_id) == (3_735_683_259, 3_735_703_162)
    # 5 min 47 s of day 8 and 5 min 5 s of day 9 have trades: a small share of each whole day.
    assert 0.003 < report.days[0].coverage < 0.005
    assert report.days[0].seconds_in_window == 86_400
    assert 0.95 < report.days[0].span_coverage <= 1.0  # BTCUSDT trades nearly every second
    # bronze → silver keeps every price and quantity exactly the float the live path computes
    silver = lake.silver_trades(SYMBOL)
    everything = [t for _, records in recorded for t in records]
    assert silver["id"].to_pylist() == [t.id for t in everything]
    assert silver["price"].to_pylist() == [to_float(t.price_mantissa, t.price_exponent) for t in everything]
    assert silver["qty"].to_pylist() == [to_float(t.qty_mantissa, t.qty_exponent) for t in everything]


def test_a_gap_is_reported_with_its_range_and_fails_the_command(tmp_path: Path) -> None:
    lake = lake_with(tmp_path, synthetic(list(range(1, 11)) + list(range(14, 21)) + [40]))
    report = check_lake(lake, "trades", SYMBOL)
    gaps = [(g.first_missing, g.last_missing, g.missing, g.known) for g in report.days[0].gaps]
    assert gaps == [(11, 13, 3, False), (21, 39, 19, False)]
    assert report.days[0].gaps[0].after_ts == D9 + 10 * 100_000
    assert report.days[0].gaps[0].before_ts == D9 + 14 * 100_000
    assert not report.ok
    result = run("check", "--lake", str(tmp_path / "lake"), "--json")
    assert result.exit_code == 1
    doc = orjson.loads(result.output)
    assert doc["days"][0]["missing_ids"] == 22
    assert doc["ok"] is False


def test_known_gaps_from_a_file_or_the_lake_pass_the_check(tmp_path: Path) -> None:
    lake = lake_with(tmp_path, synthetic(list(range(1, 11)) + list(range(14, 21))))
    uri = str(tmp_path / "lake")
    toml = tmp_path / "gaps.toml"
    toml.write_text('[[gaps]]\nsymbol = "BTCUSDT"\nkind = "trades"\nfirst_id = 11\nlast_id = 13\nnote = "archive"\n')
    assert run("check", "--lake", uri, "--known-gaps", str(toml)).exit_code == 0
    narrow = tmp_path / "narrow.json"
    narrow.write_text('{"gaps": [{"first_id": 11, "last_id": 12}]}')  # does not cover id 13
    assert run("check", "--lake", uri, "--known-gaps", str(narrow)).exit_code == 1
    other = tmp_path / "other.json"
    other.write_text('[{"first_id": 11, "last_id": 13, "symbol": "ETHUSDT"}]')
    assert run("check", "--lake", uri, "--known-gaps", str(other)).exit_code == 1
    lake.store.put(KNOWN_GAPS_KEY, b'{"gaps": [{"first_id": 1, "last_id": 100, "kind": "trades"}]}')
    result = run("check", "--lake", uri)
    assert result.exit_code == 0, result.output
    assert "gap known: ids 11..13" in result.output


def test_a_gap_across_midnight_is_found(tmp_path: Path) -> None:
    ts = [D9 - 3 * US_PER_SEC, D9 - 2 * US_PER_SEC, D9 + US_PER_SEC, D9 + 2 * US_PER_SEC]
    lake = lake_with(tmp_path, synthetic([1, 2, 5, 6], ts))
    day8, day9 = check_lake(lake, "trades", SYMBOL).days
    assert (day8.gaps, [(g.first_missing, g.last_missing) for g in day9.gaps]) == ([], [(3, 4)])
    # a window that starts on day 9 cannot see day 8, so it does not invent a gap
    assert check_lake(lake, "trades", SYMBOL, start_us=D9).ok


def test_duplicates_and_time_disorder_are_reported(tmp_path: Path) -> None:
    ts = [D9 + k * US_PER_SEC for k in range(10)]
    ts[6] = ts[2]  # id 7 traded before id 6
    lake = lake_with(tmp_path, synthetic(list(range(1, 11)), ts))
    # A second manifest-listed copy of a part (no writer makes one; a buggy one might).
    manifest = lake.manifest("trades", SYMBOL, DAY9)
    assert manifest is not None
    copy = manifest.files[0].path.replace("part-", "part-copy-")
    lake.store.put(copy, lake.store.get(manifest.files[0].path))
    listed_twice = manifest.with_files([*manifest.files, dataclasses.replace(manifest.files[0], path=copy)])
    lake.store.put(f"bronze/trades/symbol={SYMBOL}/date=2024-08-09/_manifest.json", listed_twice.to_bytes())
    day = check_lake(lake, "trades", SYMBOL).days[0]
    assert (day.duplicates, day.out_of_order, day.first_out_of_order_id, day.integrity_errors) == (10, 1, 7, [])
    assert lake.read_bronze("trades", SYMBOL).num_rows == 10  # readers still see each trade once
    assert run("check", "--lake", str(tmp_path / "lake")).exit_code == 1


def test_tampered_file_exits_3_and_orphans_do_not_fail(tmp_path: Path) -> None:
    lake = lake_with(tmp_path, synthetic(list(range(1, 6))))
    uri = str(tmp_path / "lake")
    partition = f"bronze/trades/symbol={SYMBOL}/date=2024-08-09/hour=00/"
    lake.store.put(partition + "part-99-99-deadbeef.parquet", b"left by a killed writer")
    ok = run("check", "--lake", uri)
    assert ok.exit_code == 0, ok.output
    assert "1 orphan file" in ok.output
    manifest = lake.manifest("trades", SYMBOL, DAY9)
    assert manifest is not None
    lake.store.put(manifest.files[0].path, b"PAR1 not what was written")
    bad = run("check", "--lake", uri, "--json")
    assert bad.exit_code == 3
    assert "sha256" in orjson.loads(bad.output)["days"][0]["integrity_errors"][0]


def test_depth_diffs_are_checked_by_their_update_id_chain(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    chain = [(100, 105), (106, 110), (111, 111), (115, 120)]  # 112..114 missing
    levels = pa.array([[]] * 4, BRONZE_DEPTH.field("bids").type)
    depth = pa.table([pa.array([u for u, _ in chain], pa.int64()), pa.array([v for _, v in chain], pa.int64()),
                      pa.array([D9 + k for k in range(4)], pa.int64()), levels, levels, pa.array([0] * 4, pa.int64())],
                     schema=BRONZE_DEPTH)
    lake.append_bronze("depth", SYMBOL, depth, raw=b"", raw_format="jsonl", source="test")
    gaps = check_lake(lake, "depth", SYMBOL).days[0].gaps
    assert [(g.first_missing, g.last_missing, g.missing) for g in gaps] == [(112, 114, 3)]
    known = check_lake(lake, "depth", SYMBOL, known_gaps=[KnownGap(112, 114, SYMBOL, "depth")])
    assert known.ok


def test_bad_invocations_fail_clearly(tmp_path: Path) -> None:
    missing = run("check", "--lake", str(tmp_path / "nowhere"))
    assert missing.exit_code == 4
    assert "no lake at" in missing.output
    assert not (tmp_path / "nowhere").exists()
    lake_with(tmp_path, synthetic([1, 2, 3]))
    uri = str(tmp_path / "lake")
    empty = run("check", "--lake", uri, "--symbol", "ETHUSDT")
    assert empty.exit_code == 1
    assert "no data" in empty.output
    garbage = tmp_path / "gaps.json"
    garbage.write_text('{"gaps": [{"first_id": "x"')
    result = run("check", "--lake", uri, "--known-gaps", str(garbage))
    assert result.exit_code == 4
    assert "malformed known-gaps file" in result.output
    assert run("check", "--lake", uri, "--start", "yesterday-ish").exit_code == 2


def test_ls_and_compact_commands(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake_with(tmp_path, *(synthetic(list(range(1 + 10 * k, 11 + 10 * k))) for k in range(4)))
    rows = [orjson.loads(line) for line in run("ls", "--lake", uri, "--json").output.splitlines()]
    assert [(r["layer"], r["dataset"], r["date"], r["files"], r["rows"]) for r in rows] == [
        ("bronze", "trades", "2024-08-09", 4, 40)
    ]
    compacted = run("compact", "--lake", uri, "--kind", "trades")
    assert compacted.exit_code == 0
    assert "4 → 1 files" in compacted.output
    rows = [orjson.loads(line) for line in run("ls", "--lake", uri, "--json").output.splitlines()]
    assert (rows[0]["files"], rows[0]["rows"], rows[0]["last_id"]) == (1, 40, 40)
    assert "2024-08-09" in run("ls", "--lake", uri).output
