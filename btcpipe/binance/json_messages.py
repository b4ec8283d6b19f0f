"""Binance's public JSON stream messages (trade, bookTicker, depthUpdate) to domain records.

One parser for the ingestor's JSON fallback and for recordings, so both give the same records as the SBE
path. Times in JSON streams are ms unless the connection asked for ``timeUnit=MICROSECOND``; pass
``time_unit_us=True`` then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade, check_uint63

StreamRecord = Trade | BestBidAsk | DepthDiff
# What a bad field can raise on its way through these parsers; each becomes a MalformedRecordError.
BAD_FIELD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def json_int(value: Any, what: str) -> int:
    """A JSON integer Binance sends as a number (ids, times): exactly an int (no bool, float or string),
    within 0..2^63-1."""
    if type(value) is not int:
        raise MalformedRecordError(f"{what} must be an integer, got {type(value).__name__} {str(value)[:40]!r}")
    return check_uint63(value, what)


def json_bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise MalformedRecordError(f"{what} must be true or false, got {type(value).__name__}")
    return value


def json_str(value: Any, what: str) -> str:
    if type(value) is not str or not value:
        raise MalformedRecordError(f"{what} must be a non-empty string, got {type(value).__name__}")
    return value


def _time(value: Any, time_unit_us: bool) -> int:
    v = json_int(value, "time")
    return v if time_unit_us else check_uint63(v * 1000, "time")


def _levels(raw: Any) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise MalformedRecordError(f"price levels must be a list, got {type(raw).__name__}")
    return tuple((parse_decimal(p), parse_decimal(q)) for p, q, *_ in raw)


def parse_trade(d: Mapping[str, Any], *, time_unit_us: bool = False, ts_recv: int = 0) -> Trade:
    try:
        return Trade(
            symbol=json_str(d["s"], "symbol"),
            id=json_int(d["t"], "trade id"),
            ts_event=_time(d["T"], time_unit_us),
            price_mantissa=parse_decimal(d["p"]),
            qty_mantissa=parse_decimal(d["q"]),
            is_buyer_maker=json_bool(d["m"], "m"),
            ts_recv=ts_recv,
        )
    except BAD_FIELD_ERRORS as exc:
        raise MalformedRecordError(f"trade message lacks a field or has a bad one: {exc!r}") from exc


def trade_event_time(d: Mapping[str, Any], trade: Trade, *, time_unit_us: bool = False) -> int:
    """A trade message's event time ``E`` (µs); its trade time when the message has none."""
    raw = d.get("E")
    try:
        return trade.ts_event if raw is None else _time(raw, time_unit_us)
    except (TypeError, ValueError) as exc:
        raise MalformedRecordError(f"trade message has a bad event time E={raw!r}") from exc


def parse_book_ticker(d: Mapping[str, Any], *, ts_event: int, ts_recv: int = 0) -> BestBidAsk:
    """``bookTicker`` carries no event time in JSON: the caller supplies one (receive time, clock-corrected)."""
    try:
        return BestBidAsk(
            symbol=json_str(d["s"], "symbol"),
            ts_event=ts_event,
            update_id=json_int(d["u"], "update id"),
            bid_price_mantissa=parse_decimal(d["b"]),
            bid_qty_mantissa=parse_decimal(d["B"]),
            ask_price_mantissa=parse_decimal(d["a"]),
            ask_qty_mantissa=parse_decimal(d["A"]),
            ts_recv=ts_recv,
        )
    except BAD_FIELD_ERRORS as exc:
        raise MalformedRecordError(f"bookTicker message lacks a field or has a bad one: {exc!r}") from exc


def parse_depth_update(d: Mapping[str, Any], *, time_unit_us: bool = False, ts_recv: int = 0) -> DepthDiff:
    try:
        return DepthDiff(
            symbol=json_str(d["s"], "symbol"),
            ts_event=_time(d["E"], time_unit_us),
            first_update_id=json_int(d["U"], "first update id"),
            last_update_id=json_int(d["u"], "last update id"),
            bids=_levels(d["b"]),
            asks=_levels(d["a"]),
            ts_recv=ts_recv,
        )
    except BAD_FIELD_ERRORS as exc:
        raise MalformedRecordError(f"depthUpdate message lacks a field or has a bad one: {exc!r}") from exc


def parse_depth_snapshot(d: Mapping[str, Any], symbol: str, *, ts_recv: int = 0) -> DepthSnapshot:
    """A REST ``/api/v3/depth`` body."""
    try:
        return DepthSnapshot(
            symbol=symbol,
            last_update_id=json_int(d["lastUpdateId"], "lastUpdateId"),
            bids=_levels(d["bids"]),
            asks=_levels(d["asks"]),
            ts_recv=ts_recv,
        )
    except BAD_FIELD_ERRORS as exc:
        raise MalformedRecordError(f"depth snapshot lacks a field or has a bad one: {exc!r}") from exc


def stream_kind(stream: str) -> str:
    """``btcusdt@depth@100ms`` → ``depth``; ``btcusdt@bookTicker`` → ``bookTicker``."""
    parts = stream.split("@")
    return parts[1] if len(parts) > 1 else ""
