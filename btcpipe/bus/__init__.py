"""The bus: a port (``port.Bus``) with in-process, Redis Streams and Kinesis adapters, Avro payloads
(``codec``), durable consumer positions (``positions``) and a decoding consumer (``consumer``)."""

from btcpipe.bus.port import (
    ALL_STREAMS,
    STREAM_BEST_BID_ASK,
    STREAM_DEAD_LETTERS,
    STREAM_DEPTH,
    STREAM_FEATURES,
    STREAM_HEARTBEAT,
    STREAM_PREDICTIONS,
    STREAM_TRADES,
    Bus,
    BusRecord,
    BusStats,
    Position,
    PositionStore,
)

__all__ = [
    "ALL_STREAMS",
    "STREAM_BEST_BID_ASK",
    "STREAM_DEAD_LETTERS",
    "STREAM_DEPTH",
    "STREAM_FEATURES",
    "STREAM_HEARTBEAT",
    "STREAM_PREDICTIONS",
    "STREAM_TRADES",
    "Bus",
    "BusRecord",
    "BusStats",
    "Position",
    "PositionStore",
]
