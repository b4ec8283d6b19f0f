"""The local exchange's REST API over real HTTP on loopback: Binance's bodies, semantics, weights, errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from btcpipe.domain.decimal import format_decimal, parse_decimal
from btcpipe.domain.tape import MarketTape, TradeTape
from btcpipe.exchange.ratelimit import WeightLimiter
from btcpipe.exchange.server import LocalExchange
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.handmade import synthetic_tape

SYMBOL = "BTCUSDT"
US = {"X-MBX-TIME-UNIT": "MICROSECOND"}


class FrozenTime:
    """The limiter's clock, frozen inside one minute so weight sequences do not depend on the wall clock."""

    now = 60.0 * 29_000_000 + 1.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return synthetic_tape(n_orders=2500, mean_gap_us=150_000)


@pytest.fixture(scope="module")
def exchange(tape: MarketTape) -> Iterator[LocalExchange]:
    with LocalExchange(tape, limiter=WeightLimiter(6000, clock=FrozenTime()), first_agg_id=26_000) as ex:
        yield ex


@pytest.fixture
def client(exchange: LocalExchange) -> Iterator[httpx.Client]:
    exchange.limiter.reset()
    exchange.faults.clear()
    with httpx.Client(base_url=exchange.base_url, timeout=10) as c:
        yield c


def _get(client: httpx.Client, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    r = client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _error(client: httpx.Client, path: str, headers: dict[str, str] | None = None, **params: Any) -> tuple[int, int]:
    r = client.get(path, params=params, headers=headers)
    body = r.json()
    assert set(body) == {"code", "msg"}
    assert isinstance(body["msg"], str)
    assert body["msg"]
    return r.status_code, body["code"]


def _type_shape(item: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in item.items()}


# --- bodies -------------------------------------------------------------------------------------------
def test_agg_trades_items_have_the_keys_and_types_of_a_real_binance_page(
    client: httpx.Client, shared_data: Path
) -> None:
    real = orjson.loads((shared_data / "excerpts" / "rest-aggTrades-page-00.head131.json").read_bytes())
    ours = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, limit=50)
    assert len(ours) == 50
    assert {tuple(sorted(_type_shape(i).items(), key=str)) for i in ours} == {
        tuple(sorted(_type_shape(real[0]).items(), key=str))
    }
    for item in ours:  # strings with 8 decimals, like "75940.50000000"
        assert len(item["p"].split(".")[1]) == 8
        assert len(item["q"].split(".")[1]) == 8


def test_one_record_locator_answers_like_the_real_capture(client: httpx.Client, shared_data: Path) -> None:
    real = orjson.loads((shared_data / "excerpts" / "rest-aggTrades-locator.json").read_bytes())
    first = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, limit=3)[0]
    minute = first["T"] - first["T"] % 60_000
    ours = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, startTime=minute, endTime=minute + 59_999, limit=1)
    assert len(ours) == len(real) == 1
    assert set(ours[0]) == set(real[0])
    assert minute <= ours[0]["T"] <= minute + 59_999


def test_historical_trades_reproduce_real_dump_rows(shared_data: Path) -> None:
    raw = (shared_data / "excerpts" / "BTCUSDT-trades-2025-01-01.head210.csv").read_text()
    rows = list(csv.reader(io.StringIO(raw)))
    n = len(rows)
    tape = MarketTape(SYMBOL, TradeTape(
        id=np.fromiter((int(r[0]) for r in rows), np.int64, n),
        ts_event=np.fromiter((int(r[4]) for r in rows), np.int64, n),
        price=np.fromiter((parse_decimal(r[1]) for r in rows), np.int64, n),
        qty=np.fromiter((parse_decimal(r[2]) for r in rows), np.int64, n),
        is_buyer_maker=np.fromiter((r[5] == "True" for r in rows), np.bool_, n),
    ))
    with LocalExchange(tape) as ex, httpx.Client(base_url=ex.base_url) as c:
        got = _get(c, "/api/v3/historicalTrades", symbol=SYMBOL, fromId=rows[0][0], limit=1000)
    fields = ("id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch")
    expected = [[r[0], r[1], r[2], r[3], str(int(r[4]) // 1000), r[5], r[6]] for r in rows]  # REST ms = dump µs // 1000
    assert [[str(t[f]) for f in fields] for t in got] == expected


def test_trades_and_historical_trades_agree_with_the_tape(client: httpx.Client, tape: MarketTape) -> None:
    recent = _get(client, "/api/v3/trades", symbol=SYMBOL, limit=7)
    assert [t["id"] for t in recent] == tape.trades.id[-7:].tolist()
    page = _get(client, "/api/v3/historicalTrades", symbol=SYMBOL, fromId=int(tape.trades.id[100]), limit=3)
    assert [(t["id"], t["price"], t["time"]) for t in page] == [
        (int(tape.trades.id[i]), format_decimal(int(tape.trades.price[i])), int(tape.trades.ts_event[i]) // 1000)
        for i in (100, 101, 102)
    ]
    assert len(_get(client, "/api/v3/historicalTrades", symbol=SYMBOL)) == 500  # default: the latest 500


def test_ping_time_and_exchange_info(client: httpx.Client, exchange: LocalExchange) -> None:
    assert _get(client, "/api/v3/ping") == {}
    server_ms = _get(client, "/api/v3/time")["serverTime"]
    server_us = _get(client, "/api/v3/time", headers=US)["serverTime"]
    assert abs(server_us // 1000 - server_ms) < 5_000
    info = _get(client, "/api/v3/exchangeInfo", symbol=SYMBOL)
    assert [s["symbol"] for s in info["symbols"]] == [SYMBOL]
    assert info["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                     "limit": 6000}
    filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"


# --- aggTrades semantics --------------------------------------------------------------------------------
def test_paging_by_from_id_returns_every_agg_trade_once_in_order(client: httpx.Client, exchange: LocalExchange) -> None:
    aggs = exchange.state.markets[SYMBOL].aggs
    seen: list[int] = []
    from_id = 0
    while True:
        page = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, fromId=from_id, limit=1000)
        if not page:
            break
        seen += [a["a"] for a in page]
        from_id = page[-1]["a"] + 1
    assert seen == aggs.agg_id.tolist()
    assert seen[0] == 26_000


def test_agg_trade_first_and_last_ids_cover_the_raw_trades_exactly(client: httpx.Client, tape: MarketTape) -> None:
    page = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, fromId=26_000, limit=1000)
    covered = [i for a in page for i in range(a["f"], a["l"] + 1)]
    assert covered == tape.trades.id[: len(covered)].tolist()
    assert any(a["l"] > a["f"] for a in page)  # some orders filled several times at one price


def test_limit_defaults_to_500_caps_at_1000_and_refuses_zero(client: httpx.Client) -> None:
    assert len(_get(client, "/api/v3/aggTrades", symbol=SYMBOL)) == 500
    assert len(_get(client, "/api/v3/aggTrades", symbol=SYMBOL, fromId=0, limit=5000)) == 1000
    assert _error(client, "/api/v3/aggTrades", symbol=SYMBOL, limit=0) == (400, -1100)


def test_time_windows_take_the_first_records_from_the_start(client: httpx.Client, exchange: LocalExchange) -> None:
    aggs = exchange.state.markets[SYMBOL].aggs
    t_us = aggs.ts_event.tolist()
    start_ms = t_us[300] // 1000
    end_ms = t_us[700] // 1000
    window = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, startTime=start_ms, endTime=end_ms, limit=1000)
    expect = [a for a, t in zip(aggs.agg_id.tolist(), t_us, strict=True) if start_ms <= t // 1000 <= end_ms]
    assert [a["a"] for a in window] == expect  # an ms endTime covers its whole millisecond
    first10 = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, startTime=start_ms, endTime=end_ms, limit=10)
    assert [a["a"] for a in first10] == expect[:10]
    only_start = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, startTime=start_ms, limit=10)
    assert [a["a"] for a in only_start] == expect[:10]
    only_end = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, endTime=end_ms, limit=10)
    assert [a["a"] for a in only_end] == expect[-10:]


def test_start_and_end_in_microseconds_select_to_the_microsecond(client: httpx.Client, exchange: LocalExchange) -> None:
    aggs = exchange.state.markets[SYMBOL].aggs
    t = aggs.ts_event.tolist()
    start_us, end_us = t[100], t[140]
    got = _get(client, "/api/v3/aggTrades", headers=US, symbol=SYMBOL, startTime=start_us, endTime=end_us, limit=1000)
    expect = [a for a, ts in zip(aggs.agg_id.tolist(), t, strict=True) if start_us <= ts <= end_us]
    assert [a["a"] for a in got] == expect
    assert [a["T"] for a in got] == [ts for ts in t if start_us <= ts <= end_us]  # µs out, too
    just_after = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, startTime=end_us + 1, endTime=end_us + 1)
    ids_at = [a for a, ts in zip(aggs.agg_id.tolist(), t, strict=True) if ts == end_us + 1]
    assert [a["a"] for a in just_after] == ids_at


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"fromId": 26_000, "startTime": 1_735_689_600_000}, (400, -1128)),
        ({"fromId": 26_000, "endTime": 1_735_689_600_000}, (400, -1128)),
        ({"startTime": 1_735_689_700_000, "endTime": 1_735_689_600_000}, (400, -1023)),
        ({"fromId": "12a"}, (400, -1100)),
        ({"fromId": "-5"}, (400, -1100)),
        ({"limit": ""}, (400, -1105)),
        ({"symbol": "ETHUSDT"}, (400, -1121)),
        ({"symbol": ""}, (400, -1102)),
    ],
)
def test_bad_parameter_combinations_get_binance_error_bodies(
    client: httpx.Client, params: dict[str, Any], expected: tuple[int, int]
) -> None:
    assert _error(client, "/api/v3/aggTrades", **({"symbol": SYMBOL} | params)) == expected


def test_missing_symbol_and_bad_time_unit_header_are_refused(client: httpx.Client) -> None:
    assert _error(client, "/api/v3/aggTrades") == (400, -1102)
    assert _error(client, "/api/v3/trades", headers={"X-MBX-TIME-UNIT": "FORTNIGHT"}, symbol=SYMBOL) == (400, -1100)


def test_times_are_milliseconds_unless_microseconds_are_asked_for(client: httpx.Client, tape: MarketTape) -> None:
    ms = _get(client, "/api/v3/aggTrades", symbol=SYMBOL, fromId=26_000, limit=20)
    us = _get(client, "/api/v3/aggTrades", headers=US, symbol=SYMBOL, fromId=26_000, limit=20)
    assert [a["T"] for a in us] == tape.trades.ts_event[[a["f"] - int(tape.trades.id[0]) for a in us]].tolist()
    assert [a["T"] for a in ms] == [t // 1000 for t in (a["T"] for a in us)]
    ms_k = _get(client, "/api/v3/klines", symbol=SYMBOL, interval="1m", limit=2)
    us_k = _get(client, "/api/v3/klines", headers=US, symbol=SYMBOL, interval="1m", limit=2)
    assert [(k[0], k[6]) for k in ms_k] == [(k[0] // 1000, k[0] // 1000 + 59_999) for k in us_k]
    assert [k[6] for k in us_k] == [k[0] + 59_999_999 for k in us_k]


# --- klines and depth -----------------------------------------------------------------------------------
def test_klines_rows_have_binance_shape_and_sum_to_the_trades(client: httpx.Client, tape: MarketTape) -> None:
    rows = _get(client, "/api/v3/klines", symbol=SYMBOL, interval="1m", startTime=0, limit=1000)
    assert all(len(r) == 12 for r in rows)
    assert [type(v) for v in rows[0]] == [int, str, str, str, str, str, int, str, int, str, str, str]
    assert sum(r[8] for r in rows) == len(tape.trades)
    assert sum(parse_decimal(r[5]) for r in rows) == int(tape.trades.qty.sum())
    for r in rows:
        assert parse_decimal(r[3]) <= min(parse_decimal(r[1]), parse_decimal(r[4]))
        assert parse_decimal(r[2]) >= max(parse_decimal(r[1]), parse_decimal(r[4]))
    assert _error(client, "/api/v3/klines", symbol=SYMBOL, interval="7m") == (400, -1120)
    assert _error(client, "/api/v3/klines", symbol=SYMBOL) == (400, -1102)


def test_depth_of_a_tape_without_diffs_is_its_best_quote_or_empty(client: httpx.Client) -> None:
    body = _get(client, "/api/v3/depth", symbol=SYMBOL, limit=10)
    assert set(body) == {"lastUpdateId", "bids", "asks"}


def test_depth_snapshot_plus_later_diffs_rebuilds_the_later_book() -> None:
    from btcpipe.market.simulator import SimConfig, simulate

    tape = simulate(SimConfig(seed=11, duration_s=60))
    assert tape.depth is not None
    clock = ManualClock(int(tape.depth.ts_event[50]))
    with LocalExchange(tape, clock=clock) as ex, httpx.Client(base_url=ex.base_url) as c:
        early = _get(c, "/api/v3/depth", symbol=SYMBOL, limit=5000)
        clock.set(int(tape.depth.ts_event[400]))
        late = _get(c, "/api/v3/depth", symbol=SYMBOL, limit=5000)
    bids = {p: q for p, q in early["bids"]}
    asks = {p: q for p, q in early["asks"]}
    d = tape.depth
    applied = 0
    for i in range(len(d)):
        if int(d.last_update_id[i]) <= early["lastUpdateId"] or int(d.last_update_id[i]) > late["lastUpdateId"]:
            continue
        applied += 1
        for j in range(int(d.offsets[i]), int(d.offsets[i + 1])):
            side = asks if d.level_is_ask[j] else bids
            price, qty = format_decimal(int(d.level_price[j])), format_decimal(int(d.level_qty[j]))
            if int(d.level_qty[j]) == 0:
                side.pop(price, None)
            else:
                side[price] = qty
    assert applied > 100
    assert sorted(bids.items(), key=lambda kv: -parse_decimal(kv[0])) == [tuple(x) for x in late["bids"]]
    assert sorted(asks.items(), key=lambda kv: parse_decimal(kv[0])) == [tuple(x) for x in late["asks"]]


# --- weights --------------------------------------------------------------------------------------------
def test_used_weight_header_rises_4_8_12_16_over_four_agg_trades_calls(client: httpx.Client) -> None:
    seen = []
    for _ in range(4):
        r = client.get("/api/v3/aggTrades", params={"symbol": SYMBOL, "limit": 1})
        seen.append((r.headers["X-MBX-USED-WEIGHT-1M"], r.headers["X-MBX-USED-WEIGHT"]))
    assert seen == [("4", "4"), ("8", "8"), ("12", "12"), ("16", "16")]


@pytest.mark.parametrize(
    ("path", "params", "weight"),
    [
        ("/api/v3/ping", {}, 1),
        ("/api/v3/time", {}, 1),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/historicalTrades", {"symbol": SYMBOL}, 25),
        ("/api/v3/trades", {"symbol": SYMBOL}, 25),
        ("/api/v3/klines", {"symbol": SYMBOL, "interval": "1s"}, 2),
        ("/api/v3/depth", {"symbol": SYMBOL}, 5),
        ("/api/v3/depth", {"symbol": SYMBOL, "limit": 100}, 5),
        ("/api/v3/depth", {"symbol": SYMBOL, "limit": 101}, 25),
        ("/api/v3/depth", {"symbol": SYMBOL, "limit": 1000}, 50),
        ("/api/v3/depth", {"symbol": SYMBOL, "limit": 5000}, 250),
        ("/api/v3/aggTrades", {"symbol": "NOPE"}, 4),  # refused requests cost their weight too
        ("/api/v3/uiKlines", {"symbol": SYMBOL, "interval": "1m"}, 2),
        ("/api/v3/avgPrice", {"symbol": SYMBOL}, 2),
        ("/api/v3/ticker/24hr", {"symbol": SYMBOL}, 2),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/api/v3/ticker", {"symbol": SYMBOL}, 4),
        ("/api/v3/ticker/price", {"symbol": SYMBOL}, 2),
        ("/api/v3/ticker/bookTicker", {}, 4),
    ],
)
def test_each_endpoint_costs_its_weight(client: httpx.Client, path: str, params: dict[str, Any], weight: int) -> None:
    before = int(client.get("/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"])
    after = int(client.get(path, params=params).headers["X-MBX-USED-WEIGHT-1M"])
    assert after - before == weight


def test_unknown_api_paths_still_report_the_used_weight(client: httpx.Client) -> None:
    client.get("/api/v3/ping")
    r = client.get("/api/v3/allOrders")
    assert r.status_code == 404
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    # Binance's JSON error body, which clients parse into their own exceptions (not a text/plain page).
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["code"] == -1000
    assert "/api/v3/allOrders" in r.json()["msg"]


@pytest.mark.parametrize(
    ("params", "code"),
    [({"symbol": SYMBOL, "interval": "1d", "timeZone": "15"}, -1100), ({"symbol": SYMBOL, "interval": "1d",
                                                                      "timeZone": "+5:75"}, -1100)],
)
def test_kline_time_zones_outside_binance_s_range_are_refused(
    client: httpx.Client, params: dict[str, Any], code: int
) -> None:
    r = client.get("/api/v3/klines", params=params)
    assert (r.status_code, r.json()["code"]) == (400, code)


def test_ticker_symbol_and_symbols_together_are_refused(client: httpx.Client) -> None:
    r = client.get("/api/v3/ticker/price", params={"symbol": SYMBOL, "symbols": f'["{SYMBOL}"]'})
    assert (r.status_code, r.json()["code"]) == (400, -1128)
    assert client.get("/api/v3/ticker/price", params={"symbols": f'["{SYMBOL}"]'}).json()[0]["symbol"] == SYMBOL


# --- exchange time ----------------------------------------------------------------------------------------
def test_rest_only_shows_what_happened_by_exchange_time() -> None:
    tape = synthetic_tape(n_orders=400)
    clock = ManualClock(int(tape.trades.ts_event[99]))
    with LocalExchange(tape, clock=clock) as ex, httpx.Client(base_url=ex.base_url) as c:
        latest = _get(c, "/api/v3/trades", headers=US, symbol=SYMBOL, limit=1000)
        assert max(t["time"] for t in latest) <= clock.now_us()
        assert latest[-1]["id"] == int(tape.trades.id[tape.trades.ts_event <= clock.now_us()][-1])
        assert _get(c, "/api/v3/time", headers=US)["serverTime"] == clock.now_us()
        future = _get(c, "/api/v3/historicalTrades", symbol=SYMBOL, fromId=int(tape.trades.id[300]))
        assert future == []
        clock.set(tape.end_us)
        assert _get(c, "/api/v3/trades", symbol=SYMBOL, limit=1)[0]["id"] == int(tape.trades.id[-1])


def test_a_recording_is_served_with_every_trade_and_its_book(recording_paths: list[Path]) -> None:
    from btcpipe.binance.recording import load_recording

    tape = load_recording(recording_paths).to_tape()
    with LocalExchange(tape) as ex, httpx.Client(base_url=ex.base_url) as c:
        ids: list[int] = []
        from_id = int(tape.trades.id[0])
        while page := _get(c, "/api/v3/historicalTrades", symbol=SYMBOL, fromId=from_id, limit=1000):
            ids += [t["id"] for t in page]
            from_id = page[-1]["id"] + 1
        book = _get(c, "/api/v3/depth", symbol=SYMBOL, limit=5)
    assert ids == list(range(3735683259, 3735703163))
    assert tape.depth is not None
    assert book["lastUpdateId"] == int(tape.depth.last_update_id[-1]) == 50093696318
    assert parse_decimal(book["bids"][0][0]) < parse_decimal(book["asks"][0][0])
