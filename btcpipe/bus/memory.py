"""In-process bus: the embedded default. Thread-safe; bounded by retention, never by blocking.

Each shard is a list of records with consecutive integer ids. Publishing never waits: when a shard holds
more than ``retention`` records the oldest are dropped (counted in ``stats.trimmed``), exactly like
Redis ``MAXLEN`` or Kinesis retention. A reader whose position has fallen behind the oldest retained
record gets a warning and the number of records it missed in ``stats.lost`` — drops are counted, never
silent, and a slow consumer cannot stall the ingestor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from btcpipe.bus.port import BusRecord, BusStats, Position, hash_shard
from btcpipe.domain.errors import BusError

log = logging.getLogger(__name__)


class _Shard:
    __slots__ = ("base", "records")

    def __init__(self) -> None:
        self.base = 1  # id of records[0]
        self.records: list[BusRecord] = []


class InProcessBus:
    """The embedded bus: bounded in-memory shards, thread-safe, for one process (the default and the test twin)."""

    def __init__(self, n_shards: int = 1, retention: int = 1_000_000) -> None:
        if n_shards < 1 or retention < 1:
            raise BusError(f"need n_shards >= 1 and retention >= 1, got {n_shards}, {retention}")
        self.n_shards = n_shards
        self.retention = retention
        self.stats = BusStats()
        self._shards: dict[tuple[str, str], _Shard] = {}
        self._cond = threading.Condition()
        self._closed = False

    def _shard(self, stream: str, shard: str) -> _Shard:
        s = self._shards.get((stream, shard))
        if s is None:
            if shard not in self.shards(stream):
                raise BusError(f"stream {stream!r} has no shard {shard!r}")
            s = self._shards[(stream, shard)] = _Shard()
        return s

    def publish(
        self, stream: str, key: str, payloads: Sequence[bytes], traces: Sequence[str | None] | None = None
    ) -> int:
        if not payloads:
            return 0
        shard_id = self.shard_for(stream, key)
        with self._cond:
            if self._closed:
                raise BusError("publish on a closed bus")
            s = self._shard(stream, shard_id)
            next_id = s.base + len(s.records)
            if traces is None:
                s.records.extend(
                    BusRecord(stream, shard_id, str(next_id + i), key, bytes(p)) for i, p in enumerate(payloads)
                )
            else:
                s.records.extend(
                    BusRecord(stream, shard_id, str(next_id + i), key, bytes(p), t)
                    for i, (p, t) in enumerate(zip(payloads, traces, strict=True))
                )
            # Trim in chunks (like MAXLEN ~) so the cost of deleting the head is amortised.
            excess = len(s.records) - self.retention
            if excess > self.retention // 8:
                del s.records[:excess]
                s.base += excess
                self.stats.trimmed += excess
            self.stats.published += len(payloads)
            self._cond.notify_all()
        return len(payloads)

    def shards(self, stream: str) -> list[str]:
        return [str(i) for i in range(self.n_shards)]

    def shard_for(self, stream: str, key: str) -> str:
        return str(hash_shard(key, self.n_shards))

    def read(self, position: Position, max_count: int = 1000, block_ms: int = 0) -> tuple[list[BusRecord], Position]:
        try:
            after = 0 if position.after is None else int(position.after)
        except ValueError as exc:
            raise BusError(f"not an in-process bus position: {position.after!r}") from exc
        deadline = time.monotonic() + block_ms / 1000.0
        with self._cond:
            s = self._shard(position.stream, position.shard)
            while True:
                start = after + 1 - s.base
                if start < 0:
                    if position.after is not None:
                        self.stats.lost += -start
                        log.warning(
                            "bus reader fell behind retention; records were lost",
                            extra={"stream": position.stream, "shard": position.shard, "lost": -start,
                                   "after": after, "oldest": s.base},
                        )
                    start = 0
                    after = s.base - 1
                if start < len(s.records) or self._closed:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = s.records[start : start + max_count]
        if not batch:
            return [], position
        self.stats.read += len(batch)
        return batch, Position(position.stream, position.shard, batch[-1].id)

    def end_position(self, stream: str, shard: str) -> Position:
        with self._cond:
            s = self._shard(stream, shard)
            last = s.base + len(s.records) - 1
        return Position(stream, shard, str(last))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
