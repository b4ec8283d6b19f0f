"""Binance's public JSON stream messages (trade, bookTicker, depthUpdate) to domain records.

One parser for the ingestor's JSON fallback and for recordings, so both give the same records as the SBE
path. Times in JSON streams are ms unless the connection asked for ``timeUnit=MICROSECOND``; pass
``time_unit_us=True`` then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade

StreamRecord = Trade | BestBidAsk | DepthDiff


def _time(value: Any, time_unit_us: bool) -> int:
    v = int(value)
    return v if time_unit_us else v * 1000


def _levels(raw: Sequence[Sequence[str]]) -> tuple[Level, ...]:
    return tuple((parse_decimal(p), parse_decimal(q)) for p, q, *_ in raw)


def parse_trade(d: Mapping[str, Any], *, time_unit_us: bool = False, ts_recv: int = 0) -> Trade:
    try:
        return Trade(
            symbol=str(d["s"]),
            id=int(d["t"]),
            ts_event=_time(d["T"], time_unit_us),
            price_mantissa=parse_decimal(d["p"]),
            qty_mantissa=parse_decimal(d["q"]),
            is_buyer_maker=bool(d["m"]),
            ts_recv=ts_recv,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecordError(f"trade message lacks a field or has a bad one: {exc!r}") from exc


def parse_book_ticker(d: Mapping[str, Any], *, ts_event: int, ts_recv: int = 0) -> BestBidAsk:
    """``bookTicker`` carries no event time in JSON: the caller supplies one (receive time, clock-corrected)."""
    try:
        return BestBidAsk(
            symbol=str(d["s"]),
            ts_event=ts_event,
            update_id=int(d["u"]),
            bid_price_mantissa=parse_decimal(d["b"]),
            bid_qty_mantissa=parse_decimal(d["B"]),
            ask_price_mantissa=parse_decimal(d["a"]),
            ask_qty_mantissa=parse_decimal(d["A"]),
            ts_recv=ts_recv,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecordError(f"bookTicker message lacks a field or has a bad one: {exc!r}") from exc


def parse_depth_update(d: Mapping[str, Any], *, time_unit_us: bool = False, ts_recv: int = 0) -> DepthDiff:
    try:
        return DepthDiff(
            symbol=str(d["s"]),
            ts_event=_time(d["E"], time_unit_us),
            first_update_id=int(d["U"]),
            last_update_id=int(d["u"]),
            bids=_levels(d["b"]),
            asks=_levels(d["a"]),
            ts_recv=ts_recv,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecordError(f"depthUpdate message lacks a field or has a bad one: {exc!r}") from exc


def parse_depth_snapshot(d: Mapping[str, Any], symbol: str, *, ts_recv: int = 0) -> DepthSnapshot:
    """A REST ``/api/v3/depth`` body."""
    try:
        return DepthSnapshot(
            symbol=symbol,
            last_update_id=int(d["lastUpdateId"]),
            bids=_levels(d["bids"]),
            asks=_levels(d["asks"]),
            ts_recv=ts_recv,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecordError(f"depth snapshot lacks a field or has a bad one: {exc!r}") from exc


def stream_kind(stream: str) -> str:
    """``btcusdt@depth@100ms`` → ``depth``; ``btcusdt@bookTicker`` → ``bookTicker``."""
    parts = stream.split("@")
    return parts[1] if len(parts) > 1 else ""
