"""Redis online store: rows are Avro ``FeatureVector1s`` payloads (the bus codec), written with a TTL.

A write is one pipelined round trip: ``SET features:{symbol}:{ts_sec} … EX ttl`` plus a small Lua script
that moves ``features:{symbol}:latest`` (a hash ``{ts, v}``) only when the new row is newer, so the
pointer never goes back in time even with two writers. Every Redis failure — refused connection,
timeout, a server killed mid-run — surfaces as ``StoreError``; the client reconnects on the next call.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from btcpipe.domain.errors import DataError, StoreError
from btcpipe.domain.messages import FeatureVector1s, check_ts_sec
from btcpipe.infra.redis_connection import RedisOptions, connect_redis
from btcpipe.store.port import DEFAULT_TTL_S, check_put, feature_key, latest_key
from btcpipe.wire.codec import decode_feature_vector, encode_feature_vector

# KEYS[1] = latest hash; ARGV = ts_sec, payload, ttl seconds. Lua numbers are doubles: µs epochs (< 2^53) are exact.
_MOVE_LATEST = """
local cur = redis.call('HGET', KEYS[1], 'ts')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'v', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""


class RedisOnlineStore:
    """The online store on Redis: ``features:{symbol}:{ts_sec}`` keys with TTL and a ``latest`` pointer."""

    def __init__(self, client: redis.Redis[bytes] | RedisOptions) -> None:
        self._client = connect_redis(client) if isinstance(client, RedisOptions) else client
        self._move_latest = self._client.register_script(_MOVE_LATEST)

    def put_features(self, symbol: str, ts_sec: int, vector: FeatureVector1s, ttl_s: int = DEFAULT_TTL_S) -> None:
        check_put(symbol, ts_sec, vector, ttl_s)  # the row must be filed under its own symbol and second
        self.put_many([vector], ttl_s)

    def put_many(self, vectors: Sequence[FeatureVector1s], ttl_s: int = DEFAULT_TTL_S) -> None:
        if not vectors:
            return
        pipe = self._client.pipeline(transaction=False)
        for v in vectors:
            check_put(v.symbol, v.ts_sec, v, ttl_s)
            payload = encode_feature_vector(v)
            pipe.set(feature_key(v.symbol, v.ts_sec), payload, ex=ttl_s)
            self._move_latest(keys=[latest_key(v.symbol)], args=[v.ts_sec, payload, ttl_s], client=pipe)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"writing {len(vectors)} feature rows to Redis failed: {exc}") from exc

    def _decode(self, key: str, payload: bytes | None) -> FeatureVector1s | None:
        if payload is None:
            return None
        try:
            return decode_feature_vector(payload)
        except DataError as exc:
            raise StoreError(f"the value at {key} is not a feature row: {exc}") from exc

    def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
        key = feature_key(symbol, check_ts_sec(ts_sec))
        try:
            payload = self._client.get(key)
        except redis.RedisError as exc:
            raise StoreError(f"reading {key} from Redis failed: {exc}") from exc
        return self._decode(key, payload)

    def get_latest(self, symbol: str) -> FeatureVector1s | None:
        key = latest_key(symbol)
        try:
            payload = self._client.hget(key, "v")
        except redis.RedisError as exc:
            raise StoreError(f"reading {key} from Redis failed: {exc}") from exc
        return self._decode(key, payload)

    def ping(self) -> None:
        """``StoreError`` unless the Redis server answers (for readiness probes)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise StoreError(f"the online store does not answer: {exc}") from exc

    def close(self) -> None:
        self._client.close()
