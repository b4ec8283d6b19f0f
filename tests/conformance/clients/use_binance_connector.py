"""binance-connector (deprecated by Binance, still widely used) against the local exchange: base URLs only.

REST: ``Spot(base_url=...)``. Streams: ``SpotWebsocketStreamClient(stream_url=..., is_combined=True)``
connects to a bare ``/stream`` and subscribes live; each typed call sends one ``SUBSCRIBE``, paced under
Binance's 5 messages per second as a client must be.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from _harness import Results
from binance.spot import Spot
from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

NEED = {"btcusdt@trade": 20, "btcusdt@aggTrade": 10, "btcusdt@kline_1m": 2, "btcusdt@bookTicker": 20,
        "btcusdt@depth@100ms": 10, "btcusdt@depth": 2, "btcusdt@depth5": 2, "btcusdt@depth10@100ms": 3,
        "btcusdt@depth20": 2}


def rest(base: str, r: Results) -> None:
    c = Spot(base_url=base)
    r.call("ping", c.ping)
    r.call("time", c.time)
    r.call("exchangeInfo", lambda: c.exchange_info(symbol="BTCUSDT")["symbols"][0])
    r.call("trades", lambda: c.trades("BTCUSDT", limit=50))
    r.call("historicalTrades", lambda: c.historical_trades("BTCUSDT", limit=20, fromId=3735690000))
    r.call("aggTrades", lambda: c.agg_trades("BTCUSDT", limit=50))
    r.call("klines", lambda: c.klines("BTCUSDT", "1m", limit=20))
    r.call("klines_tz", lambda: c.klines("BTCUSDT", "1d", timeZone="8"))
    r.call("uiKlines", lambda: c.ui_klines("BTCUSDT", "1m", limit=20))
    r.call("depth", lambda: c.depth("BTCUSDT", limit=100))
    r.call("avgPrice", lambda: c.avg_price("BTCUSDT"))
    r.call("ticker/24hr", lambda: c.ticker_24hr("BTCUSDT"))
    r.call("ticker", lambda: c.rolling_window_ticker("BTCUSDT", windowSize="1h"))
    r.call("ticker/price", lambda: c.ticker_price("BTCUSDT"))
    r.call("ticker/bookTicker", lambda: c.book_ticker("BTCUSDT"))
    r.call("error:-1121", lambda: c.trades("NOPEUSDT"))


def streams(ws: str, r: Results, timeout: float) -> None:
    got: dict[str, list[object]] = {k: [] for k in NEED}
    replies: list[object] = []
    done = threading.Event()
    lock = threading.Lock()

    def on_message(_: object, text: str) -> None:
        msg = json.loads(text)
        with lock:
            if "stream" in msg:
                name = msg["stream"].removesuffix("@1000ms")  # the connector names the 1 s streams explicitly
                bucket = got.setdefault(name, [])
                if len(bucket) < NEED.get(name, 0):
                    bucket.append(msg["data"])
            else:
                replies.append(msg)
            if all(len(got[k]) >= n for k, n in NEED.items()):
                done.set()

    client = SpotWebsocketStreamClient(stream_url=ws + "/json", is_combined=True, on_message=on_message)
    subscriptions = [
        lambda: client.trade(symbol="btcusdt", id=1),
        lambda: client.agg_trade(symbol="btcusdt", id=2),
        lambda: client.kline(symbol="btcusdt", interval="1m", id=3),
        lambda: client.book_ticker(symbol="btcusdt", id=4),
        lambda: client.diff_book_depth(symbol="btcusdt", speed=100, id=5),
        lambda: client.diff_book_depth(symbol="btcusdt", speed=1000, id=6),
        lambda: client.partial_book_depth(symbol="btcusdt", level=5, speed=1000, id=7),
        lambda: client.partial_book_depth(symbol="btcusdt", level=10, speed=100, id=8),
        lambda: client.partial_book_depth(symbol="btcusdt", level=20, speed=1000, id=9),
        lambda: client.list_subscribe(id=10),
    ]
    for subscribe in subscriptions:
        subscribe()
        time.sleep(0.25)  # Binance allows 5 control messages per second per connection
    done.wait(timeout)
    client.stop()
    for name, need in NEED.items():
        messages = got[name]
        short = name.removeprefix("btcusdt@")
        r.calls[f"stream:{short}"] = (
            {"ok": messages} if len(messages) >= need else {"error": f"only {len(messages)} messages"}
        )
    r.calls["control:replies"] = {"ok": replies}


if __name__ == "__main__":
    base, ws, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    results = Results()
    if mode == "rest":
        rest(base, results)
    else:
        streams(ws, results, float(sys.argv[4]))
    results.emit()
