"""python-binance against the local exchange: only the base URLs change (``API_URL``, ``STREAM_URL``)."""

from __future__ import annotations

import asyncio
import sys

from _harness import Collector, Results
from binance import AsyncClient, BinanceSocketManager, Client

NEED = {"trade": 20, "aggTrade": 10, "kline_1m": 2, "bookTicker": 20, "depth@100ms": 10, "depth": 2,
        "depth5": 2, "depth10@100ms": 3, "depth20": 2}


def rest(base: str, r: Results) -> None:
    c = Client(ping=False)
    c.API_URL = base + "/api"
    r.call("ping", c.ping)
    r.call("time", c.get_server_time)
    r.call("exchangeInfo", lambda: c.get_symbol_info("BTCUSDT"))
    r.call("trades", lambda: c.get_recent_trades(symbol="BTCUSDT", limit=50))
    r.call("historicalTrades", lambda: c.get_historical_trades(symbol="BTCUSDT", limit=20, fromId=3735690000))
    r.call("aggTrades", lambda: c.get_aggregate_trades(symbol="BTCUSDT", limit=50))
    r.call("klines", lambda: c.get_klines(symbol="BTCUSDT", interval="1m", limit=20))
    r.call("klines_tz", lambda: c.get_klines(symbol="BTCUSDT", interval="1d", timeZone="8"))
    r.call("uiKlines", lambda: c.get_ui_klines(symbol="BTCUSDT", interval="1m", limit=20))
    r.call("depth", lambda: c.get_order_book(symbol="BTCUSDT", limit=100))
    r.call("avgPrice", lambda: c.get_avg_price(symbol="BTCUSDT"))
    r.call("ticker/24hr", lambda: c.get_ticker(symbol="BTCUSDT"))
    r.call("ticker", lambda: c.get_symbol_ticker_window(symbol="BTCUSDT", windowSize="1h"))
    r.call("ticker/price", lambda: c.get_symbol_ticker(symbol="BTCUSDT"))
    r.call("ticker/bookTicker", lambda: c.get_orderbook_ticker(symbol="BTCUSDT"))
    r.call("error:-1121", lambda: c.get_recent_trades(symbol="NOPEUSDT"))


async def streams(ws: str, r: Results, timeout: float) -> None:
    client = AsyncClient()
    bm = BinanceSocketManager(client)
    bm.STREAM_URL = ws + "/json/"
    sockets = {
        "trade": bm.trade_socket("BTCUSDT"),
        "aggTrade": bm.aggtrade_socket("BTCUSDT"),
        "kline_1m": bm.kline_socket("BTCUSDT", "1m"),
        "bookTicker": bm.symbol_book_ticker_socket("BTCUSDT"),
        "depth@100ms": bm.depth_socket("BTCUSDT", interval=100),
        "depth": bm.depth_socket("BTCUSDT"),
        "depth5": bm.depth_socket("BTCUSDT", depth="5"),
        "depth10@100ms": bm.depth_socket("BTCUSDT", depth="10", interval=100),
        "depth20": bm.depth_socket("BTCUSDT", depth="20"),
    }
    got = Collector(NEED)

    async def read(name: str) -> None:
        async with sockets[name] as sock:
            while not got.done.is_set():
                got.add(name, await sock.recv())

    tasks = [asyncio.create_task(read(n)) for n in sockets]
    await got.wait(timeout)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close_connection()
    got.into(r)


if __name__ == "__main__":
    base, ws, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    results = Results()
    if mode == "rest":
        rest(base, results)
    else:
        asyncio.run(streams(ws, results, float(sys.argv[4])))
    results.emit()
