"""The periodic JSON streams: bodies built at a tick of exchange time from the tape as of that tick.

Binance pushes these on a timer, not per event: ``@depth`` (the diffs of the last 1000 ms merged into one
``depthUpdate``: first ``U``, last ``u``, each level's latest quantity), the partial books ``@depth<N>`` /
``@depth<N>@100ms``, ``@kline_<interval>`` (the open candle every 1 or 2 s; when a candle closes between
two ticks it is sent once more with ``x: true``, and a tick right on the boundary sends only that),
``@miniTicker``/``@ticker`` (24 h rolling window) and ``@avgPrice``. The hub ticks each subscribed stream
on its own grid (multiples of its period), in time order with the real-time events. A tick with nothing to
say (no book yet, no trade yet, no diff in the second) sends nothing.
"""

from __future__ import annotations

import numpy as np
import orjson

from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.errors import StreamError
from btcpipe.domain.records import Level
from btcpipe.domain.tape import I64
from btcpipe.exchange.amounts import quote_mantissas
from btcpipe.exchange.klines import next_open_times, open_times
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.streams.formats import partial_book_json
from btcpipe.exchange.streams.timeline import SymbolTimeline
from btcpipe.exchange.tickers import average_price, rolling_24h, ticker_24hr_body

_UTC8_US = 8 * 3600 * 1_000_000


def _t(ts_us: int, micros: bool) -> int:
    return ts_us if micros else ts_us // 1000


class PeriodicSource:
    """One symbol's periodic bodies; ``body(kind, tick_us, prev_tick_us, micros)`` → JSON bodies to send."""

    def __init__(self, market: SymbolMarket, timeline: SymbolTimeline) -> None:
        self.market = market
        self.timeline = timeline
        depth = market.tape.depth
        self._diff_keys: I64 | None = (
            np.maximum.accumulate(depth.ts_event) if depth is not None and len(depth) else None
        )

    def body(self, kind: str, tick: int, prev: int, micros: bool) -> list[bytes]:
        if kind == "depth@1000ms":
            return self._merged_diff(tick, prev, micros)
        if kind.startswith("depth"):
            levels = int(kind[len("depth"):kind.index("@")])
            snap = self.timeline.book.snapshot_at(tick, levels)
            return [] if snap is None else [partial_book_json(snap)]
        if kind.startswith("kline_"):
            interval, _, zone = kind[len("kline_"):].partition("@")
            return self._klines(interval, tick, prev, micros, _UTC8_US if zone else 0)
        if kind == "miniTicker":
            return self._mini_ticker(tick, micros)
        if kind == "ticker":
            return self._ticker(tick, micros)
        if kind == "avgPrice":
            return self._avg_price(tick, micros)
        raise StreamError(f"not a periodic stream kind: {kind!r}")

    # --- depth ----------------------------------------------------------------------------------------------
    def _merged_diff(self, tick: int, prev: int, micros: bool) -> list[bytes]:
        depth, keys = self.market.tape.depth, self._diff_keys
        if depth is None or keys is None:
            return []
        lo, hi = int(np.searchsorted(keys, prev, side="right")), int(np.searchsorted(keys, tick, side="right"))
        if hi <= lo:
            return []
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        a, b = int(depth.offsets[lo]), int(depth.offsets[hi])
        for ask, price, qty in zip(
            depth.level_is_ask[a:b].tolist(), depth.level_price[a:b].tolist(), depth.level_qty[a:b].tolist(),
            strict=True,
        ):
            (asks if ask else bids)[price] = qty  # later diffs win: the level's state at the tick
        return [
            orjson.dumps(
                {
                    "e": "depthUpdate", "E": _t(tick, micros), "s": self.market.symbol,
                    "U": int(depth.first_update_id[lo]), "u": int(depth.last_update_id[hi - 1]),
                    "b": _levels(sorted(bids.items(), reverse=True)), "a": _levels(sorted(asks.items())),
                }
            )
        ]

    # --- klines ---------------------------------------------------------------------------------------------
    def _klines(self, interval: str, tick: int, prev: int, micros: bool, offset: int) -> list[bytes]:
        visible = self.market.visible_trades(tick)
        if not visible:
            return []

        def open_of(t: int) -> int:  # candles aligned in the time zone ``offset`` from UTC; times stay UTC
            return int(open_times(np.array([t + offset], dtype=np.int64), interval)[0]) - offset

        open_now = open_of(tick)
        out: list[bytes] = []
        if prev < open_now:
            open_prev = open_of(prev)
            if open_prev < open_now and self.market.visible_trades(open_prev) < self.market.visible_trades(open_now):
                out.append(self._kline(interval, open_prev, open_now - 1, tick, micros, closed=True, offset=offset))
        if out and tick == open_now:
            return out  # exactly on the boundary the new candle has nothing yet: it goes out at the next tick
        out.append(self._kline(interval, open_now, tick, tick, micros, closed=False, offset=offset))
        return out

    def _kline(
        self, interval: str, open_us: int, upto: int, tick: int, micros: bool, *, closed: bool, offset: int = 0
    ) -> bytes:
        t, keys = self.market.trades, self.market.trade_keys
        lo = int(np.searchsorted(keys, open_us, side="left"))
        hi = int(np.searchsorted(keys, upto, side="right"))
        next_open = int(next_open_times(np.array([open_us + offset], dtype=np.int64), interval)[0]) - offset
        if hi > lo:
            price, qty = t.price[lo:hi], t.qty[lo:hi]
            quote = quote_mantissas(price, qty)
            taker_buy = ~t.is_buyer_maker[lo:hi]
            o, h, low, c = int(price[0]), int(price.max()), int(price.min()), int(price[-1])
            v, q = int(qty.sum()), int(quote.sum())
            vb, qb = int(qty[taker_buy].sum()), int(quote[taker_buy].sum())
            first, last = int(t.id[lo]), int(t.id[hi - 1])
        else:  # no trade yet in this candle: flat at the last price, as Binance shows it
            o = h = low = c = int(t.price[lo - 1])
            v = q = vb = qb = 0
            first = last = -1
        close_time = next_open - 1 if micros else next_open // 1000 - 1
        return orjson.dumps(
            {
                "e": "kline", "E": _t(tick, micros), "s": self.market.symbol,
                "k": {
                    "t": _t(open_us, micros), "T": close_time, "s": self.market.symbol, "i": interval,
                    "f": first, "L": last, "o": format_decimal(o), "c": format_decimal(c),
                    "h": format_decimal(h), "l": format_decimal(low), "v": format_decimal(v), "n": hi - lo,
                    "x": closed, "q": format_decimal(q), "V": format_decimal(vb), "Q": format_decimal(qb), "B": "0",
                },
            }
        )

    # --- tickers --------------------------------------------------------------------------------------------
    def _mini_ticker(self, tick: int, micros: bool) -> list[bytes]:
        s = rolling_24h(self.market, tick)
        if not s.count:
            return []
        return [
            orjson.dumps(
                {
                    "e": "24hrMiniTicker", "E": _t(tick, micros), "s": self.market.symbol,
                    "c": format_decimal(s.last), "o": format_decimal(s.open), "h": format_decimal(s.high),
                    "l": format_decimal(s.low), "v": format_decimal(s.volume), "q": format_decimal(s.quote_volume),
                }
            )
        ]

    def _ticker(self, tick: int, micros: bool) -> list[bytes]:
        r = ticker_24hr_body(self.market, tick, full=True, in_us=micros)
        if not r["count"]:
            return []
        body = {
            "e": "24hrTicker", "E": _t(tick, micros), "s": r["symbol"], "p": r["priceChange"],
            "P": r["priceChangePercent"], "w": r["weightedAvgPrice"], "x": r["prevClosePrice"], "c": r["lastPrice"],
            "Q": r["lastQty"], "b": r["bidPrice"], "B": r["bidQty"], "a": r["askPrice"], "A": r["askQty"],
            "o": r["openPrice"], "h": r["highPrice"], "l": r["lowPrice"], "v": r["volume"], "q": r["quoteVolume"],
            "O": r["openTime"], "C": r["closeTime"], "F": r["firstId"], "L": r["lastId"], "n": r["count"],
        }
        return [orjson.dumps(body)]

    def _avg_price(self, tick: int, micros: bool) -> list[bytes]:
        avg = average_price(self.market, tick)
        if avg is None:
            return []
        price, last_time = avg
        return [
            orjson.dumps(
                {"e": "avgPrice", "E": _t(tick, micros), "s": self.market.symbol, "i": "5m",
                 "w": format_decimal(price), "T": _t(last_time, micros)}
            )
        ]


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[format_decimal(p), format_decimal(q)] for p, q in levels]
