"""Stream names and the public JSON messages of the local exchange's WebSockets.

SBE streams (``/ws``, ``/stream``): ``<symbol>@trade``, ``@bestBidAsk``, ``@depth``, ``@depth20`` (50 ms).
JSON streams (``/json/ws``, ``/json/stream``), the names Binance's public streams use, at their documented
rates: real time ``@trade``, ``@aggTrade``, ``@bookTicker``, the tape's own diffs ``@depth@100ms``;
periodic (exchange time, see ``periodic.py``) ``@depth`` (diffs merged per 1000 ms), ``@depth5/10/20``
(1000 ms) and ``@depth5/10/20@100ms``, ``@kline_<interval>`` and ``@kline_<interval>@+08:00`` (1000 ms for
1s, else 2000 ms),
``@miniTicker``, ``@ticker``, ``@avgPrice`` (1000 ms). The combined wrapper echoes the name as requested.
JSON bodies are Binance's; prices and quantities as 8-decimal strings; times in ms, or in µs when the
connection asked for ``timeUnit=MICROSECOND``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade
from btcpipe.exchange.klines import INTERVALS
from btcpipe.exchange.streams.timeline import KIND_AGG_TRADE, KIND_BBA, KIND_DEPTH, KIND_DEPTH20, KIND_TRADE

WireFormat = Literal["sbe", "json"]
# A real-time kind (an int: an event kind of the timeline) or a periodic one (its canonical name).
StreamKind = int | str

_SBE_KINDS: dict[str, StreamKind] = {
    "trade": KIND_TRADE, "bestBidAsk": KIND_BBA, "depth": KIND_DEPTH, "depth20": KIND_DEPTH20,
}
_MS = 1000
KLINE_UTC8 = "@+08:00"  # Binance's one documented kline time zone for streams: candles open at UTC+8 midnight
# The periodic JSON streams: canonical name → period (µs of exchange time).
PERIODS_US: dict[str, int] = {
    "depth@1000ms": 1000 * _MS,
    **{f"depth{n}@1000ms": 1000 * _MS for n in (5, 10, 20)},
    **{f"depth{n}@100ms": 100 * _MS for n in (5, 10, 20)},
    **{f"kline_{i}{tz}": (1000 if i == "1s" else 2000) * _MS for i in INTERVALS for tz in ("", KLINE_UTC8)},
    "miniTicker": 1000 * _MS,
    "ticker": 1000 * _MS,
    "avgPrice": 1000 * _MS,
}
_JSON_KINDS: dict[str, StreamKind] = {
    "trade": KIND_TRADE,
    "aggTrade": KIND_AGG_TRADE,
    "bookTicker": KIND_BBA,
    "depth@100ms": KIND_DEPTH,
    "depth": "depth@1000ms",
    "depth@1000ms": "depth@1000ms",
    **{f"depth{n}": f"depth{n}@1000ms" for n in (5, 10, 20)},
    **{f"depth{n}@1000ms": f"depth{n}@1000ms" for n in (5, 10, 20)},
    **{f"depth{n}@100ms": f"depth{n}@100ms" for n in (5, 10, 20)},
    **{f"kline_{i}{tz}": f"kline_{i}{tz}" for i in INTERVALS for tz in ("", KLINE_UTC8)},
    "miniTicker": "miniTicker",
    "ticker": "ticker",
    "avgPrice": "avgPrice",
}


class StreamNameError(ValueError):
    """A requested stream name this exchange does not serve (answered with HTTP 400 before the upgrade)."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One requested stream (``btcusdt@trade``): the symbol it is for and the kind of events it carries."""

    name: str  # as requested, lowercase symbol (echoed in the combined wrapper)
    symbol: str  # upper case, as in the tape
    kind: StreamKind


def parse_stream_name(name: str, fmt: WireFormat, symbols: Sequence[str]) -> StreamSpec:
    symbol, sep, rest = name.partition("@")
    kinds = _SBE_KINDS if fmt == "sbe" else _JSON_KINDS
    if not sep or rest not in kinds:
        served = ", ".join(k for k in kinds if not k.startswith("kline_")) + (
            "" if fmt == "sbe" else ", kline_<i>, kline_<i>@+08:00")
        raise StreamNameError(f"unknown {fmt.upper()} stream {name!r}; this exchange serves <symbol>@{{{served}}}")
    if symbol != symbol.lower():
        raise StreamNameError(f"stream {name!r}: symbols in stream names are lowercase")
    if symbol.upper() not in symbols:
        raise StreamNameError(f"stream {name!r}: unknown symbol; this exchange serves {sorted(symbols)}")
    return StreamSpec(name, symbol.upper(), kinds[rest])


def parse_stream_list(raw: str, fmt: WireFormat, symbols: Sequence[str], max_streams: int) -> list[StreamSpec]:
    """The streams of a URL; none is fine (a bare ``/ws`` or ``/stream`` subscribes later).

    A path segment without ``@`` is a client's own connection tag, not a stream (ccxt opens ``/ws/0`` and
    subscribes afterwards, which Binance accepts): it subscribes to nothing.
    """
    names = [n for n in raw.split("/") if n and "@" in n]
    if len(names) > max_streams:
        raise StreamNameError(f"{len(names)} streams exceed the {max_streams} allowed per connection")
    specs: dict[str, StreamSpec] = {}
    for name in names:
        specs.setdefault(name, parse_stream_name(name, fmt, symbols))
    return list(specs.values())


def _t(ts_us: int, micros: bool) -> int:
    return ts_us if micros else ts_us // 1000


def _levels(levels: Sequence[Level], price_exponent: int, qty_exponent: int) -> list[list[str]]:
    return [[format_decimal(p, price_exponent), format_decimal(q, qty_exponent)] for p, q in levels]


def trade_json(t: Trade, *, event_time: int, micros: bool) -> bytes:
    return orjson.dumps(
        {
            "e": "trade",
            "E": _t(event_time, micros),
            "s": t.symbol,
            "t": t.id,
            "p": format_decimal(t.price_mantissa, t.price_exponent),
            "q": format_decimal(t.qty_mantissa, t.qty_exponent),
            "T": _t(t.ts_event, micros),
            "m": t.is_buyer_maker,
            "M": True,
        }
    )


def book_ticker_json(b: BestBidAsk) -> bytes:
    return orjson.dumps(
        {
            "u": b.update_id,
            "s": b.symbol,
            "b": format_decimal(b.bid_price_mantissa, b.price_exponent),
            "B": format_decimal(b.bid_qty_mantissa, b.qty_exponent),
            "a": format_decimal(b.ask_price_mantissa, b.price_exponent),
            "A": format_decimal(b.ask_qty_mantissa, b.qty_exponent),
        }
    )


def depth_update_json(d: DepthDiff, *, micros: bool) -> bytes:
    return orjson.dumps(
        {
            "e": "depthUpdate",
            "E": _t(d.ts_event, micros),
            "s": d.symbol,
            "U": d.first_update_id,
            "u": d.last_update_id,
            "b": _levels(d.bids, d.price_exponent, d.qty_exponent),
            "a": _levels(d.asks, d.price_exponent, d.qty_exponent),
        }
    )


def agg_trade_json(
    symbol: str, agg: tuple[int, int, int, int, int, int, bool], *, event_time: int, micros: bool
) -> bytes:
    """``agg`` = (aggregate id, price, qty, first trade id, last trade id, time µs, buyer is maker)."""
    a, price, qty, first, last, ts, maker = agg
    return orjson.dumps(
        {
            "e": "aggTrade", "E": _t(event_time, micros), "s": symbol, "a": a,
            "p": format_decimal(price), "q": format_decimal(qty), "f": first, "l": last,
            "T": _t(ts, micros), "m": maker, "M": True,
        }
    )


def partial_book_json(s: DepthSnapshot) -> bytes:
    return orjson.dumps(
        {
            "lastUpdateId": s.last_update_id,
            "bids": _levels(s.bids, s.price_exponent, s.qty_exponent),
            "asks": _levels(s.asks, s.price_exponent, s.qty_exponent),
        }
    )


def combined(stream_name: str, data: bytes) -> str:
    """The combined-stream wrapper around an already encoded body (the body is encoded once for all names)."""
    return '{"stream":' + orjson.dumps(stream_name).decode() + ',"data":' + data.decode() + "}"


def server_shutdown_json(now_us: int, *, micros: bool, wrapped: bool = False) -> str:
    """Bare on raw streams; on a combined JSON stream wrapped as ``{"stream":"!serverShutdown","data":...}``."""
    body = orjson.dumps({"e": "serverShutdown", "E": _t(now_us, micros)})
    return combined("!serverShutdown", body) if wrapped else body.decode()
