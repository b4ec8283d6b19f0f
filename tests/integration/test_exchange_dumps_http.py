"""Bulk dumps served like data.binance.vision: zip + CHECKSUM, publication by exchange time, dump faults."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.tape import MarketTape, TradeTape
from btcpipe.domain.time import US_PER_DAY, day_start_us
from btcpipe.exchange.server import LocalExchange
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.handmade import synthetic_tape

DAY = dt.date(2024, 12, 31)
BASE = "/data/spot/daily"


def _url(kind: str, day: dt.date, symbol: str = "BTCUSDT") -> str:
    return f"{BASE}/{kind}/{symbol}/{symbol}-{kind}-{day.isoformat()}.zip"


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    # Straddles midnight 2024-12-31 → 2025-01-01: one ms-era day and one µs-era day.
    return synthetic_tape(start_us=day_start_us(dt.date(2025, 1, 1)) - 120_000_000, n_orders=800, mean_gap_us=300_000)


@pytest.fixture(scope="module")
def exchange(tape: MarketTape) -> Iterator[LocalExchange]:
    with LocalExchange(tape, first_agg_id=500) as ex:
        yield ex


@pytest.fixture
def client(exchange: LocalExchange) -> Iterator[httpx.Client]:
    exchange.faults.clear()
    with httpx.Client(base_url=exchange.base_url, timeout=30) as c:
        yield c


def _download(client: httpx.Client, url: str) -> tuple[bytes, str]:
    data = client.get(url)
    checksum = client.get(url + ".CHECKSUM")
    assert data.status_code == 200
    assert checksum.status_code == 200
    return data.content, checksum.text


def _rows(data: bytes) -> list[list[str]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (name,) = zf.namelist()
        return list(csv.reader(io.StringIO(zf.read(name).decode())))


def test_trades_dump_downloads_verifies_and_equals_the_tape_for_both_eras(
    client: httpx.Client, tape: MarketTape
) -> None:
    parsed: list[list[str]] = []
    for day in (dt.date(2024, 12, 31), dt.date(2025, 1, 1)):
        data, checksum = _download(client, _url("trades", day))
        digest, name = checksum.split("  ")
        assert digest == hashlib.sha256(data).hexdigest()
        assert name == f"BTCUSDT-trades-{day.isoformat()}.zip"
        rows = _rows(data)
        scale = 1 if day >= dt.date(2025, 1, 1) else 1000
        assert all(day_start_us(day) <= int(r[4]) * scale < day_start_us(day) + US_PER_DAY for r in rows)
        parsed += [[r[0], r[1], r[2], str(int(r[4]) * scale), r[5]] for r in rows]
    t = tape.trades
    assert [int(r[0]) for r in parsed] == t.id.tolist()
    assert [parse_decimal(r[1]) for r in parsed] == t.price.tolist()
    assert [parse_decimal(r[2]) for r in parsed] == t.qty.tolist()
    # ms-era rows lose the sub-ms part, exactly as Binance's ms dumps do.
    n_2024 = int((t.ts_event < day_start_us(dt.date(2025, 1, 1))).sum())
    assert [int(r[3]) for r in parsed] == (
        (t.ts_event[:n_2024] // 1000 * 1000).tolist() + t.ts_event[n_2024:].tolist()
    )
    assert [r[4] == "True" for r in parsed] == t.is_buyer_maker.tolist()


def test_agg_trades_dump_has_the_same_ids_as_rest(client: httpx.Client) -> None:
    data, _ = _download(client, _url("aggTrades", dt.date(2025, 1, 1)))
    rows = _rows(data)
    rest = client.get("/api/v3/aggTrades", params={"symbol": "BTCUSDT", "fromId": rows[0][0], "limit": 1000},
                      headers={"X-MBX-TIME-UNIT": "MICROSECOND"}).json()
    assert [[int(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6] == "True"] for r in rows[: len(rest)]] == [
        [a["a"], a["p"], a["q"], a["f"], a["l"], a["T"], a["m"]] for a in rest
    ]


def test_real_trades_rows_come_back_byte_for_byte(shared_data: Path) -> None:
    raw = (shared_data / "excerpts" / "BTCUSDT-trades-2025-01-01.head210.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode())))
    n = len(rows)
    tape = MarketTape("BTCUSDT", TradeTape(
        id=np.fromiter((int(r[0]) for r in rows), np.int64, n),
        ts_event=np.fromiter((int(r[4]) for r in rows), np.int64, n),
        price=np.fromiter((parse_decimal(r[1]) for r in rows), np.int64, n),
        qty=np.fromiter((parse_decimal(r[2]) for r in rows), np.int64, n),
        is_buyer_maker=np.fromiter((r[5] == "True" for r in rows), np.bool_, n),
    ))
    with LocalExchange(tape) as ex, httpx.Client(base_url=ex.base_url) as c:
        data, _ = _download(c, _url("trades", dt.date(2025, 1, 1)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("BTCUSDT-trades-2025-01-01.csv") == raw


def test_wrong_checksum_fault_makes_the_sha256_disagree(client: httpx.Client, exchange: LocalExchange) -> None:
    exchange.faults.set_dump_fault("wrong_checksum")
    data, checksum = _download(client, _url("trades", DAY))
    assert checksum.split("  ")[0] != hashlib.sha256(data).hexdigest()
    assert checksum.endswith("BTCUSDT-trades-2024-12-31.zip")
    exchange.faults.set_dump_fault(None)
    data, checksum = _download(client, _url("trades", DAY))
    assert checksum.split("  ")[0] == hashlib.sha256(data).hexdigest()


def test_corrupt_zip_fault_passes_the_checksum_but_not_the_archive(
    client: httpx.Client, exchange: LocalExchange
) -> None:
    exchange.faults.set_dump_fault("corrupt_zip")
    data, checksum = _download(client, _url("trades", DAY))
    assert checksum.split("  ")[0] == hashlib.sha256(data).hexdigest()
    with pytest.raises((zipfile.BadZipFile, zlib.error)), zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.read(zf.namelist()[0])
    assert exchange.fault_stats.dumps_corrupt >= 2


def test_request_faults_reach_dumps_too(client: httpx.Client, exchange: LocalExchange) -> None:
    exchange.faults.script("5xx", "truncate")
    assert client.get(_url("trades", DAY)).status_code >= 500
    cut = client.get(_url("trades", DAY))
    whole = client.get(_url("trades", DAY))
    assert cut.status_code == 200
    assert len(cut.content) < len(whole.content)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(cut.content))


@pytest.mark.parametrize(
    "path",
    [
        _url("trades", dt.date(2024, 6, 1)),  # no trades that day
        _url("klines", DAY),
        _url("trades", DAY, symbol="ETHUSDT"),
        f"{BASE}/aggTrades/BTCUSDT/BTCUSDT-trades-2024-12-31.zip",  # kind in path and name disagree
        f"{BASE}/trades/BTCUSDT/BTCUSDT-trades-2024-12.zip",
        f"{BASE}/trades/BTCUSDT/BTCUSDT-trades-2024-12-31.zip.sha1",
    ],
)
def test_missing_or_malformed_dumps_are_404(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "NoSuchKey" in r.text


def test_a_day_is_published_only_once_it_is_over_on_the_exchange_clock() -> None:
    start = day_start_us(dt.date(2025, 2, 1)) + 86_000 * 1_000_000  # 400 s before midnight
    tape = synthetic_tape(start_us=start, n_orders=2_000, mean_gap_us=300_000)  # runs into 2025-02-02
    clock = ManualClock(day_start_us(dt.date(2025, 2, 2)) - 1)
    with LocalExchange(tape, clock=clock) as ex, httpx.Client(base_url=ex.base_url) as c:
        assert c.get(_url("trades", dt.date(2025, 2, 1))).status_code == 404
        clock.set(day_start_us(dt.date(2025, 2, 2)))
        assert c.get(_url("trades", dt.date(2025, 2, 1))).status_code == 200
        assert c.get(_url("trades", dt.date(2025, 2, 2))).status_code == 404
        clock.set(tape.end_us)  # nothing left to come: the tape's last day is final
        assert c.get(_url("trades", dt.date(2025, 2, 2))).status_code == 200


def _even_tape(start_us: int, end_us: int, step_us: int = 30_000_000) -> MarketTape:
    ts = np.arange(start_us, end_us, step_us, dtype=np.int64)
    n = len(ts)
    return MarketTape("BTCUSDT", TradeTape(
        id=np.arange(1, n + 1, dtype=np.int64), ts_event=ts, price=np.full(n, 10_000_000_000_000, np.int64),
        qty=np.full(n, 1_000_000, np.int64), is_buyer_maker=np.zeros(n, np.bool_),
    ))


def test_without_partial_days_a_day_the_tape_only_touches_has_no_dump_but_a_covered_day_has(tape: MarketTape) -> None:
    with LocalExchange(tape, partial_dump_days=False) as ex, httpx.Client(base_url=ex.base_url) as c:
        # 2 minutes of 2024-12-31 and a few of 2025-01-01: neither is a whole day, so neither is published.
        assert c.get(_url("trades", DAY)).status_code == 404
        assert c.get(_url("aggTrades", dt.date(2025, 1, 1))).status_code == 404
    day = dt.date(2025, 3, 1)
    whole = _even_tape(day_start_us(day) + 5_000_000, day_start_us(day) + US_PER_DAY + 600_000_000)
    with LocalExchange(whole, partial_dump_days=False) as ex, httpx.Client(base_url=ex.base_url) as c:
        data, _ = _download(c, _url("trades", day))
        assert len(_rows(data)) == 2880  # every trade of the day, and the day is all there
        assert c.get(_url("trades", day + dt.timedelta(days=1))).status_code == 404  # 10 minutes of Mar 2
