"""Redis Streams bus: one stream key per (stream, shard), entries ``{k: partition key, p: payload}`` (plus
``t: traceparent`` when the record was traced).

Publishing pipelines ``XADD … MAXLEN ~ retention`` (one round trip per chunk); reading is ``XREAD`` from
the entry id after which the reader stands, so a stored id resumes exactly. Each read also asks
``XINFO STREAM`` (same round trip): if entries were trimmed and the oldest one left is past the reader's
position, entries it never saw are gone — counted in ``stats.lost`` (gap events) and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

from btcpipe.bus.port import BusRecord, BusStats, Position, hash_shard
from btcpipe.domain.errors import BusError
from btcpipe.infra.redis_connection import RedisOptions, connect_redis

log = logging.getLogger(__name__)

_KEY = b"k"
_PAYLOAD = b"p"
_TRACE = b"t"


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError as exc:
        raise BusError(f"not a Redis stream id: {text!r}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamsBus:
    """The bus on Redis Streams: one stream key per (stream, shard), capped at ``retention`` entries."""

    def __init__(
        self,
        client: redis.Redis[bytes] | RedisOptions,
        *,
        n_shards: int = 1,
        retention: int = 1_000_000,
        prefix: str = "btcpipe:bus:",
        publish_chunk: int = 1000,
    ) -> None:
        if n_shards < 1 or retention < 1:
            raise BusError(f"need n_shards >= 1 and retention >= 1, got {n_shards}, {retention}")
        self._client = connect_redis(client) if isinstance(client, RedisOptions) else client
        self.n_shards = n_shards
        self.retention = retention
        self.prefix = prefix
        self.publish_chunk = publish_chunk
        self.stats = BusStats()
        timeout = self._client.connection_pool.connection_kwargs.get("socket_timeout") or 1.0
        # A blocking XREAD must return before the socket timeout fires, so long waits go in slices.
        self._block_slice_ms = max(1, int(float(timeout) * 500))

    def key(self, stream: str, shard: str) -> str:
        return f"{self.prefix}{stream}:{shard}"

    def publish(
        self, stream: str, key: str, payloads: Sequence[bytes], traces: Sequence[str | None] | None = None
    ) -> int:
        name = self.key(stream, self.shard_for(stream, key))
        if traces is not None and len(traces) != len(payloads):
            raise BusError(f"{len(traces)} traces for {len(payloads)} payloads")
        written = 0
        try:
            for start in range(0, len(payloads), self.publish_chunk):
                pipe = self._client.pipeline(transaction=False)
                chunk = payloads[start : start + self.publish_chunk]
                for i, payload in enumerate(chunk):
                    trace = None if traces is None else traces[start + i]
                    fields = {_KEY: key, _PAYLOAD: payload} if trace is None else {
                        _KEY: key, _PAYLOAD: payload, _TRACE: trace}
                    pipe.xadd(name, fields, maxlen=self.retention, approximate=True)
                pipe.execute()
                written += len(chunk)
        except redis.RedisError as exc:
            raise BusError(
                f"publishing to {name} failed after {written} of {len(payloads)} records: {exc}"
            ) from exc
        finally:
            self.stats.published += written
        return written

    def shards(self, stream: str) -> list[str]:
        return [str(i) for i in range(self.n_shards)]

    def shard_for(self, stream: str, key: str) -> str:
        return str(hash_shard(key, self.n_shards))

    def _check_shard(self, position: Position) -> str:
        if position.shard not in self.shards(position.stream):
            raise BusError(f"stream {position.stream!r} has no shard {position.shard!r}")
        return self.key(position.stream, position.shard)

    def read(self, position: Position, max_count: int = 1000, block_ms: int = 0) -> tuple[list[BusRecord], Position]:
        name = self._check_shard(position)
        after = position.after or "0-0"
        after_id = _stream_id(after)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.xinfo_stream(name)
            pipe.xread({name: after}, count=max_count)
            info, reply = pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
            deadline = time.monotonic() + block_ms / 1000.0
            while not reply and (remaining := int((deadline - time.monotonic()) * 1000)) > 0:
                reply = self._client.xread({name: after}, count=max_count, block=min(remaining, self._block_slice_ms))
        except redis.RedisError as exc:
            raise BusError(f"reading {name} after {after} failed: {exc}") from exc
        if isinstance(info, dict) and position.after is not None:
            self._check_trimmed(position, info, after_id)
        if not reply:
            return [], position
        entries = reply[0][1]
        records = [
            BusRecord(position.stream, position.shard, _text(entry_id), _text(fields.get(_KEY, b"")),
                      fields.get(_PAYLOAD, b""), _text(fields[_TRACE]) if _TRACE in fields else None)
            for entry_id, fields in entries
        ]
        self.stats.read += len(records)
        return records, Position(position.stream, position.shard, records[-1].id)

    def _check_trimmed(self, position: Position, info: dict[Any, Any], after_id: tuple[int, int]) -> None:
        def get(name: str) -> Any:
            return info.get(name, info.get(name.encode()))

        first = get("first-entry")
        added, length = get("entries-added"), get("length")
        if not first or added is None or length is None or int(added) <= int(length):
            return  # nothing was ever trimmed or deleted
        first_id = _stream_id(_text(first[0]))
        if first_id > after_id:
            # Trimming removed entries up to first_id and the reader stood before them. Redis does not
            # say how many of those the reader had not seen yet, so this counts the gap event (it also
            # fires when only the reader's own last entry went: a reader that close to the edge is
            # about to lose data anyway); the log names the ids.
            self.stats.lost += 1
            log.warning(
                "bus reader fell behind Redis stream retention; entries were lost",
                extra={"stream": position.stream, "shard": position.shard, "after": position.after,
                       "oldest_retained": _text(first[0])},
            )

    def end_position(self, stream: str, shard: str) -> Position:
        name = self._check_shard(Position(stream, shard))
        try:
            last = self._client.xrevrange(name, count=1)
        except redis.RedisError as exc:
            raise BusError(f"reading the end of {name} failed: {exc}") from exc
        return Position(stream, shard, _text(last[0][0]) if last else "0-0")

    def ping(self) -> None:
        """``BusError`` unless the Redis server answers (for readiness probes)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise BusError(f"the Redis bus does not answer: {exc}") from exc

    def close(self) -> None:
        self._client.close()
