"""The online store port: the latest 1-s feature rows per symbol, for inference to read within its deadline.

Keys: ``features:{symbol}:{ts_sec}`` (expires after ``ttl_s``) and ``features:{symbol}:latest``, which
only ever moves forward in time — a late or replayed older row never hides a newer one. ``ts_sec`` is a
whole second in µs since the epoch (``FeatureVector1s.ts_sec``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.messages import FeatureVector1s, check_ts_sec

DEFAULT_TTL_S = 300


class OnlineStore(Protocol):
    """The online store port: feature rows by (symbol, second), the latest row, and predictions."""

    def put_features(self, symbol: str, ts_sec: int, vector: FeatureVector1s, ttl_s: int = DEFAULT_TTL_S) -> None:
        """Store ``vector`` as the row of (symbol, ts_sec) and move ``latest`` to it if it is newer."""
        ...

    def put_many(self, vectors: Sequence[FeatureVector1s], ttl_s: int = DEFAULT_TTL_S) -> None:
        """``put_features`` for each vector, in one round trip where the adapter can."""
        ...

    def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
        """The row of (symbol, ts_sec), or ``None`` when there is none or it expired."""
        ...

    def get_latest(self, symbol: str) -> FeatureVector1s | None:
        """The newest row stored for ``symbol``, or ``None``."""
        ...

    def close(self) -> None: ...


def feature_key(symbol: str, ts_sec: int) -> str:
    return f"features:{symbol}:{ts_sec}"


def latest_key(symbol: str) -> str:
    return f"features:{symbol}:latest"


def check_put(symbol: str, ts_sec: int, vector: FeatureVector1s, ttl_s: int) -> None:
    """Refuse a row filed under another symbol/second than its own, a bad ``ts_sec`` or a non-positive TTL."""
    check_ts_sec(ts_sec)
    if vector.symbol != symbol or vector.ts_sec != ts_sec:
        raise MalformedRecordError(
            f"feature row of {vector.symbol}@{vector.ts_sec} cannot be stored as {symbol}@{ts_sec}"
        )
    if not symbol or ":" in symbol:
        raise MalformedRecordError(f"invalid symbol {symbol!r} for the online store")
    if ttl_s <= 0:
        raise MalformedRecordError(f"ttl_s must be positive, got {ttl_s}")
