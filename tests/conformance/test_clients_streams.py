"""Real Binance clients' stream APIs against the local exchange replaying the recording, values compared with
the recording itself.

binance-connector, binance-sdk-spot and ccxt.pro connect bare and subscribe live (``SUBSCRIBE``);
python-binance has no live-subscribe API and opens ``/ws/<stream>`` per socket. All four clients run at
once against one exchange (the replay runs at 2x from two minutes into the recording).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from support.binance_clients import run_clients
from support.binance_tape import RecordedBook, RecordedStreams, agg_trade_of, dec, kline_of, levels

from btcpipe.exchange.server import LocalExchange

pytestmark = [pytest.mark.services, pytest.mark.xdist_group("conformance"), pytest.mark.timeout(600)]

RAW_CLIENTS = ["python_binance", "binance_connector", "binance_sdk_spot"]
STREAM_TIMEOUT_S = 25.0
_REPORTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def reports(live_exchange: LocalExchange) -> dict[str, dict[str, Any]]:
    """Every client's stream report, the four running concurrently."""
    if not _REPORTS:
        _REPORTS.update(run_clients([*RAW_CLIENTS, "ccxt"], live_exchange.base_url, live_exchange.ws_url, "streams",
                                    str(STREAM_TIMEOUT_S), timeout=STREAM_TIMEOUT_S * 3 + 60))
    return _REPORTS


def _ok(report: dict[str, Any], call: str) -> Any:
    outcome = report[call]
    assert "ok" in outcome, f"{call} failed: {outcome['error']}"
    return outcome["ok"]


def _strip(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if v is not None}


@pytest.mark.parametrize("client", RAW_CLIENTS)
def test_trades_are_the_recorded_messages_event_time_included(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _ok(reports[client], "stream:trade")
    by_id = recorded.trade_by_id()
    assert [_strip(m) for m in got] == [by_id[m["t"]] for m in got]
    assert [m["t"] for m in got] == list(range(got[0]["t"], got[0]["t"] + len(got)))  # none skipped


@pytest.mark.parametrize("client", RAW_CLIENTS)
def test_agg_trades_group_the_recorded_fills(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _ok(reports[client], "stream:aggTrade")
    for prev, agg in itertools.pairwise(got):
        assert agg["f"] == prev["l"] + 1
        assert agg["a"] == prev["a"] + 1
    for agg in got:
        want = agg_trade_of(recorded, agg["f"], agg["l"])
        assert (dec(agg["p"]), dec(agg["q"]), agg["T"], agg["m"], agg["E"]) == (
            want["p"], want["q"], want["T"], want["m"], want["E"])


@pytest.mark.parametrize("client", RAW_CLIENTS)
def test_klines_are_the_open_candle_of_the_recorded_trades_so_far(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _ok(reports[client], "stream:kline_1m")
    for msg in got:
        k = msg["k"]
        assert msg["E"] % 2000 == 0  # pushed every 2 s of exchange time
        assert k["t"] % 60_000 == 0
        assert k["T"] == k["t"] + 59_999
        assert k["i"] == "1m"
        want = kline_of(recorded, k["t"], msg["E"] if not k["x"] else k["T"])
        assert want is not None
        assert (dec(k["o"]), dec(k["h"]), dec(k["l"]), dec(k["c"]), dec(k["v"]), k["n"], k["f"], k["L"]) == (
            want["o"], want["h"], want["l"], want["c"], want["v"], want["n"], want["f"], want["L"])


@pytest.mark.parametrize("client", RAW_CLIENTS)
def test_book_tickers_and_100ms_diffs_are_the_recorded_messages(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    tickers = {t["u"]: t for t in recorded.book_tickers}
    got = _ok(reports[client], "stream:bookTicker")
    assert [_strip(m) for m in got] == [tickers[m["u"]] for m in got]
    diffs = {d["U"]: d for d in recorded.diffs}
    got = _ok(reports[client], "stream:depth@100ms")
    assert [_strip(m) for m in got] == [diffs[m["U"]] for m in got]
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(got))


@pytest.mark.parametrize("client", RAW_CLIENTS)
def test_1000ms_diffs_merge_the_recorded_diffs_of_each_second(
    client: str, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = _ok(reports[client], "stream:depth")
    first = {d["U"]: i for i, d in enumerate(recorded.diffs)}
    for msg in got:
        assert msg["E"] % 1000 == 0
        i = first[msg["U"]]
        j = next(k for k in range(i, len(recorded.diffs)) if recorded.diffs[k]["u"] == msg["u"])
        bids: dict[Decimal, Decimal] = {}
        asks: dict[Decimal, Decimal] = {}
        for d in recorded.diffs[i : j + 1]:
            assert msg["E"] - 1000 < d["E"] <= msg["E"]  # the diffs of that second, and only those
            bids.update(levels(d["b"]))
            asks.update(levels(d["a"]))
        assert levels(msg["b"]) == sorted(bids.items(), reverse=True)
        assert levels(msg["a"]) == sorted(asks.items())


@pytest.mark.parametrize("client", RAW_CLIENTS)
@pytest.mark.parametrize(("stream", "n"), [("depth5", 5), ("depth10@100ms", 10), ("depth20", 20)])
def test_partial_books_are_the_recorded_book_at_their_update_id(
    client: str, stream: str, n: int, reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    got = sorted(_ok(reports[client], f"stream:{stream}"), key=lambda m: m["lastUpdateId"])
    book = RecordedBook(recorded)
    for msg in got:
        book.advance_to(msg["lastUpdateId"])
        assert book.update_id == msg["lastUpdateId"]
        bids, asks = book.top(n)
        assert (levels(msg["bids"]), levels(msg["asks"])) == (bids, asks)


def test_the_connector_s_live_control_requests_get_their_ids_back(reports: dict[str, dict[str, Any]]) -> None:
    replies = _ok(reports["binance_connector"], "control:replies")
    assert replies[:9] == [{"result": None, "id": i} for i in range(1, 10)]
    listed = replies[9]
    assert listed["id"] == 10
    assert {"btcusdt@trade", "btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@depth5@1000ms"} <= set(listed["result"])


def test_ccxt_pro_watches_give_the_recorded_trades_book_and_candles(
    reports: dict[str, dict[str, Any]], recorded: RecordedStreams
) -> None:
    report = reports["ccxt"]
    by_id = recorded.trade_by_id()
    trades = _ok(report, "stream:trade")
    assert [t["info"] for t in trades] == [by_id[int(t["id"])] for t in trades]
    for agg in (t["info"] for t in _ok(report, "stream:aggTrade")):
        assert agg["e"] == "aggTrade"
        assert dec(agg["q"]) == agg_trade_of(recorded, agg["f"], agg["l"])["q"]
    tickers = {t["u"]: t for t in recorded.book_tickers}
    for bba in _ok(report, "stream:bookTicker"):
        want = tickers[bba["info"]["u"]]
        assert (bba["bid"], bba["bidVolume"], bba["ask"], bba["askVolume"]) == tuple(float(want[k]) for k in "bBaA")
    ob = _ok(report, "stream:depth@100ms")  # Binance's procedure: diffs on top of a REST snapshot
    book = RecordedBook(recorded)
    book.advance_to(ob["nonce"])
    assert book.update_id == ob["nonce"]
    assert (levels(ob["bids"]), levels(ob["asks"])) == book.top(20)
    for t, o, h, low, _c, _v in _ok(report, "stream:kline_1m"):
        whole = kline_of(recorded, t, t + 59_999)
        assert whole is not None
        assert Decimal(str(o)) == whole["o"]
        assert whole["l"] <= Decimal(str(low)) <= Decimal(str(h)) <= whole["h"]
    mini = _ok(report, "stream:ticker")["info"]  # ccxt.pro's watch_ticker reads @miniTicker
    assert mini["e"] == "24hrMiniTicker"
    so_far = [t for t in recorded.trades if t["T"] <= mini["E"]]  # the 24 h window holds the recording so far
    assert (dec(mini["o"]), dec(mini["c"])) == (dec(so_far[0]["p"]), dec(so_far[-1]["p"]))
    assert dec(mini["v"]) == sum((dec(t["q"]) for t in so_far), Decimal(0))
