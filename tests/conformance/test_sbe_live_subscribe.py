"""The SBE streams' live control (bare ``/stream`` + ``SUBSCRIBE``) and every served frame decoded twice:
by the product's codec and by a decoder built from ``stream_1_0.xml`` at run time (``support.sbe_xml``),
field by field, and compared with the recording. Also the 5-messages-per-second control limit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from support.binance_tape import RecordedStreams, dec
from support.sbe_xml import XmlSbeDecoder

from btcpipe.binance.sbe import TradesEvent, decode
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot
from btcpipe.exchange.server import LocalExchange

pytestmark = [pytest.mark.services, pytest.mark.xdist_group("conformance"), pytest.mark.timeout(120)]

HEADERS = {"X-MBX-APIKEY": "conformance-key"}
STREAMS = ["btcusdt@trade", "btcusdt@bestBidAsk", "btcusdt@depth", "btcusdt@depth20"]


async def _session(url: str) -> dict[str, Any]:
    """Subscribe live, collect frames of every kind, list, unsubscribe depth20, and keep reading a little."""
    replies: list[dict[str, Any]] = []
    frames: list[bytes] = []
    after_unsubscribe: list[bytes] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=HEADERS) as ws:
        await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": STREAMS, "id": 1}).decode())
        await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": "bad-1"}).decode())

        async def until(pred: Any, into: list[bytes]) -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    replies.append(orjson.loads(msg.data))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    into.append(msg.data)
                if pred():
                    return

        kinds = lambda: {f[2] for f in frames}  # noqa: E731 - template id byte, low half
        await asyncio.wait_for(until(lambda: len(frames) >= 150 and len(kinds()) == 4, frames), 30)
        await ws.send_str(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}).decode())
        await ws.send_str(orjson.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth20"], "id": 3}).decode())
        await asyncio.wait_for(until(lambda: any(r.get("id") == 3 for r in replies), frames), 10)
        await asyncio.wait_for(until(lambda: len(after_unsubscribe) >= 40, after_unsubscribe), 20)
    return {"replies": replies, "frames": frames, "after": after_unsubscribe}


def _product_view(record: Any) -> dict[str, Any]:
    if isinstance(record, TradesEvent):
        return {"eventTime": record.event_time, "transactTime": record.transact_time,
                "trades": [(t.id, t.price_mantissa, t.qty_mantissa, t.is_buyer_maker) for t in record.trades]}
    if isinstance(record, BestBidAsk):
        return {"eventTime": record.ts_event, "bookUpdateId": record.update_id,
                "top": (record.bid_price_mantissa, record.bid_qty_mantissa, record.ask_price_mantissa,
                        record.ask_qty_mantissa)}
    if isinstance(record, DepthDiff):
        return {"eventTime": record.ts_event, "ids": (record.first_update_id, record.last_update_id),
                "bids": list(record.bids), "asks": list(record.asks)}
    assert isinstance(record, DepthSnapshot)
    return {"eventTime": record.ts_event, "bookUpdateId": record.last_update_id,
            "bids": list(record.bids), "asks": list(record.asks)}


def _xml_view(d: dict[str, Any]) -> dict[str, Any]:
    lv = lambda rows: [(r["price"], r["qty"]) for r in rows]  # noqa: E731
    if d["message"] == "TradesStreamEvent":
        return {"eventTime": d["eventTime"], "transactTime": d["transactTime"],
                "trades": [(t["id"], t["price"], t["qty"], bool(t["isBuyerMaker"])) for t in d["trades"]]}
    if d["message"] == "BestBidAskStreamEvent":
        return {"eventTime": d["eventTime"], "bookUpdateId": d["bookUpdateId"],
                "top": (d["bidPrice"], d["bidQty"], d["askPrice"], d["askQty"])}
    if d["message"] == "DepthDiffStreamEvent":
        return {"eventTime": d["eventTime"], "ids": (d["firstBookUpdateId"], d["lastBookUpdateId"]),
                "bids": lv(d["bids"]), "asks": lv(d["asks"])}
    return {"eventTime": d["eventTime"], "bookUpdateId": d["bookUpdateId"], "bids": lv(d["bids"]),
            "asks": lv(d["asks"])}


def test_sbe_live_subscribe_frames_decode_alike_from_the_xml_and_equal_the_recording(
    live_exchange: LocalExchange, shared_data: Path, recorded: RecordedStreams
) -> None:
    got = asyncio.run(_session(f"{live_exchange.ws_url}/stream"))
    replies = {r["id"]: r for r in got["replies"]}
    assert replies[1] == {"result": None, "id": 1}
    assert replies["bad-1"]["error"]["code"] == 2  # aggTrade has no SBE stream: refused, with the id
    assert sorted(replies[2]["result"]) == sorted(STREAMS)
    assert replies[3] == {"result": None, "id": 3}
    xml = XmlSbeDecoder(shared_data.parent / "binance" / "stream_1_0.xml")
    decoded = [xml.decode(f) for f in got["frames"] + got["after"]]
    assert [_xml_view(d) for d in decoded] == [_product_view(decode(f)) for f in got["frames"] + got["after"]]
    assert {d["message"] for d in decoded} == {"TradesStreamEvent", "BestBidAskStreamEvent", "DepthDiffStreamEvent",
                                               "DepthSnapshotStreamEvent"}
    assert all(d["symbol"] == "BTCUSDT" for d in decoded)
    assert "DepthSnapshotStreamEvent" not in {xml.decode(f)["message"] for f in got["after"]}  # unsubscribed
    # The recording, in µs: trades with their own event time E, best bid/ask and diffs as recorded.
    by_id, tickers, diffs = recorded.trade_by_id(), {t["u"]: t for t in recorded.book_tickers}, {
        d["U"]: d for d in recorded.diffs}
    for d in decoded:
        if d["message"] == "TradesStreamEvent":
            for t in d["trades"]:
                want = by_id[t["id"]]
                assert (d["eventTime"], d["transactTime"]) == (want["E"] * 1000, want["T"] * 1000)
                assert (t["price"], t["qty"]) == (int(dec(want["p"]) * 10**8), int(dec(want["q"]) * 10**8))
        elif d["message"] == "BestBidAskStreamEvent":
            want = tickers[d["bookUpdateId"]]
            assert (d["bidPrice"], d["askQty"]) == (int(dec(want["b"]) * 10**8), int(dec(want["A"]) * 10**8))
        elif d["message"] == "DepthDiffStreamEvent":
            want = diffs[d["firstBookUpdateId"]]
            assert (d["lastBookUpdateId"], d["eventTime"]) == (want["u"], want["E"] * 1000)
            assert len(d["bids"]) + len(d["asks"]) == len(want["b"]) + len(want["a"])


def test_more_than_five_control_messages_a_second_close_the_connection(live_exchange: LocalExchange) -> None:
    async def flood() -> tuple[int | None, list[dict[str, Any]]]:
        replies: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{live_exchange.ws_url}/json/ws") as ws:
            for i in range(8):
                await ws.send_str(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    replies.append(orjson.loads(msg.data))
            return ws.close_code, replies

    before = live_exchange.streams.stats().closed_message_rate
    code, replies = asyncio.run(asyncio.wait_for(flood(), 20))
    assert code == 1008
    # Only the first five were answered (in order; a reply still queued when the connection closes may be lost).
    assert [r["id"] for r in replies] == list(range(len(replies)))
    assert len(replies) <= 5
    assert live_exchange.streams.stats().closed_message_rate == before + 1
