"""One WebSocket message of a Binance market-data stream → normalized domain records.

The SBE binary frames and the public JSON combined-stream messages both end here as the same records
(``TradesEvent``, ``BestBidAsk``, ``DepthDiff``, ``DepthSnapshot``) at ``STD_EXPONENT``, µs times, so the
ingestor never knows which wire the data came by. JSON ``bookTicker`` carries no event time: its
``ts_event`` is the receive time (the one field the two wires cannot agree on).

Control messages (``serverShutdown``, subscribe answers) come back as ``Control`` values; anything that is
neither raises a ``DecodeError`` / ``MalformedRecordError`` for the caller to count and skip.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import orjson

from btcpipe.binance import sbe
from btcpipe.binance.json_messages import (
    BAD_FIELD_ERRORS,
    json_int,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_trade,
    stream_kind,
)
from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.domain.decimal import MAX_MANTISSA, STD_EXPONENT, check_mantissa, rescale
from btcpipe.domain.errors import ConfigError, MalformedRecordError
from btcpipe.domain.records import INT64_MAX, BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade, check_uint63
from btcpipe.domain.time import is_microseconds

MarketEvent = TradesEvent | BestBidAsk | DepthDiff | DepthSnapshot
WireMode = Literal["sbe", "json"]
Control = Literal["server_shutdown", "ignored"]

# Stream kinds as the ingestor names them, and the stream-name suffix each wire uses for them.
KINDS = ("trade", "bestBidAsk", "depth", "depth20")
SBE_SUFFIX = {"trade": "trade", "bestBidAsk": "bestBidAsk", "depth": "depth", "depth20": "depth20"}
JSON_SUFFIX = {"trade": "trade", "bestBidAsk": "bookTicker", "depth": "depth@100ms", "depth20": "depth20@100ms"}
_JSON_KIND = {"trade": "trade", "bookTicker": "bestBidAsk", "depth": "depth", "depth20": "depth20"}


def stream_names(symbols: tuple[str, ...], kinds: tuple[str, ...], mode: WireMode) -> list[str]:
    """``["btcusdt@trade", "btcusdt@bestBidAsk", ...]`` in the naming of ``mode``'s wire."""
    suffix = SBE_SUFFIX if mode == "sbe" else JSON_SUFFIX
    for kind in kinds:
        if kind not in suffix:
            raise ConfigError(f"unknown stream kind {kind!r} (known: {', '.join(KINDS)})")
    return [f"{s.lower()}@{suffix[k]}" for s in symbols for k in kinds]


def event_kind(event: MarketEvent) -> str:
    if isinstance(event, TradesEvent):
        return "trade"
    if isinstance(event, BestBidAsk):
        return "bestBidAsk"
    if isinstance(event, DepthDiff):
        return "depth"
    return "depth20"


def event_id_range(event: MarketEvent) -> tuple[int, int]:
    """The (first, last) sequence ids an event covers: trade ids, depth ``U``/``u``, book update ids."""
    if isinstance(event, TradesEvent):
        if not event.trades:
            return (0, 0)
        return event.trades[0].id, event.trades[-1].id
    if isinstance(event, BestBidAsk):
        return event.update_id, event.update_id
    if isinstance(event, DepthDiff):
        return event.first_update_id, event.last_update_id
    return event.last_update_id, event.last_update_id


# --- decoding -------------------------------------------------------------------------------------------
def decode_binary(frame: bytes, ts_recv: int) -> MarketEvent:
    """An SBE frame → a normalized, range-checked record; ``DecodeError`` subclasses for bad bytes,
    ``MalformedRecordError`` for well-framed values btcpipe cannot keep (see ``check_ranges``)."""
    return check_ranges(normalize(sbe.decode(frame, ts_recv)))


def decode_text(text: str | bytes, ts_recv: int) -> MarketEvent | Control:
    """A JSON text frame: a combined-stream market message, or a control message."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedRecordError(f"text frame is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MalformedRecordError(f"text frame is JSON but not an object: {type(message).__name__}")
    if message.get("e") == "serverShutdown":
        return "server_shutdown"
    if "result" in message and "id" in message:  # the answer to a SUBSCRIBE/LIST request
        return "ignored"
    stream, data = message.get("stream"), message.get("data")
    if not isinstance(stream, str) or not isinstance(data, dict):
        raise MalformedRecordError(f"text frame is neither a stream message nor a control: {str(text)[:120]!r}")
    if data.get("e") == "serverShutdown":
        return "server_shutdown"
    return parse_stream_message(stream, data, ts_recv)


def _micros(value: Any) -> bool:
    # The connection asks for timeUnit=MICROSECOND; a server that ignores it still gives right times.
    # Anything but an int is refused by the field's own parser.
    return not isinstance(value, int) or is_microseconds(value)


def _event_us(value: Any) -> int:
    t = json_int(value, "event time")
    return t if _micros(t) else t * 1000


def parse_stream_message(stream: str, data: dict[str, Any], ts_recv: int) -> MarketEvent:
    """One combined-stream ``data`` object → a normalized, range-checked record, by the stream's kind.

    Any wrong type, missing field or out-of-range value is a ``MalformedRecordError``."""
    try:
        return check_ranges(_parse_stream_message(stream, data, ts_recv))
    except BAD_FIELD_ERRORS as exc:
        raise MalformedRecordError(f"{stream_kind(stream) or 'stream'} message has a bad field: {exc!r}") from exc


def _parse_stream_message(stream: str, data: dict[str, Any], ts_recv: int) -> MarketEvent:
    kind = _JSON_KIND.get(stream_kind(stream).split("@")[0])
    if kind == "trade":
        trade = parse_trade(data, time_unit_us=_micros(data.get("T")), ts_recv=ts_recv)
        event_us = _event_us(data.get("E", data["T"]))
        return TradesEvent(trade.symbol, event_us, trade.ts_event, (trade,), STD_EXPONENT, STD_EXPONENT, ts_recv)
    if kind == "bestBidAsk":
        event = data.get("E")
        ts_event = ts_recv if event is None else _event_us(event)
        return parse_book_ticker(data, ts_event=ts_event, ts_recv=ts_recv)
    if kind == "depth":
        return parse_depth_update(data, time_unit_us=_micros(data.get("E")), ts_recv=ts_recv)
    if kind == "depth20":
        symbol = str(data.get("s") or stream.split("@", maxsplit=1)[0]).upper()
        return parse_depth_snapshot(data, symbol, ts_recv=ts_recv)
    raise MalformedRecordError(f"message of unknown stream {stream!r}")


# --- ranges ------------------------------------------------------------------------------------------
def _levels_in_range(levels: tuple[Level, ...]) -> bool:
    return all(-MAX_MANTISSA <= p <= MAX_MANTISSA and -MAX_MANTISSA <= q <= MAX_MANTISSA for p, q in levels)


def check_ranges(event: MarketEvent) -> MarketEvent:
    """``event`` if every value fits where btcpipe keeps it: ids and µs times in 0..2^63-1, mantissas of at
    most 18 digits (the lake's decimal precision). Else ``MalformedRecordError``, so that a well-formed
    but absurd message (a price of thirty digits, a trade id above 2^63) is refused here, counted and
    skipped, instead of failing later in the bus encoder or the bronze writer."""
    if isinstance(event, TradesEvent):
        check_uint63(event.event_time, "event time")
        for t in event.trades:
            if not (0 <= t.id <= INT64_MAX and 0 <= t.ts_event <= INT64_MAX
                    and -MAX_MANTISSA <= t.price_mantissa <= MAX_MANTISSA
                    and -MAX_MANTISSA <= t.qty_mantissa <= MAX_MANTISSA):
                check_uint63(t.id, "trade id")
                check_uint63(t.ts_event, f"time of trade {t.id}")
                check_mantissa(t.price_mantissa, f"price of trade {t.id}")
                check_mantissa(t.qty_mantissa, f"quantity of trade {t.id}")
        return event
    check_uint63(event.ts_event, "event time")
    if isinstance(event, BestBidAsk):
        check_uint63(event.update_id, "update id")
        for value in (event.bid_price_mantissa, event.bid_qty_mantissa, event.ask_price_mantissa,
                      event.ask_qty_mantissa):
            check_mantissa(value, "best bid/ask value")
        return event
    if isinstance(event, DepthDiff):
        check_uint63(event.first_update_id, "first update id")
    check_uint63(event.last_update_id, "last update id")
    if not (_levels_in_range(event.bids) and _levels_in_range(event.asks)):
        raise MalformedRecordError(f"a depth level of {event.symbol} has a value of more than 18 digits")
    return event


# --- normalization -----------------------------------------------------------------------------------
def _levels(levels: tuple[Level, ...], pe: int, qe: int) -> tuple[Level, ...]:
    return tuple((rescale(p, pe), rescale(q, qe)) for p, q in levels)


def normalize(event: MarketEvent) -> MarketEvent:
    """The record at ``STD_EXPONENT`` (exact; ``MalformedRecordError`` if digits would be lost)."""
    pe, qe = event.price_exponent, event.qty_exponent
    if pe == STD_EXPONENT and qe == STD_EXPONENT:
        return event
    if isinstance(event, TradesEvent):
        trades = tuple(
            Trade(t.symbol, t.id, t.ts_event, rescale(t.price_mantissa, t.price_exponent),
                  rescale(t.qty_mantissa, t.qty_exponent), t.is_buyer_maker, STD_EXPONENT, STD_EXPONENT, t.ts_recv)
            for t in event.trades
        )
        return event._replace(trades=trades, price_exponent=STD_EXPONENT, qty_exponent=STD_EXPONENT)
    if isinstance(event, BestBidAsk):
        return replace(
            event,
            bid_price_mantissa=rescale(event.bid_price_mantissa, pe),
            bid_qty_mantissa=rescale(event.bid_qty_mantissa, qe),
            ask_price_mantissa=rescale(event.ask_price_mantissa, pe),
            ask_qty_mantissa=rescale(event.ask_qty_mantissa, qe),
            price_exponent=STD_EXPONENT,
            qty_exponent=STD_EXPONENT,
        )
    return replace(
        event,
        bids=_levels(event.bids, pe, qe),
        asks=_levels(event.asks, pe, qe),
        price_exponent=STD_EXPONENT,
        qty_exponent=STD_EXPONENT,
    )
