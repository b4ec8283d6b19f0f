"""Binance spot market-data SBE codec (schema id 1, version 0): the public face.

``decode(frame)`` turns one binary WebSocket frame into a ``TradesEvent`` (10000), ``BestBidAsk``
(10001), ``DepthSnapshot`` (10002, ``depth20``) or ``DepthDiff`` (10003), mantissas and exponents exact;
any bad bytes raise a ``btcpipe.domain.errors.DecodeError`` subclass. ``encode*`` make the frames.
``decode_prefix`` reports the fields of a truncated frame. Layouts live in ``sbe_schema``.
"""

from btcpipe.binance.sbe_decode import Buffer, check_header, decode, decode_header
from btcpipe.binance.sbe_encode import (
    encode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
    encode_trades_event,
)
from btcpipe.binance.sbe_prefix import PrefixReport, decode_prefix
from btcpipe.binance.sbe_schema import (
    BEST_BID_ASK_TEMPLATE,
    DEPTH_DIFF_TEMPLATE,
    DEPTH_SNAPSHOT_TEMPLATE,
    MESSAGES,
    SCHEMA_ID,
    SUPPORTED_VERSIONS,
    TRADES_TEMPLATE,
    MessageHeader,
    SbeRecord,
    TradesEvent,
)

__all__ = [
    "BEST_BID_ASK_TEMPLATE",
    "DEPTH_DIFF_TEMPLATE",
    "DEPTH_SNAPSHOT_TEMPLATE",
    "MESSAGES",
    "SCHEMA_ID",
    "SUPPORTED_VERSIONS",
    "TRADES_TEMPLATE",
    "Buffer",
    "MessageHeader",
    "PrefixReport",
    "SbeRecord",
    "TradesEvent",
    "check_header",
    "decode",
    "decode_header",
    "decode_prefix",
    "encode",
    "encode_best_bid_ask",
    "encode_depth_diff",
    "encode_depth_snapshot",
    "encode_trades",
    "encode_trades_event",
]
