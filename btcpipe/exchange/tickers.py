"""Ticker statistics over a tape as of an exchange time: rolling windows, average price, best bid/ask.

One implementation for REST (``ticker/24hr``, ``ticker``, ``ticker/price``, ``ticker/bookTicker``,
``avgPrice``) and the JSON streams (``@ticker``, ``@miniTicker``, ``@avgPrice``), so both say the same
thing about the same instant. Pure: every figure is computed from the trades with ``ts_event <= now``.

Binance's rules kept: the 24 h ticker is a rolling window ending now; ``/api/v3/ticker`` windows open on a
minute (so up to 59 999 ms wider than asked); ``avgPrice`` is the volume-weighted price of the last 5
minutes' trades. An empty window has zero prices, ``firstId``/``lastId`` ``-1`` and ``count`` 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.tape import I64
from btcpipe.domain.time import US_PER_DAY, US_PER_MS, US_PER_SEC
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.source import SymbolMarket

_SCALE = 10**8
_MIN = 60 * US_PER_SEC
AVG_PRICE_MINUTES = 5
_WINDOW = re.compile(r"^([1-9][0-9]?)([mhd])$")
_WINDOW_LIMITS = {"m": (59, _MIN), "h": (23, 60 * _MIN), "d": (7, US_PER_DAY)}


def window_size_us(raw: str) -> int | None:
    """``1m``..``59m``, ``1h``..``23h``, ``1d``..``7d`` in µs; None for anything else (units never combine)."""
    m = _WINDOW.match(raw)
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    largest, step = _WINDOW_LIMITS[unit]
    return n * step if n <= largest else None


@dataclass(frozen=True, slots=True)
class WindowStats:
    """The trades of ``[open_time, close_time]`` (µs) summarised; prices and volumes are 8-decimal mantissas."""

    open_time: int
    close_time: int
    first_id: int  # -1 when the window has no trade
    last_id: int
    count: int
    open: int
    high: int
    low: int
    last: int
    last_qty: int
    volume: int
    quote_volume: int
    prev_close: int  # the price of the last trade before the window (0 if none)

    @property
    def price_change(self) -> int:
        return self.last - self.open if self.count else 0

    def price_change_percent(self) -> str:
        """Three decimals, as Binance prints it (``"-95.960"``)."""
        if not self.count or not self.open:
            return "0.000"
        thousandths = round(self.price_change * 100_000 / self.open)
        sign = "-" if thousandths < 0 else ""
        whole, frac = divmod(abs(thousandths), 1000)
        return f"{sign}{whole}.{frac:03d}"

    @property
    def weighted_avg_price(self) -> int:
        return self.quote_volume * _SCALE // self.volume if self.volume else 0


def window_stats(market: SymbolMarket, start_us: int, now_us: int) -> WindowStats:
    """Statistics of the visible trades with ``start_us <= ts_event <= now_us``."""
    t = market.trades
    visible = market.visible_trades(now_us)
    keys = market.trade_keys
    lo = min(int(np.searchsorted(keys, start_us, side="left")), visible)
    prev_close = int(t.price[lo - 1]) if lo > 0 else 0
    if lo >= visible:
        return WindowStats(start_us, now_us, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, prev_close)
    price: I64 = t.price[lo:visible]
    qty: I64 = t.qty[lo:visible]
    return WindowStats(
        open_time=start_us,
        close_time=now_us,
        first_id=int(t.id[lo]),
        last_id=int(t.id[visible - 1]),
        count=visible - lo,
        open=int(price[0]),
        high=int(price.max()),
        low=int(price.min()),
        last=int(price[-1]),
        last_qty=int(qty[-1]),
        volume=int(qty.sum()),
        quote_volume=int(quote_mantissas(price, qty).sum()),
        prev_close=prev_close,
    )


def rolling_24h(market: SymbolMarket, now_us: int) -> WindowStats:
    return window_stats(market, now_us - US_PER_DAY, now_us)


def rolling_window(market: SymbolMarket, window_us: int, now_us: int) -> WindowStats:
    """``/api/v3/ticker``'s window: it opens on the minute, so it may be up to a minute wider than asked."""
    start = now_us - window_us
    return window_stats(market, start - start % _MIN, now_us)


def average_price(market: SymbolMarket, now_us: int) -> tuple[int, int] | None:
    """(volume-weighted price of the last 5 minutes' trades as a mantissa, the last trade's time µs)."""
    stats = window_stats(market, now_us - AVG_PRICE_MINUTES * _MIN, now_us)
    visible = market.visible_trades(now_us)
    if not visible:
        return None
    last_time = int(market.trades.ts_event[visible - 1])
    if not stats.count:
        return int(market.trades.price[visible - 1]), last_time  # no trade in 5 min: the last price stands
    return stats.weighted_avg_price, last_time


def last_price(market: SymbolMarket, now_us: int) -> int | None:
    visible = market.visible_trades(now_us)
    return int(market.trades.price[visible - 1]) if visible else None


def best_bid_ask_at(market: SymbolMarket, now_us: int) -> tuple[int, int, int, int] | None:
    """(bid price, bid qty, ask price, ask qty) as of ``now_us``: the tape's last best bid/ask, else the book's top."""
    tickers, keys = market.tape.best_bid_asks, market.best_bid_ask_keys
    if tickers is not None and keys is not None:
        i = int(np.searchsorted(keys, now_us, side="right")) - 1
        if i >= 0:
            return (int(tickers.bid_price[i]), int(tickers.bid_qty[i]), int(tickers.ask_price[i]),
                    int(tickers.ask_qty[i]))
    book = market.book.snapshot(now_us, 1)
    if not book.bids and not book.asks:
        return None
    bid = book.bids[0] if book.bids else (0, 0)
    ask = book.asks[0] if book.asks else (0, 0)
    return bid[0], bid[1], ask[0], ask[1]


# --- bodies as Binance prints them (REST tickers; the @ticker stream renames the same fields) -------------
def stats_body(symbol: str, s: WindowStats, *, full: bool, in_us: bool) -> dict[str, Any]:
    """The statistics as ``/api/v3/ticker`` prints them (``ticker/24hr`` adds the book fields to FULL)."""
    div = 1 if in_us else US_PER_MS
    body: dict[str, Any] = {"symbol": symbol}
    if full:
        body |= {
            "priceChange": format_decimal(s.price_change),
            "priceChangePercent": s.price_change_percent(),
            "weightedAvgPrice": format_decimal(s.weighted_avg_price),
        }
    return body | {
        "openPrice": format_decimal(s.open),
        "highPrice": format_decimal(s.high),
        "lowPrice": format_decimal(s.low),
        "lastPrice": format_decimal(s.last),
        "volume": format_decimal(s.volume),
        "quoteVolume": format_decimal(s.quote_volume),
        "openTime": s.open_time // div,
        "closeTime": s.close_time // div,
        "firstId": s.first_id,
        "lastId": s.last_id,
        "count": s.count,
    }


def book_fields(market: SymbolMarket, now: int) -> dict[str, str]:
    top = best_bid_ask_at(market, now) or (0, 0, 0, 0)
    return {
        "bidPrice": format_decimal(top[0]), "bidQty": format_decimal(top[1]),
        "askPrice": format_decimal(top[2]), "askQty": format_decimal(top[3]),
    }


def ticker_24hr_body(market: SymbolMarket, now: int, *, full: bool, in_us: bool) -> dict[str, Any]:
    s = rolling_24h(market, now)
    body = stats_body(market.symbol, s, full=full, in_us=in_us)
    if not full:
        return body
    head = {k: body[k] for k in ("symbol", "priceChange", "priceChangePercent", "weightedAvgPrice")}
    extra = {"prevClosePrice": format_decimal(s.prev_close), "lastPrice": body["lastPrice"],
             "lastQty": format_decimal(s.last_qty)}
    rest = {k: v for k, v in body.items() if k not in head and k != "lastPrice"}
    return head | extra | book_fields(market, now) | rest
