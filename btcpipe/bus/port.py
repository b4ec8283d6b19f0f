"""The bus port: named streams split into shards, bytes in, bytes out, positions explicit.

A stream is split into shards (Redis: one stream key per shard; Kinesis: its shards). The partition key
(the symbol) picks the shard, so all records of one symbol stay in one shard in publish order. A reader
names a ``Position`` — (stream, shard, the id of the last record it has seen) — and gets the records
strictly after it plus the position to continue from; positions are plain strings so a consumer can
persist them (``PositionStore``) and resume after a restart.

Each record may carry metadata beside its payload: ``trace``, the W3C ``traceparent`` of the span that
published it (``btcpipe.infra.tracing``), so a consumer continues the producer's trace. Redis keeps it in an
entry field, Kinesis (which has no record metadata) in a small envelope in front of the payload that only the
adapter sees; publishing without traces writes records exactly as before.

Retention is bounded on every adapter. When a reader's position falls behind what is retained, the
records in between are gone: the adapter counts them in ``BusStats.lost`` and logs a warning, never
silently.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

STREAM_TRADES = "market-sbe-trade"
STREAM_BEST_BID_ASK = "market-sbe-bestbidask"
STREAM_DEPTH = "market-sbe-depth"
STREAM_FEATURES = "features-1s"
STREAM_PREDICTIONS = "predictions-1s"
STREAM_HEARTBEAT = "market-heartbeat"  # the ingestor's per-symbol heartbeat (domain.messages.Heartbeat)
# Payloads a consumer could not decode, set aside with their position and reason (key: the source stream).
STREAM_DEAD_LETTERS = "dead-letters"
ALL_STREAMS = (STREAM_TRADES, STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_HEARTBEAT, STREAM_FEATURES, STREAM_PREDICTIONS,
               STREAM_DEAD_LETTERS)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader is in one shard: after the record with id ``after`` (``None``: from the oldest)."""

    stream: str
    shard: str
    after: str | None = None


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One record read from the bus: where it came from, its id (a position to resume after) and its payload."""

    stream: str
    shard: str
    id: str  # in-process offset, Redis entry id or Kinesis sequence number; a Position's ``after``
    key: str
    payload: bytes
    trace: str | None = None  # W3C traceparent of the publishing span, when it was traced


@dataclass(slots=True)
class BusStats:
    """Counters an adapter keeps (exported as metrics by the services)."""

    published: int = 0
    read: int = 0
    trimmed: int = 0  # records dropped by retention (in-process: exact; Redis/Kinesis: by the server)
    lost: int = 0  # records a reader skipped because they were trimmed before it read them (or gap events)
    publish_retries: int = 0  # Kinesis: records re-sent after a partial PutRecords failure


class Bus(Protocol):
    """The bus port: publish payloads to a keyed shard of a stream, read them back after a position."""

    stats: BusStats

    def publish(
        self, stream: str, key: str, payloads: Sequence[bytes], traces: Sequence[str | None] | None = None
    ) -> int:
        """Append ``payloads`` in order to the shard of ``key``; returns how many were written.

        ``traces``, when given, is one traceparent (or None) per payload, kept as each record's ``trace``.

        Raises ``BusError`` when the bus cannot take them (records already written stay written).
        """
        ...

    def shards(self, stream: str) -> list[str]:
        """The stream's shard ids, in a stable order."""
        ...

    def shard_for(self, stream: str, key: str) -> str:
        """The shard that holds the records of partition key ``key``."""
        ...

    def read(self, position: Position, max_count: int = 1000, block_ms: int = 0) -> tuple[list[BusRecord], Position]:
        """Up to ``max_count`` records after ``position`` and the position after the last of them.

        Waits up to ``block_ms`` for a record when none is there (0: return at once). An empty list
        returns ``position`` unchanged.
        """
        ...

    def end_position(self, stream: str, shard: str) -> Position:
        """A position after everything published so far (to start reading only new records)."""
        ...

    def close(self) -> None: ...


class PositionStore(Protocol):
    """Durable consumer positions: ``{shard: after}`` per (consumer name, stream)."""

    def load(self, consumer: str, stream: str) -> dict[str, str]: ...

    def save(self, consumer: str, stream: str, positions: Mapping[str, str]) -> None:
        """Replace the stored positions of (consumer, stream) with ``positions`` in one step."""
        ...


def hash_shard(key: str, n_shards: int) -> int:
    """Stable shard index of a partition key (crc32, the same in every process and run)."""
    return zlib.crc32(key.encode("utf-8")) % n_shards
