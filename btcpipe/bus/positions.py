"""Where consumers keep their bus positions: in memory, in a JSON file, or in a Redis hash.

A save replaces all shard positions of (consumer, stream) in one step, so a crash leaves either the old
or the new set — never half of each.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import redis

from btcpipe.domain.errors import BusError
from btcpipe.infra.redis_connection import RedisOptions, connect_redis


class InMemoryPositionStore:
    """Consumer positions held in memory (lost with the process; the embedded default)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def load(self, consumer: str, stream: str) -> dict[str, str]:
        with self._lock:
            return dict(self._data.get((consumer, stream), {}))

    def save(self, consumer: str, stream: str, positions: Mapping[str, str]) -> None:
        with self._lock:
            self._data[(consumer, stream)] = dict(positions)


class FilePositionStore:
    """One JSON file per consumer under ``directory``: ``{stream: {shard: after}}``, replaced atomically."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def _path(self, consumer: str) -> Path:
        if not consumer or any(c in consumer for c in "/\\\0") or consumer in (".", ".."):
            raise BusError(f"invalid consumer name {consumer!r}")
        return self.directory / f"{consumer}.positions.json"

    def _read(self, path: Path) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BusError(f"cannot read consumer positions {path}: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(v, dict) and all(isinstance(a, str) for a in v.values()) for v in data.values()
        ):
            raise BusError(f"consumer positions file {path} does not hold {{stream: {{shard: id}}}}")
        return data

    def load(self, consumer: str, stream: str) -> dict[str, str]:
        with self._lock:
            return dict(self._read(self._path(consumer)).get(stream, {}))

    def save(self, consumer: str, stream: str, positions: Mapping[str, str]) -> None:
        path = self._path(consumer)
        with self._lock:
            data = self._read(path)
            data[stream] = dict(positions)
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.directory)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                raise BusError(f"cannot write consumer positions {path}: {exc}") from exc


class RedisPositionStore:
    """A hash per (consumer, stream): ``{prefix}{consumer}:{stream}`` → ``{shard: after}``."""

    def __init__(self, client: redis.Redis[bytes] | RedisOptions, prefix: str = "btcpipe:positions:") -> None:
        self._client = connect_redis(client) if isinstance(client, RedisOptions) else client
        self.prefix = prefix

    def load(self, consumer: str, stream: str) -> dict[str, str]:
        try:
            raw = self._client.hgetall(f"{self.prefix}{consumer}:{stream}")
        except redis.RedisError as exc:
            raise BusError(f"cannot load positions of {consumer}/{stream}: {exc}") from exc
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save(self, consumer: str, stream: str, positions: Mapping[str, str]) -> None:
        key = f"{self.prefix}{consumer}:{stream}"
        try:
            pipe = self._client.pipeline(transaction=True)  # MULTI/EXEC: all shards or none
            pipe.delete(key)
            if positions:
                pipe.hset(key, mapping={k: v for k, v in positions.items()})
            pipe.execute()
        except redis.RedisError as exc:
            raise BusError(f"cannot save positions of {consumer}/{stream}: {exc}") from exc

    def ping(self) -> None:
        """``BusError`` unless the Redis server holding the positions answers (for readiness probes)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise BusError(f"the positions' Redis does not answer: {exc}") from exc
