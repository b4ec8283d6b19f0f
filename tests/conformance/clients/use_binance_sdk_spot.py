"""binance-sdk-spot (Binance's official SDK) against the local exchange: base URLs only.

REST: ``ConfigurationRestAPI(base_path=...)``. Streams: ``ConfigurationWebSocketStreams(stream_url=...)``;
the SDK opens a bare combined ``/stream`` and subscribes live, one ``SUBSCRIBE`` per typed call.
"""

from __future__ import annotations

import asyncio
import sys

from _harness import Collector, Results
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
from binance_sdk_spot.rest_api.models.enums import KlinesIntervalEnum, TickerWindowSizeEnum, UiKlinesIntervalEnum
from binance_sdk_spot.spot import Spot
from binance_sdk_spot.websocket_streams.models.enums import (
    DiffBookDepthUpdateSpeedEnum,
    KlineIntervalEnum,
    PartialBookDepthLevelsEnum,
    PartialBookDepthUpdateSpeedEnum,
)

NEED = {"trade": 20, "aggTrade": 10, "kline_1m": 2, "bookTicker": 20, "depth@100ms": 10, "depth": 2,
        "depth5": 2, "depth10@100ms": 3, "depth20": 2}


def rest(base: str, r: Results) -> None:
    api = Spot(config_rest_api=ConfigurationRestAPI(base_path=base)).rest_api
    r.call("ping", lambda: api.ping().data())
    r.call("time", lambda: api.time().data())
    r.call("exchangeInfo", lambda: api.exchange_info(symbol="BTCUSDT").data().symbols[0])
    r.call("trades", lambda: api.get_trades("BTCUSDT", limit=50).data())
    r.call("historicalTrades", lambda: api.historical_trades("BTCUSDT", limit=20, from_id=3735690000).data())
    r.call("aggTrades", lambda: api.agg_trades("BTCUSDT", limit=50).data())
    r.call("klines", lambda: api.klines("BTCUSDT", KlinesIntervalEnum["INTERVAL_1m"], limit=20).data())
    r.call("klines_tz", lambda: api.klines("BTCUSDT", KlinesIntervalEnum["INTERVAL_1d"], time_zone="8").data())
    r.call("uiKlines", lambda: api.ui_klines("BTCUSDT", UiKlinesIntervalEnum["INTERVAL_1m"], limit=20).data())
    r.call("depth", lambda: api.depth("BTCUSDT", limit=100).data())
    r.call("avgPrice", lambda: api.avg_price("BTCUSDT").data())
    r.call("ticker/24hr", lambda: api.ticker24hr(symbol="BTCUSDT").data())
    r.call("ticker", lambda: api.ticker(symbol="BTCUSDT", window_size=TickerWindowSizeEnum["WINDOW_SIZE_1h"]).data())
    r.call("ticker/price", lambda: api.ticker_price(symbol="BTCUSDT").data())
    r.call("ticker/bookTicker", lambda: api.ticker_book_ticker(symbol="BTCUSDT").data())
    r.call("error:-1121", lambda: api.get_trades("NOPEUSDT").data())


async def streams(ws: str, r: Results, timeout: float) -> None:
    client = Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=ws + "/json"))
    connection = await client.websocket_streams.create_connection()
    got = Collector(NEED)
    fast = {"update_speed": DiffBookDepthUpdateSpeedEnum["UPDATE_SPEED_100ms"]}
    fast_book = {"update_speed": PartialBookDepthUpdateSpeedEnum["UPDATE_SPEED_100ms"]}
    levels = PartialBookDepthLevelsEnum
    opens = {
        "trade": lambda: connection.trade(symbol="btcusdt"),
        "aggTrade": lambda: connection.agg_trade(symbol="btcusdt"),
        "kline_1m": lambda: connection.kline(symbol="btcusdt", interval=KlineIntervalEnum["INTERVAL_1m"]),
        "bookTicker": lambda: connection.book_ticker(symbol="btcusdt"),
        "depth@100ms": lambda: connection.diff_book_depth(symbol="btcusdt", **fast),
        "depth": lambda: connection.diff_book_depth(symbol="btcusdt"),
        "depth5": lambda: connection.partial_book_depth(symbol="btcusdt", levels=levels["LEVELS_5"]),
        "depth10@100ms": lambda: connection.partial_book_depth(
            symbol="btcusdt", levels=levels["LEVELS_10"], **fast_book),
        "depth20": lambda: connection.partial_book_depth(symbol="btcusdt", levels=levels["LEVELS_20"]),
    }
    for name, open_stream in opens.items():
        await r.acall(f"subscribe:{name}", _subscriber(open_stream, name, got))
        await asyncio.sleep(0.25)  # Binance allows 5 control messages per second per connection
    await got.wait(timeout)
    await connection.close_connection(close_session=True)
    got.into(r)


def _subscriber(open_stream, name, got):  # type: ignore[no-untyped-def]
    async def subscribe() -> str:
        stream = await open_stream()
        stream.on("message", lambda data: got.add(name, data))
        return "subscribed"
    return subscribe


if __name__ == "__main__":
    base, ws, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    results = Results()
    if mode == "rest":
        rest(base, results)
    else:
        asyncio.run(streams(ws, results, float(sys.argv[4])))
    results.emit()
