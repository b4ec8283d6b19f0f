"""Real Binance clients' REST calls against the local exchange (base URL changed, nothing else), values compared
with the recording itself (``support.binance_tape``), not with the exchange's own code.

The exchange's clock stands just after the recording's last trade, so every answer is fixed. Each client's
report holds every call; one test per client and endpoint says which call of which client fails and why.
"""

from __future__ import annotations

import itertools
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from support.binance_clients import after_everything_us, run_clients
from support.binance_tape import RecordedBook, RecordedStreams, agg_trade_of, dec, kline_of, levels

from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.server import LocalExchange

pytestmark = [pytest.mark.services, pytest.mark.xdist_group("conformance"), pytest.mark.timeout(600)]

CLIENTS = ["python_binance", "binance_connector", "binance_sdk_spot", "ccxt"]
_REPORTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def reports(history_exchange: LocalExchange) -> dict[str, dict[str, Any]]:
    if not _REPORTS:
        _REPORTS.update(run_clients(CLIENTS, history_exchange.base_url, history_exchange.ws_url, "rest"))
    return _REPORTS


def _ok(report: dict[str, Any], call: str) -> Any:
    outcome = report[call]
    assert "ok" in outcome, f"{call} failed: {outcome['error']}"
    return outcome["ok"]


def _raw(client: str, rows: list[Any]) -> list[dict[str, Any]]:
    """ccxt unifies rows and keeps Binance's own in ``info``; the others return Binance's rows as they are."""
    return [r["info"] for r in rows] if client == "ccxt" else rows


def _last_ms(tape: MarketTape) -> int:
    """The exchange's now (ms) for these calls: just after the recording's last message."""
    return after_everything_us(tape) // 1000


@pytest.mark.parametrize("client", CLIENTS)
def test_trades_and_historical_trades_are_the_recorded_trades(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    report = reports[client]
    got = _raw(client, _ok(report, "trades"))
    want = recorded.trades[-50:]
    assert [(r["id"], dec(r["price"]), dec(r["qty"]), r["time"], r["isBuyerMaker"]) for r in got] == [
        (t["t"], dec(t["p"]), dec(t["q"]), t["T"], t["m"]) for t in want
    ]
    by_id = recorded.trade_by_id()
    call = "historicalTrades(apiKey)" if client == "ccxt" else "historicalTrades"
    hist = _ok(report, call)
    assert [r["id"] for r in hist] == list(range(3735690000, 3735690020))
    assert all(dec(r["price"]) == dec(by_id[r["id"]]["p"]) and r["time"] == by_id[r["id"]]["T"] for r in hist)


@pytest.mark.parametrize("client", CLIENTS)
def test_agg_trades_merge_fills_of_one_taker_at_one_price(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _raw(client, _ok(reports[client], "aggTrades"))
    assert len(got) == 50
    assert got[-1]["l"] == recorded.trades[-1]["t"]
    for prev, agg in itertools.pairwise(got):
        assert agg["f"] == prev["l"] + 1
        assert agg["a"] == prev["a"] + 1
    for agg in got:
        want = agg_trade_of(recorded, agg["f"], agg["l"])
        assert (dec(agg["p"]), dec(agg["q"]), agg["T"], agg["m"]) == (want["p"], want["q"], want["T"], want["m"])


def _kline_rows(client: str, rows: list[Any]) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return [(int(r[0]), *(Decimal(str(x)) for x in r[1:6])) for r in rows]  # type: ignore[misc]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("call", ["klines", "uiKlines"])
def test_klines_are_the_recorded_trades_per_minute(
    client: str, call: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    rows = _ok(reports[client], call)
    assert 5 <= len(rows) <= 20
    for t, o, h, low, c, v in _kline_rows(client, rows):
        want = kline_of(recorded, t, t + 59_999)
        assert want is not None
        assert (o, h, low, c, v) == (want["o"], want["h"], want["l"], want["c"], want["v"])
    if client != "ccxt":  # ccxt's OHLCV drops the trade count
        assert sum(r[8] for r in rows) == len(recorded.trades)


@pytest.mark.parametrize("client", [c for c in CLIENTS if c != "ccxt"])  # ccxt has no timeZone parameter
def test_klines_time_zone_aligns_days_in_that_zone(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    rows = _ok(reports[client], "klines_tz")
    # The recording (2024-08-08 23:54 → 08-09 00:05 UTC) lies inside one UTC+8 day, which opens at 16:00 UTC.
    assert [(r[0], r[6], r[8]) for r in rows] == [(1723132800000, 1723219199999, len(recorded.trades))]


_BOOK: list[tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]] = []


def _final_book(recorded: RecordedStreams) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    if not _BOOK:  # replaying every recorded diff takes a moment: once for all clients
        book = RecordedBook(recorded)
        book.advance_to(recorded.diffs[-1]["u"])
        _BOOK.append(book.top(100))
    return _BOOK[0]


@pytest.mark.parametrize("client", CLIENTS)
def test_depth_is_the_recorded_book_after_every_diff(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _ok(reports[client], "depth")
    bids, asks = _final_book(recorded)
    assert levels(got["bids"]) == bids
    assert levels(got["asks"]) == asks
    nonce = got["nonce"] if client == "ccxt" else got["lastUpdateId"]
    assert nonce == recorded.diffs[-1]["u"]


@pytest.mark.parametrize("client", CLIENTS)
def test_tickers_summarise_the_recorded_trades_and_book(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams, tape: MarketTape
) -> None:
    report = reports[client]
    trades, top = recorded.trades, recorded.book_tickers[-1]
    prices = [dec(t["p"]) for t in trades]
    volume = sum((dec(t["q"]) for t in trades), Decimal(0))
    if client == "ccxt":
        t24 = _ok(report, "ticker/24hr")
        assert (t24["bid"], t24["ask"]) == (float(top["b"]), float(top["a"]))
        assert (t24["open"], t24["high"], t24["low"], t24["last"]) == tuple(
            float(p) for p in (prices[0], max(prices), min(prices), prices[-1]))
        assert Decimal(str(t24["baseVolume"])) == volume
        window = _ok(report, "ticker")
        last = _ok(report, "ticker/price")["BTC/USDT"]["price"]
        book = _ok(report, "ticker/bookTicker")["BTC/USDT"]
        assert (book["bid"], book["bidVolume"]) == (float(top["b"]), float(top["B"]))
        assert last == float(prices[-1])
    else:
        t24 = _ok(report, "ticker/24hr")
        assert (t24["count"], t24["firstId"], t24["lastId"]) == (len(trades), trades[0]["t"], trades[-1]["t"])
        assert (dec(t24["bidPrice"]), dec(t24["askQty"])) == (dec(top["b"]), dec(top["A"]))
        window = _ok(report, "ticker")
        assert dec(_ok(report, "ticker/price")["price"]) == prices[-1]
        book = _ok(report, "ticker/bookTicker")
        assert (dec(book["bidPrice"]), dec(book["bidQty"]), dec(book["askPrice"]), dec(book["askQty"])) == tuple(
            dec(top[k]) for k in "bBaA")
    # /api/v3/ticker, 1 h window: the whole recording too (it lasts 11 minutes).
    assert (dec(window["openPrice"]), dec(window["highPrice"]), dec(window["lowPrice"]), dec(window["lastPrice"])) == (
        prices[0], max(prices), min(prices), prices[-1])
    assert (dec(window["volume"]), window["count"]) == (volume, len(trades))
    assert window["closeTime"] == _last_ms(tape)


@pytest.mark.parametrize("client", CLIENTS)
def test_avg_price_is_the_volume_weighted_price_of_the_last_five_minutes(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams, tape: MarketTape
) -> None:
    got = _ok(reports[client], "avgPrice")
    since = _last_ms(tape) - 5 * 60_000
    window = [t for t in recorded.trades if t["T"] >= since]
    quote = sum((dec(t["p"]) * dec(t["q"]) for t in window), Decimal(0))
    volume = sum((dec(t["q"]) for t in window), Decimal(0))
    assert got["mins"] == 5
    assert dec(got["price"]) == (quote / volume).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
    assert got["closeTime"] == recorded.trades[-1]["T"]


@pytest.mark.parametrize("client", CLIENTS)
def test_exchange_info_time_and_errors_are_what_clients_expect(
    client: str, reports: dict[str, dict[str, Any]], tape: MarketTape
) -> None:
    report = reports[client]
    info = _ok(report, "exchangeInfo")
    if client == "ccxt":
        assert (info["symbol"], info["precision"]["price"], info["precision"]["amount"]) == ("BTC/USDT", 0.01, 1e-05)
        assert _ok(report, "time") == _last_ms(tape)
    else:
        filters = {f["filterType"]: f for f in info["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert {"LOT_SIZE", "NOTIONAL", "PERCENT_PRICE_BY_SIDE", "MARKET_LOT_SIZE"} <= set(filters)
        assert info["otoAllowed"]
        assert info["cancelReplaceAllowed"]
        assert "pegInstructionsAllowed" in info
        assert _ok(report, "time")["serverTime"] == _last_ms(tape)
        assert _ok(report, "ping") == {}
    # Each client turns Binance's JSON error into its own exception, with the code and message.
    assert "Invalid symbol" in report["error:-1121"]["error"]
