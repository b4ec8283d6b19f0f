"""Binance spot market-data REST endpoints over a tape: parameters, semantics and bodies as Binance's.

Semantics kept (see ``shared/binance/REST.md``):
- Prices/quantities are 8-decimal strings; times are ms unless the request carries
  ``X-MBX-TIME-UNIT: MICROSECOND``. ``startTime``/``endTime`` may be given in ms or µs (by magnitude); an
  ms ``endTime`` covers its whole millisecond.
- aggTrades: ``fromId`` (inclusive) cannot be combined with ``startTime``/``endTime`` (-1128). With a start,
  the first ``limit`` records from it (up to the end, if given); with only an end, the last ``limit``
  records up to it; with neither, the most recent ``limit``. ``limit`` defaults to 500; above 1000 it is
  capped at 1000; below 1 it is refused (-1100). ``startTime > endTime`` is refused (-1023).
- historicalTrades: from ``fromId`` or the most recent; trades: the most recent; both cap at 1000.
- klines: ``interval`` required and one of Binance's (-1120 otherwise); klines whose openTime lies in
  [startTime, endTime]; first ``limit`` from a start, else the last ``limit``.
- depth: ``limit`` default 100, capped at 5000; weight 5/25/50/250 by tier.
- A missing ``symbol`` is -1102, an unknown one -1121 ("Invalid symbol.").
Only data with ``ts_event <=`` the exchange's now is ever returned.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from btcpipe.binance.weights import (
    API,
    DEPTH_DEFAULT_LIMIT,
    DEPTH_MAX_LIMIT,
    DEPTH_PATH,
    WEIGHTS,
    depth_weight,
    ticker_weight,
)
from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.time import US_PER_MS, US_PER_SEC, is_microseconds
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.klines import INTERVALS, aggregate_klines
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.state import EXCHANGE, ExchangeState

_INT_RANGE = "^[0-9]{1,20}$"


class ApiError(Exception):
    """A request Binance would refuse with ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: int, msg: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response({"code": code, "msg": msg}, status=status, headers=headers)


# --- weights ----------------------------------------------------------------------------------------
def request_weight(path: str, query: Mapping[str, str]) -> int | None:
    """The REQUEST_WEIGHT of a call, or None for a path that is not a weighted API endpoint."""
    if path == DEPTH_PATH:
        try:
            limit = int(query.get("limit", DEPTH_DEFAULT_LIMIT))
        except ValueError:
            limit = DEPTH_DEFAULT_LIMIT
        return depth_weight(min(max(limit, 1), DEPTH_MAX_LIMIT))
    if path.startswith(f"{API}/ticker"):
        return ticker_weight(path, _symbol_count(query))
    return WEIGHTS.get(path)


def _symbol_count(query: Mapping[str, str]) -> int | None:
    if "symbol" in query:
        return 1
    if "symbols" not in query:
        return None
    try:
        parsed = orjson.loads(query["symbols"])
    except orjson.JSONDecodeError:
        return 1
    return len(parsed) if isinstance(parsed, list) else 1


# --- parameters -------------------------------------------------------------------------------------
def _int_param(q: Mapping[str, str], name: str) -> int | None:
    raw = q.get(name)
    if raw is None:
        return None
    if raw == "":
        raise ApiError(-1105, f"Parameter '{name}' was empty.")
    if not raw.isdigit() or len(raw) > 20:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{_INT_RANGE}'.")
    return int(raw)


def _limit(q: Mapping[str, str], default: int, maximum: int) -> int:
    value = _int_param(q, "limit")
    if value is None:
        return default
    if value < 1:
        raise ApiError(-1100, f"Illegal characters found in parameter 'limit'; legal range is '1-{maximum}'.")
    return min(value, maximum)


def _market(state: ExchangeState, q: Mapping[str, str]) -> SymbolMarket:
    symbol = q.get("symbol", "")
    if not symbol:
        raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    market = state.market(symbol)
    if market is None:
        raise ApiError(-1121, "Invalid symbol.")
    return market


def _time_range(q: Mapping[str, str]) -> tuple[int | None, int | None]:
    """(start µs, end µs), inclusive; an ms end stands for the last µs of its millisecond."""
    start, end = _int_param(q, "startTime"), _int_param(q, "endTime")
    start_us = None if start is None else (start if is_microseconds(start) else start * US_PER_MS)
    end_us = None if end is None else (end if is_microseconds(end) else end * US_PER_MS + US_PER_MS - 1)
    if start_us is not None and end_us is not None and start_us > end_us:
        raise ApiError(-1023, "Start time is greater than end time.")
    return start_us, end_us


_TZ = re.compile(r"^([+-]?)(\d{1,2})(?::(\d{2}))?$")


def _time_zone_us(raw: str) -> int:
    """``timeZone`` (``8``, ``-1:00``, ``+05:45``; strictly -12:00..+14:00) as a µs offset from UTC."""
    m = _TZ.match(raw.strip())
    minutes = None if m is None else int(m.group(2)) * 60 + int(m.group(3) or 0)
    if m is not None and minutes is not None and m.group(1) == "-":
        minutes = -minutes
    if m is None or minutes is None or not -12 * 60 <= minutes <= 14 * 60 or int(m.group(3) or 0) >= 60:
        raise ApiError(-1100, f"Illegal characters found in parameter 'timeZone'; legal range is '-12:00' to "
                              f"'+14:00' ({raw!r}).")
    return minutes * 60 * US_PER_SEC


def time_in_us(request: web.Request) -> bool:
    unit = request.headers.get("X-MBX-TIME-UNIT")
    if unit is None or unit.upper() in ("MILLISECOND", "MILLISECONDS"):
        return False
    if unit.upper() in ("MICROSECOND", "MICROSECONDS"):
        return True
    raise ApiError(-1100, f"Invalid value for header X-MBX-TIME-UNIT: {unit!r}; use MILLISECOND or MICROSECOND.")


def _times(ts_us: list[int], in_us: bool) -> list[int]:
    return ts_us if in_us else [t // US_PER_MS for t in ts_us]


def _decimals(mantissas: list[int]) -> list[str]:
    return [format_decimal(m) for m in mantissas]


# --- handlers ---------------------------------------------------------------------------------------
class RestApi:
    """The handlers; each reads the state from the application, so one instance serves any app."""

    @staticmethod
    def _state(request: web.Request) -> ExchangeState:
        return request.app[EXCHANGE]

    async def ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def time(self, request: web.Request) -> web.Response:
        now = self._state(request).now_us()
        return json_response({"serverTime": now if time_in_us(request) else now // US_PER_MS})

    async def exchange_info(self, request: web.Request) -> web.Response:
        state = self._state(request)
        q = request.query
        wanted: list[str] | None = None
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                parsed = orjson.loads(q["symbols"])
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                raise ApiError(-1100, "Illegal characters found in parameter 'symbols'; legal range is '[\"A\",...]'.")
            wanted = parsed
        markets = list(state.markets.values())
        if wanted is not None:
            if any(state.market(s) is None for s in wanted):
                raise ApiError(-1121, "Invalid symbol.")
            markets = [m for m in markets if m.symbol in {s.upper() for s in wanted}]
        now = state.now_us()
        limit = state.limiter.limit
        return json_response(
            {
                "timezone": "UTC",
                "serverTime": now if time_in_us(request) else now // US_PER_MS,
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": [_symbol_info(m.symbol) for m in markets],
            }
        )

    async def agg_trades(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        in_us = time_in_us(request)
        market = _market(state, q)
        from_id = _int_param(q, "fromId")
        start_us, end_us = _time_range(q)
        limit = _limit(q, 500, 1000)
        now = state.now_us()
        if from_id is not None and (start_us is not None or end_us is not None):
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        if from_id is not None:
            lo, hi = market.aggs_from_id(from_id, limit, now)
        elif start_us is not None or end_us is not None:
            lo, hi = market.aggs_in_time(start_us, end_us, limit, now)
        else:
            lo, hi = market.recent_aggs(limit, now)
        a = market.aggs
        rows = [
            {"a": ai, "p": p, "q": qty, "f": f, "l": last, "T": t, "m": m, "M": True}
            for ai, p, qty, f, last, t, m in zip(
                a.agg_id[lo:hi].tolist(),
                _decimals(a.price[lo:hi].tolist()),
                _decimals(a.qty[lo:hi].tolist()),
                a.first_trade_id[lo:hi].tolist(),
                a.last_trade_id[lo:hi].tolist(),
                _times(a.ts_event[lo:hi].tolist(), in_us),
                a.is_buyer_maker[lo:hi].tolist(),
                strict=True,
            )
        ]
        return json_response(rows)

    async def historical_trades(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        in_us = time_in_us(request)
        market = _market(state, q)
        from_id = _int_param(q, "fromId")
        limit = _limit(q, 500, 1000)
        now = state.now_us()
        if from_id is None:
            lo, hi = market.recent_trades(limit, now)
        else:
            lo, hi = market.trades_from_id(from_id, limit, now)
        return json_response(_trade_rows(market, lo, hi, in_us))

    async def trades(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        in_us = time_in_us(request)
        market = _market(state, q)
        lo, hi = market.recent_trades(_limit(q, 500, 1000), state.now_us())
        return json_response(_trade_rows(market, lo, hi, in_us))

    async def klines(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        in_us = time_in_us(request)
        market = _market(state, q)
        interval = q.get("interval")
        if not interval:
            raise ApiError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in INTERVALS:
            raise ApiError(-1120, "Invalid interval.")
        offset_us = _time_zone_us(q.get("timeZone", "0"))
        start_us, end_us = _time_range(q)
        limit = _limit(q, 500, 1000)
        visible = market.visible_trades(state.now_us())
        table = market.klines(interval, offset_us)
        g0, g1 = table.select(start_us, end_us, limit, visible)
        k = aggregate_klines(market.trades, table, g0, g1, visible)
        next_open = k.next_open_time.tolist()
        close = [t - 1 for t in next_open] if in_us else [t // US_PER_MS - 1 for t in next_open]
        rows = [
            [ot, o, h, lo_, c, v, ct, qv, n, tb, tq, "0"]
            for ot, o, h, lo_, c, v, ct, qv, n, tb, tq in zip(
                _times(k.open_time.tolist(), in_us),
                _decimals(k.open.tolist()),
                _decimals(k.high.tolist()),
                _decimals(k.low.tolist()),
                _decimals(k.close.tolist()),
                _decimals(k.volume.tolist()),
                close,
                _decimals(k.quote_volume.tolist()),
                k.n_trades.tolist(),
                _decimals(k.taker_buy_base.tolist()),
                _decimals(k.taker_buy_quote.tolist()),
                strict=True,
            )
        ]
        return json_response(rows)

    async def depth(self, request: web.Request) -> web.Response:
        state, q = self._state(request), request.query
        market = _market(state, q)
        limit = _limit(q, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
        # Replaying many diffs the first time can take a while: keep the event loop free meanwhile.
        book = await asyncio.get_running_loop().run_in_executor(None, market.book.snapshot, state.now_us(), limit)
        return json_response(
            {
                "lastUpdateId": book.last_update_id,
                "bids": [[format_decimal(p), format_decimal(s)] for p, s in book.bids],
                "asks": [[format_decimal(p), format_decimal(s)] for p, s in book.asks],
            }
        )


def _trade_rows(market: SymbolMarket, lo: int, hi: int, in_us: bool) -> list[dict[str, Any]]:
    t = market.trades
    price, qty = t.price[lo:hi], t.qty[lo:hi]
    return [
        {"id": i, "price": p, "qty": qt, "quoteQty": qq, "time": ts, "isBuyerMaker": m, "isBestMatch": True}
        for i, p, qt, qq, ts, m in zip(
            t.id[lo:hi].tolist(),
            _decimals(price.tolist()),
            _decimals(qty.tolist()),
            _decimals(quote_mantissas(price, qty).tolist()),
            _times(t.ts_event[lo:hi].tolist(), in_us),
            t.is_buyer_maker[lo:hi].tolist(),
            strict=True,
        )
    ]


def _symbol_info(symbol: str) -> dict[str, Any]:
    base, quote = (symbol[:-4], symbol[-4:]) if symbol.endswith(("USDT", "USDC")) else (symbol[:-3], symbol[-3:])
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "opoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        # BTCUSDT's filters as Binance lists them (the market-data clients read precision and limits here).
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
             "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
            {"filterType": "ICEBERG_PARTS", "limit": 100},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
             "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def add_rest_routes(app: web.Application) -> None:
    api = RestApi()
    app.router.add_get(f"{API}/ping", api.ping)
    app.router.add_get(f"{API}/time", api.time)
    app.router.add_get(f"{API}/exchangeInfo", api.exchange_info)
    app.router.add_get(f"{API}/aggTrades", api.agg_trades)
    app.router.add_get(f"{API}/historicalTrades", api.historical_trades)
    app.router.add_get(f"{API}/trades", api.trades)
    app.router.add_get(f"{API}/klines", api.klines)
    app.router.add_get(f"{API}/uiKlines", api.klines)  # same candles: the exchange has no UI-specific tweaks
    app.router.add_get(DEPTH_PATH, api.depth)
