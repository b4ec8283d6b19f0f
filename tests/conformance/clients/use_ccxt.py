"""ccxt (REST) and ccxt.pro (watch_*) with spot markets only, against the local exchange: base URLs only.

ccxt.pro opens ``<ws>/<n>`` (a connection tag, no stream) and subscribes live with ``SUBSCRIBE``; its
order book is Binance's procedure (diff stream + REST snapshot).
"""

from __future__ import annotations

import asyncio
import sys

import ccxt
import ccxt.pro
from _harness import Results

OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"}


def _point(exchange: ccxt.Exchange, base: str, ws: str) -> None:
    exchange.urls["api"]["public"] = base + "/api/v3"
    exchange.urls["api"]["v1"] = base + "/api/v1"
    if "ws" in exchange.urls["api"]:  # ccxt.pro
        exchange.urls["api"]["ws"]["spot"] = ws + "/json/ws"


def rest(base: str, ws: str, r: Results) -> None:
    ex = ccxt.binance({"options": dict(OPTIONS)})
    _point(ex, base, ws)
    r.call("exchangeInfo", lambda: {k: v for k, v in ex.load_markets()["BTC/USDT"].items() if k != "info"})
    r.call("time", ex.fetch_time)
    r.call("aggTrades", lambda: ex.fetch_trades("BTC/USDT", limit=50))
    r.call("trades", lambda: ex.fetch_trades("BTC/USDT", limit=50, params={"fetchTradesMethod": "publicGetTrades"}))
    r.call("historicalTrades", lambda: ex.public_get_historicaltrades({"symbol": "BTCUSDT", "limit": 20,
                                                                       "fromId": 3735690000}))
    keyed = ccxt.binance({"options": dict(OPTIONS), "apiKey": "any-key", "secret": "unused"})
    _point(keyed, base, ws)  # ccxt refuses historicalTrades without an apiKey of its own accord
    r.call("historicalTrades(apiKey)", lambda: keyed.public_get_historicaltrades(
        {"symbol": "BTCUSDT", "limit": 20, "fromId": 3735690000}))
    r.call("klines", lambda: ex.fetch_ohlcv("BTC/USDT", "1m", limit=20))
    r.call("uiKlines", lambda: ex.public_get_uiklines({"symbol": "BTCUSDT", "interval": "1m", "limit": 20}))
    r.call("depth", lambda: ex.fetch_order_book("BTC/USDT", limit=100))
    r.call("avgPrice", lambda: ex.public_get_avgprice({"symbol": "BTCUSDT"}))
    r.call("ticker/24hr", lambda: ex.fetch_ticker("BTC/USDT"))
    r.call("ticker", lambda: ex.public_get_ticker({"symbol": "BTCUSDT", "windowSize": "1h"}))
    r.call("ticker/price", lambda: ex.fetch_last_prices(["BTC/USDT"]))
    r.call("ticker/bookTicker", lambda: ex.fetch_bids_asks(["BTC/USDT"]))
    r.call("error:-1121", lambda: ex.public_get_trades({"symbol": "NOPEUSDT"}))


async def streams(base: str, ws: str, r: Results, timeout: float) -> None:
    async def collect(watch, need: int) -> list[object]:  # type: ignore[no-untyped-def]
        got: list[object] = []
        while len(got) < need:
            batch = await watch()
            got.extend(batch.values() if isinstance(batch, dict) else batch)
        return got[:need]

    def book(ex):  # type: ignore[no-untyped-def]
        async def three_views() -> object:
            ob = None
            for _ in range(3):  # the first view, then two updates on top of it
                ob = await ex.watch_order_book("BTC/USDT")
            return {"nonce": ob["nonce"], "bids": ob["bids"][:20], "asks": ob["asks"][:20]}
        return three_views

    jobs = {
        "trade": lambda ex: lambda: collect(lambda: ex.watch_trades("BTC/USDT", params={"name": "trade"}), 20),
        "aggTrade": lambda ex: lambda: collect(lambda: ex.watch_trades("BTC/USDT", params={"name": "aggTrade"}), 10),
        "kline_1m": lambda ex: lambda: collect(lambda: ex.watch_ohlcv("BTC/USDT", "1m"), 2),
        "bookTicker": lambda ex: lambda: collect(lambda: ex.watch_bids_asks(["BTC/USDT"]), 5),
        "depth@100ms": book,
        "ticker": lambda ex: lambda: ex.watch_ticker("BTC/USDT"),
    }

    async def one(name: str) -> None:
        # One ccxt.pro instance per watch: ccxt caches trades per symbol, whichever stream fed them.
        ex = ccxt.pro.binance({"options": dict(OPTIONS)})
        _point(ex, base, ws)
        try:
            await ex.load_markets()
            await r.acall(f"stream:{name}", lambda: asyncio.wait_for(jobs[name](ex)(), timeout))
        finally:
            await ex.close()

    await asyncio.gather(*(one(name) for name in jobs))


if __name__ == "__main__":
    base, ws, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    results = Results()
    if mode == "rest":
        rest(base, ws, results)
    else:
        asyncio.run(streams(base, ws, results, float(sys.argv[4])))
    results.emit()
