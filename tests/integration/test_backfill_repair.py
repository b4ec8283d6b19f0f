"""A backfill repairs bronze inside its span: it quarantines parts that contradict their manifest and fetches
every hole ``btcpipe lake check`` reports again (REST by fromId, dumps by the day), from the real local exchange."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.backfill import SYMBOL, US_ERA_START, assert_trades_equal_tape, sim_tape, tape_day

from btcpipe.binance.dumps import DumpsClient
from btcpipe.binance.rest import BinanceRestClient
from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.check import check_lake
from btcpipe.lake.lake import Lake
from btcpipe.lake.manifest import FileEntry
from btcpipe.services.backfill import backfill

pytestmark = pytest.mark.timeout(120)
DAY_US = 86_400_000_000


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return sim_tape(seed=23, duration_s=1200)


def _client(url: str) -> BinanceRestClient:
    return BinanceRestClient(url, backoff_base_s=0.005, backoff_cap_s=0.05, rng=random.Random(5))


def _parts(lake: Lake, day: dt.date) -> list[FileEntry]:
    manifest = lake.manifest("trades", SYMBOL, day)
    assert manifest is not None
    return list(manifest.files)


def _forget(lake: Lake, day: dt.date, entry: FileEntry) -> None:
    """A part gone together with its manifest entry: a plain id hole, no integrity error."""
    manifest = lake.manifest("trades", SYMBOL, day)
    assert manifest is not None
    lake.put_manifest(manifest.with_files([f for f in manifest.files if f.path != entry.path]))
    lake.store.delete(entry.path)


def _damage(lake: Lake, day: dt.date) -> tuple[FileEntry, FileEntry, FileEntry, FileEntry]:
    """Four kinds of damage: the head part forgotten, a middle part forgotten, a listed part deleted, a part
    whose bytes were altered."""
    parts = sorted(_parts(lake, day), key=lambda f: f.first_id or 0)
    assert len(parts) >= 8, f"the span must be written in several parts, not {len(parts)}"
    head, forgotten, deleted, corrupted = parts[0], parts[2], parts[4], parts[6]
    _forget(lake, day, head)
    _forget(lake, day, forgotten)
    lake.store.delete(deleted.path)
    data = bytearray(lake.store.get(corrupted.path))
    data[len(data) // 2] ^= 0xFF
    lake.store.put(corrupted.path, bytes(data))
    before = check_lake(lake, "trades", SYMBOL, US_ERA_START, US_ERA_START + DAY_US)
    assert not before.integrity_ok
    gaps = [(g.first_missing, g.last_missing) for d in before.days for g in d.unknown_gaps]
    assert (forgotten.first_id, forgotten.last_id) in gaps
    return head, forgotten, deleted, corrupted


def _assert_repaired(lake: Lake, tape: MarketTape, result: dict[str, object], deleted: FileEntry,
                     corrupted: FileEntry) -> None:
    quarantined = {q["path"]: q for q in result["quarantined"]}  # type: ignore[attr-defined]
    assert set(quarantined) == {deleted.path, corrupted.path}
    assert quarantined[deleted.path]["moved_to"] is None  # nothing left to move
    moved_to = quarantined[corrupted.path]["moved_to"]
    assert moved_to == f"quarantine/{corrupted.path}"
    assert lake.store.exists(moved_to)
    assert "sha256" in orjson.loads(lake.store.get(f"{moved_to}.reason.json"))["reason"]
    assert result["holes_left"] == 0
    after = check_lake(lake, "trades", SYMBOL, US_ERA_START, US_ERA_START + DAY_US)
    assert after.integrity_ok
    assert after.ok, [d.to_dict() for d in after.days]
    assert_trades_equal_tape(lake, tape)


def test_rest_backfill_quarantines_bad_parts_and_refetches_every_hole_in_the_span(
    tape: MarketTape, tmp_path: Path
) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    end = tape.end_us + 1
    with LocalExchange(tape) as ex:
        with _client(ex.base_url) as client:
            backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=tape.start_us, end_us=end, source="rest",
                     page_limit=400, compact=False)
        head, forgotten, deleted, corrupted = _damage(lake, tape_day(tape))
        with _client(ex.base_url) as client:
            result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=tape.start_us, end_us=end,
                              source="rest", page_limit=400)
    holes = [(h["first_id"], h["last_id"]) for h in result.holes]
    assert (head.first_id, head.last_id) == holes[0], "the head of the span is a hole too"
    for part in (forgotten, deleted, corrupted):
        assert (part.first_id, part.last_id) in holes
    assert result.rows_added == head.rows + forgotten.rows + deleted.rows + corrupted.rows
    assert all(h["rows_added"] > 0 for h in result.holes)
    _assert_repaired(lake, tape, result.to_dict(), deleted, corrupted)


def test_dump_backfill_quarantines_bad_parts_and_refills_the_day(tmp_path: Path) -> None:
    tape = sim_tape(seed=29, duration_s=900)
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, DumpsClient(ex.base_url, chunk_bytes=32 * 1024) as client:
        backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START, end_us=US_ERA_START + DAY_US,
                 source="dumps", compact=False)
        _, _, deleted, corrupted = _damage(lake, tape_day(tape))
        result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=US_ERA_START,
                          end_us=US_ERA_START + DAY_US, source="dumps")
    assert len(result.holes) >= 3
    _assert_repaired(lake, tape, result.to_dict(), deleted, corrupted)


def test_backfill_command_says_what_it_quarantined_and_repaired(tape: MarketTape, tmp_path: Path) -> None:
    from btcpipe.cli.main import cli

    lake_dir = tmp_path / "lake"
    lake = Lake.open(str(lake_dir))
    with LocalExchange(tape) as ex:
        args = ["backfill", "--start", str(tape.start_us), "--end", str(tape.end_us + 1), "--lake", str(lake_dir),
                "--base-url", ex.base_url, "--page-limit", "400", "--no-compact", "--progress", "none"]
        assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
        _, _, deleted, corrupted = _damage(lake, tape_day(tape))
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.output[result.output.index("{"):])
    assert {q["path"] for q in doc["quarantined"]} == {deleted.path, corrupted.path}
    assert doc["holes_left"] == 0
    assert len(doc["holes"]) == 4
