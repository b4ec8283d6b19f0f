"""Decode SBE market-data frames (schema 1:0) into domain records, fast and total.

Every offset comes from the header's and the groups' blockLengths, so fields a later schema appends to
a block are skipped; bytes after the symbol are ignored for the same reason (appended var data). Any
input bytes give either a record or a ``DecodeError`` subclass — never IndexError, struct.error or
UnicodeDecodeError — so a stream reader can count and skip a bad frame and carry on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import cast

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
    MESSAGES,
    SCHEMA_ID,
    SUPPORTED_VERSIONS,
    TRADE_ENTRY,
    TRADES_ROOT,
    TRADES_TEMPLATE,
    MessageHeader,
    MessageSpec,
    SbeRecord,
    TradesEvent,
)
from btcpipe.domain.errors import (
    DecodeError,
    GroupOverrunError,
    MalformedFrameError,
    SchemaIdError,
    SchemaVersionError,
    TruncatedFrameError,
    UnknownTemplateError,
)
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Level, Trade

Buffer = bytes | bytearray | memoryview

_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_unpack_group = GROUP_SIZE.unpack_from
_unpack_group16 = GROUP_SIZE16.unpack_from
_TRADE = TRADE_ENTRY.struct
_TRADE_SIZE = TRADE_ENTRY.block_length
_LEVEL = LEVEL_ENTRY.struct
_LEVEL_SIZE = LEVEL_ENTRY.block_length
# The canonical trades root and its group header read in one unpack (the root Struct has no padding).
_unpack_trades_fixed = struct.Struct(TRADES_ROOT.struct.format + GROUP_SIZE.format.lstrip("<")).unpack_from
_TRADES_FIXED_END = _HEADER_SIZE + TRADES_ROOT.block_length + GROUP_SIZE.size


def decode_header(frame: Buffer) -> MessageHeader:
    """The 8-byte message header, unchecked; ``TruncatedFrameError`` if the frame is shorter."""
    if len(frame) < _HEADER_SIZE:
        raise TruncatedFrameError(f"frame of {len(frame)} bytes is shorter than the 8-byte message header")
    return MessageHeader._make(_unpack_header(frame, 0))


def check_header(header: MessageHeader) -> MessageSpec:
    """The message a header announces, or the typed error saying why this codec cannot read it."""
    error = _header_error(header)
    if error is not None:
        raise error
    return MESSAGES[header.template_id]


def _header_error(header: MessageHeader) -> DecodeError | None:
    if header.schema_id != SCHEMA_ID:
        return SchemaIdError(f"schema id {header.schema_id}, this codec implements schema {SCHEMA_ID}")
    if header.version not in SUPPORTED_VERSIONS:
        return SchemaVersionError(
            f"schema version {header.version} is not supported (supported: {sorted(SUPPORTED_VERSIONS)})"
        )
    if header.template_id not in MESSAGES:
        return UnknownTemplateError(f"template id {header.template_id} is not a message of schema {SCHEMA_ID}")
    return None


def decode(frame: Buffer, ts_recv: int = 0) -> SbeRecord:
    """One binary frame → ``TradesEvent`` | ``BestBidAsk`` | ``DepthSnapshot`` | ``DepthDiff``.

    ``ts_recv`` (µs) is stamped on the record(s). Raises a ``DecodeError`` subclass for anything else.
    """
    if len(frame) < _HEADER_SIZE:
        raise TruncatedFrameError(f"frame of {len(frame)} bytes is shorter than the 8-byte message header")
    block_length, template_id, schema_id, version = _unpack_header(frame, 0)
    if schema_id != SCHEMA_ID or version not in SUPPORTED_VERSIONS or template_id not in _DECODERS:
        raise cast(DecodeError, _header_error(MessageHeader(block_length, template_id, schema_id, version)))
    return _DECODERS[template_id](frame, block_length, ts_recv)


def _root_end(frame: Buffer, block_length: int, minimum: int, message: str) -> int:
    if block_length < minimum:
        raise MalformedFrameError(f"{message}: root blockLength {block_length} < the schema's {minimum} bytes")
    end = _HEADER_SIZE + block_length
    if end > len(frame):
        raise TruncatedFrameError(
            f"{message}: frame of {len(frame)} bytes ends inside the {block_length}-byte root block"
        )
    return end


def _levels(frame: Buffer, pos: int, message: str, side: str) -> tuple[tuple[Level, ...], int]:
    n = len(frame)
    if pos + 4 > n:
        raise TruncatedFrameError(f"{message}: frame of {n} bytes ends inside the {side} group header at {pos}")
    entry_length, count = _unpack_group16(frame, pos)
    pos += 4
    end = pos + entry_length * count
    if count and entry_length < _LEVEL_SIZE:
        raise MalformedFrameError(f"{message}: {side} entry blockLength {entry_length} < the schema's {_LEVEL_SIZE}")
    if end > n:
        raise GroupOverrunError(
            f"{message}: {count} {side} of {entry_length} bytes from offset {pos} overrun the {n}-byte frame"
        )
    if not count:  # an empty group's blockLength may be anything, even 0
        return (), end
    if entry_length == _LEVEL_SIZE:
        levels = tuple(_LEVEL.iter_unpack(frame[pos:end]))
    else:
        unpack = _LEVEL.unpack_from
        levels = tuple(unpack(frame, p) for p in range(pos, end, entry_length))
    return cast("tuple[Level, ...]", levels), end


def _symbol(frame: Buffer, pos: int, message: str) -> str:
    n = len(frame)
    if pos >= n:
        raise TruncatedFrameError(f"{message}: frame of {n} bytes ends before the symbol")
    end = pos + 1 + frame[pos]
    if end > n:
        raise TruncatedFrameError(f"{message}: frame of {n} bytes ends inside the {frame[pos]}-byte symbol")
    if end == pos + 1:
        raise MalformedFrameError(f"{message}: empty symbol")
    try:
        return str(frame[pos + 1 : end], "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFrameError(f"{message}: symbol is not UTF-8: {bytes(frame[pos + 1 : end])!r}") from exc


def _decode_trades(frame: Buffer, block_length: int, ts_recv: int) -> TradesEvent:
    message = "TradesStreamEvent"
    n = len(frame)
    if block_length == TRADES_ROOT.block_length and n >= _TRADES_FIXED_END:
        event_time, transact_time, price_exp, qty_exp, entry_length, count = _unpack_trades_fixed(frame, _HEADER_SIZE)
        pos = _TRADES_FIXED_END
    else:
        pos = _root_end(frame, block_length, TRADES_ROOT.block_length, message)
        event_time, transact_time, price_exp, qty_exp = TRADES_ROOT.struct.unpack_from(frame, _HEADER_SIZE)
        if pos + 6 > n:
            raise TruncatedFrameError(f"{message}: frame of {n} bytes ends inside the trades group header at {pos}")
        entry_length, count = _unpack_group(frame, pos)
        pos += 6
    end = pos + entry_length * count
    if count and entry_length < _TRADE_SIZE:
        raise MalformedFrameError(f"{message}: trades entry blockLength {entry_length} < the schema's {_TRADE_SIZE}")
    if end > n:
        raise GroupOverrunError(
            f"{message}: {count} trades of {entry_length} bytes from offset {pos} overrun the {n}-byte frame"
        )
    if not count:  # an empty group's blockLength may be anything, even 0
        rows = []
    elif count == 1:  # the common case: iter_unpack's setup costs more than one unpack
        rows = [_TRADE.unpack_from(frame, pos)]
    elif entry_length == _TRADE_SIZE:
        rows = list(_TRADE.iter_unpack(frame[pos:end]))
    else:
        unpack = _TRADE.unpack_from
        rows = [unpack(frame, p) for p in range(pos, end, entry_length)]
    symbol = _symbol(frame, end, message)
    trades = []
    for trade_id, price, qty, buyer_maker in rows:
        if buyer_maker > 1:
            raise MalformedFrameError(f"{message}: isBuyerMaker {buyer_maker} of trade {trade_id} is not 0/1")
        # Positional for speed (the hottest constructor); field order: symbol, id, ts_event, price, qty,
        # is_buyer_maker, exponents, ts_recv. The recording round-trip tests compare against keyword-built trades.
        trades.append(Trade(symbol, trade_id, transact_time, price, qty, buyer_maker == 1, price_exp, qty_exp, ts_recv))
    return TradesEvent(symbol, event_time, transact_time, tuple(trades), price_exp, qty_exp, ts_recv)


def _decode_best_bid_ask(frame: Buffer, block_length: int, ts_recv: int) -> BestBidAsk:
    message = "BestBidAskStreamEvent"
    pos = _root_end(frame, block_length, BEST_BID_ASK_ROOT.block_length, message)
    event_time, update_id, price_exp, qty_exp, bid_p, bid_q, ask_p, ask_q = BEST_BID_ASK_ROOT.struct.unpack_from(
        frame, _HEADER_SIZE
    )
    return BestBidAsk(
        symbol=_symbol(frame, pos, message),
        ts_event=event_time,
        update_id=update_id,
        bid_price_mantissa=bid_p,
        bid_qty_mantissa=bid_q,
        ask_price_mantissa=ask_p,
        ask_qty_mantissa=ask_q,
        price_exponent=price_exp,
        qty_exponent=qty_exp,
        ts_recv=ts_recv,
    )


def _decode_depth_snapshot(frame: Buffer, block_length: int, ts_recv: int) -> DepthSnapshot:
    message = "DepthSnapshotStreamEvent"
    pos = _root_end(frame, block_length, DEPTH_SNAPSHOT_ROOT.block_length, message)
    event_time, update_id, price_exp, qty_exp = DEPTH_SNAPSHOT_ROOT.struct.unpack_from(frame, _HEADER_SIZE)
    bids, pos = _levels(frame, pos, message, "bids")
    asks, pos = _levels(frame, pos, message, "asks")
    return DepthSnapshot(
        symbol=_symbol(frame, pos, message),
        last_update_id=update_id,
        bids=bids,
        asks=asks,
        ts_event=event_time,
        price_exponent=price_exp,
        qty_exponent=qty_exp,
        ts_recv=ts_recv,
    )


def _decode_depth_diff(frame: Buffer, block_length: int, ts_recv: int) -> DepthDiff:
    message = "DepthDiffStreamEvent"
    pos = _root_end(frame, block_length, DEPTH_DIFF_ROOT.block_length, message)
    event_time, first_id, last_id, price_exp, qty_exp = DEPTH_DIFF_ROOT.struct.unpack_from(frame, _HEADER_SIZE)
    bids, pos = _levels(frame, pos, message, "bids")
    asks, pos = _levels(frame, pos, message, "asks")
    return DepthDiff(
        symbol=_symbol(frame, pos, message),
        ts_event=event_time,
        first_update_id=first_id,
        last_update_id=last_id,
        bids=bids,
        asks=asks,
        price_exponent=price_exp,
        qty_exponent=qty_exp,
        ts_recv=ts_recv,
    )


_DECODERS: dict[int, Callable[[Buffer, int, int], SbeRecord]] = {
    TRADES_TEMPLATE: _decode_trades,
    BEST_BID_ASK_TEMPLATE: _decode_best_bid_ask,
    DEPTH_SNAPSHOT_TEMPLATE: _decode_depth_snapshot,
    DEPTH_DIFF_TEMPLATE: _decode_depth_diff,
}
