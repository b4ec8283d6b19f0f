"""Encode domain records as SBE market-data frames (schema 1:0), as Binance's stream sends them.

For the local exchange and for tests. Values the wire cannot carry (a mantissa outside int64, an
exponent outside int8, more than 65 535 levels, a symbol longer than 255 UTF-8 bytes, trades of one
event that disagree on time, exponents or symbol) raise ``MalformedRecordError`` rather than being
silently changed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

from btcpipe.binance.sbe_schema import (
    BEST_BID_ASK_ROOT,
    BEST_BID_ASK_TEMPLATE,
    DEPTH_DIFF_ROOT,
    DEPTH_DIFF_TEMPLATE,
    DEPTH_SNAPSHOT_ROOT,
    DEPTH_SNAPSHOT_TEMPLATE,
    GROUP_SIZE,
    GROUP_SIZE16,
    HEADER,
    LEVEL_ENTRY,
    SCHEMA_ID,
    TRADE_ENTRY,
    TRADES_ROOT,
    TRADES_TEMPLATE,
    VAR_STRING8_MAX,
    SbeRecord,
    TradesEvent,
)
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade

ENCODED_VERSION = 0
_MAX_GROUP16 = 0xFFFF


def _header(template_id: int, block_length: int) -> bytes:
    return HEADER.pack(block_length, template_id, SCHEMA_ID, ENCODED_VERSION)


_TRADES_HEADER = _header(TRADES_TEMPLATE, TRADES_ROOT.block_length)
_BEST_BID_ASK_HEADER = _header(BEST_BID_ASK_TEMPLATE, BEST_BID_ASK_ROOT.block_length)
_DEPTH_SNAPSHOT_HEADER = _header(DEPTH_SNAPSHOT_TEMPLATE, DEPTH_SNAPSHOT_ROOT.block_length)
_DEPTH_DIFF_HEADER = _header(DEPTH_DIFF_TEMPLATE, DEPTH_DIFF_ROOT.block_length)


@lru_cache(maxsize=256)
def _symbol(symbol: str) -> bytes:
    raw = symbol.encode("utf-8")
    if not 0 < len(raw) <= VAR_STRING8_MAX:
        raise MalformedRecordError(f"symbol {symbol!r} must be 1..{VAR_STRING8_MAX} UTF-8 bytes")
    return bytes((len(raw),)) + raw


def _pack(packer: struct.Struct, what: str, *values: object) -> bytes:
    try:
        return packer.pack(*values)
    except struct.error as exc:
        raise MalformedRecordError(f"{what} does not fit the SBE field types: {exc}") from exc


def _levels(levels: Sequence[Level], what: str) -> bytes:
    n = len(levels)
    if n > _MAX_GROUP16:
        raise MalformedRecordError(f"{what}: {n} levels exceed the {_MAX_GROUP16} a groupSize16Encoding can count")
    head = GROUP_SIZE16.pack(LEVEL_ENTRY.block_length, n)
    try:
        return head + struct.pack(f"<{2 * n}q", *chain.from_iterable(levels))
    except (struct.error, TypeError) as exc:
        raise MalformedRecordError(f"{what}: levels are not (price, qty) int64 pairs: {exc}") from exc


def encode_trades_event(event: TradesEvent) -> bytes:
    """A ``TradesStreamEvent`` frame; every trade must carry the event's transact time, exponents and symbol."""
    for t in event.trades:
        if (t.ts_event, t.price_exponent, t.qty_exponent, t.symbol) != (
            event.transact_time,
            event.price_exponent,
            event.qty_exponent,
            event.symbol,
        ):
            raise MalformedRecordError(
                f"trade {t.id} disagrees with its event on transact time, exponents or symbol "
                "(one TradesStreamEvent shares them)"
            )
    root = _pack(
        TRADES_ROOT.struct,
        "trades event",
        event.event_time,
        event.transact_time,
        event.price_exponent,
        event.qty_exponent,
    )
    pack = TRADE_ENTRY.struct.pack
    try:
        entries = b"".join(
            [pack(t.id, t.price_mantissa, t.qty_mantissa, 1 if t.is_buyer_maker else 0) for t in event.trades]
        )
    except struct.error as exc:
        raise MalformedRecordError(f"a trade does not fit the SBE field types: {exc}") from exc
    group = _pack(GROUP_SIZE, "trades group", TRADE_ENTRY.block_length, len(event.trades))
    return b"".join((_TRADES_HEADER, root, group, entries, _symbol(event.symbol)))


def encode_trades(trades: Sequence[Trade], *, event_time: int | None = None) -> bytes:
    """The fills of one match (at least one) as one frame; ``event_time`` defaults to their transact time."""
    if not trades:
        raise MalformedRecordError("a trades event needs at least one trade (its symbol and time come from them)")
    first = trades[0]
    return encode_trades_event(
        TradesEvent(
            symbol=first.symbol,
            event_time=first.ts_event if event_time is None else event_time,
            transact_time=first.ts_event,
            trades=tuple(trades),
            price_exponent=first.price_exponent,
            qty_exponent=first.qty_exponent,
        )
    )


def encode_best_bid_ask(record: BestBidAsk) -> bytes:
    root = _pack(
        BEST_BID_ASK_ROOT.struct,
        "best bid/ask",
        record.ts_event,
        record.update_id,
        record.price_exponent,
        record.qty_exponent,
        record.bid_price_mantissa,
        record.bid_qty_mantissa,
        record.ask_price_mantissa,
        record.ask_qty_mantissa,
    )
    return b"".join((_BEST_BID_ASK_HEADER, root, _symbol(record.symbol)))


def encode_depth_snapshot(record: DepthSnapshot) -> bytes:
    """A ``DepthSnapshotStreamEvent`` (the ``depth20`` stream): event time = ``ts_event``."""
    root = _pack(
        DEPTH_SNAPSHOT_ROOT.struct,
        "depth snapshot",
        record.ts_event,
        record.last_update_id,
        record.price_exponent,
        record.qty_exponent,
    )
    return b"".join(
        (
            _DEPTH_SNAPSHOT_HEADER,
            root,
            _levels(record.bids, "snapshot bids"),
            _levels(record.asks, "snapshot asks"),
            _symbol(record.symbol),
        )
    )


def encode_depth_diff(record: DepthDiff) -> bytes:
    root = _pack(
        DEPTH_DIFF_ROOT.struct,
        "depth diff",
        record.ts_event,
        record.first_update_id,
        record.last_update_id,
        record.price_exponent,
        record.qty_exponent,
    )
    return b"".join(
        (
            _DEPTH_DIFF_HEADER,
            root,
            _levels(record.bids, "diff bids"),
            _levels(record.asks, "diff asks"),
            _symbol(record.symbol),
        )
    )


def encode(record: SbeRecord) -> bytes:
    """Any record ``decode`` returns, back to its frame."""
    if isinstance(record, TradesEvent):
        return encode_trades_event(record)
    if isinstance(record, BestBidAsk):
        return encode_best_bid_ask(record)
    if isinstance(record, DepthDiff):
        return encode_depth_diff(record)
    return encode_depth_snapshot(record)
