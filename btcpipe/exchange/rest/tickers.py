"""Binance's ticker endpoints over the tape: ``ticker/24hr``, ``ticker`` (rolling window), ``ticker/price``,
``ticker/bookTicker`` and ``avgPrice``; bodies and parameter rules as Binance documents them.

``symbol`` answers one object; ``symbols=["A","B"]`` (JSON array) or neither answers an array; both at
once is -1128. ``type`` is ``FULL`` (default) or ``MINI``; ``windowSize`` ``1m``..``59m``, ``1h``..``23h``,
``1d``..``7d`` (default ``1d``). The figures come from ``exchange.tickers``, shared with the streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from btcpipe.binance.weights import API
from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.time import US_PER_MS
from btcpipe.exchange.rest.api import ApiError, json_response, time_in_us
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.state import EXCHANGE, ExchangeState
from btcpipe.exchange.tickers import (
    AVG_PRICE_MINUTES,
    average_price,
    book_fields,
    last_price,
    rolling_window,
    stats_body,
    ticker_24hr_body,
    window_size_us,
)


def _markets(state: ExchangeState, q: Mapping[str, str]) -> tuple[list[SymbolMarket], bool]:
    """The markets asked for and whether the answer is one object (``symbol``) rather than an array."""
    if "symbol" in q and "symbols" in q:
        raise ApiError(-1128, "Combination of optional parameters invalid.")
    if "symbol" in q:
        market = state.market(q["symbol"]) if q["symbol"] else None
        if not q["symbol"]:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return [market], True
    if "symbols" in q:
        try:
            names = orjson.loads(q["symbols"])
        except orjson.JSONDecodeError:
            names = None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbols'; legal range is '[\"A\",...]'.")
        found = [state.market(n) for n in names]
        if any(m is None for m in found):
            raise ApiError(-1121, "Invalid symbol.")
        return [m for m in found if m is not None], False
    return list(state.markets.values()), False


def _answer(rows: list[dict[str, Any]], single: bool) -> web.Response:
    return json_response(rows[0] if single else rows)


def _ticker_type(q: Mapping[str, str]) -> str:
    kind = q.get("type", "FULL").upper()
    if kind not in ("FULL", "MINI"):
        raise ApiError(-1100, f"Illegal characters found in parameter 'type'; legal range is 'FULL, MINI'. ({kind})")
    return kind


class TickerApi:
    """The ticker handlers; like ``RestApi`` they read the state from the application."""

    @staticmethod
    def _state(request: web.Request) -> ExchangeState:
        return request.app[EXCHANGE]

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        in_us, full = time_in_us(request), _ticker_type(q) == "FULL"
        markets, single = _markets(state, q)
        now = state.now_us()
        return _answer([ticker_24hr_body(m, now, full=full, in_us=in_us) for m in markets], single)

    async def ticker_window(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        if "symbol" not in q and "symbols" not in q:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        in_us, full = time_in_us(request), _ticker_type(q) == "FULL"
        window = window_size_us(q.get("windowSize", "1d"))
        if window is None:
            raise ApiError(-1100, "Invalid windowSize: use 1m..59m, 1h..23h or 1d..7d.")
        markets, single = _markets(state, q)
        now = state.now_us()
        rows = [stats_body(m.symbol, rolling_window(m, window, now), full=full, in_us=in_us) for m in markets]
        return _answer(rows, single)

    async def price(self, request: web.Request) -> web.Response:
        state = self._state(request)
        markets, single = _markets(state, request.query)
        now = state.now_us()
        rows = [{"symbol": m.symbol, "price": format_decimal(last_price(m, now) or 0)} for m in markets]
        return _answer(rows, single)

    async def book_ticker(self, request: web.Request) -> web.Response:
        state = self._state(request)
        markets, single = _markets(state, request.query)
        now = state.now_us()
        return _answer([{"symbol": m.symbol} | book_fields(m, now) for m in markets], single)

    async def avg_price(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        markets, single = _markets(state, q)
        if not single:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        now = state.now_us()
        avg = average_price(markets[0], now)
        price, close = avg if avg is not None else (0, 0)
        return json_response({"mins": AVG_PRICE_MINUTES, "price": format_decimal(price),
                              "closeTime": close if time_in_us(request) else close // US_PER_MS})


def add_ticker_routes(app: web.Application) -> None:
    api = TickerApi()
    handlers = {"ticker/24hr": api.ticker_24hr, "ticker": api.ticker_window, "ticker/price": api.price,
                "ticker/bookTicker": api.book_ticker, "avgPrice": api.avg_price}
    for tail, handler in handlers.items():
        app.router.add_get(f"{API}/{tail}", handler)
