"""In-process online store: the embedded default. Thread-safe; TTL measured on an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from btcpipe.domain.messages import FeatureVector1s, check_ts_sec
from btcpipe.domain.time import US_PER_SEC, Clock
from btcpipe.store.port import DEFAULT_TTL_S, check_put


class InProcessOnlineStore:
    """The embedded online store: a dict with TTLs on the given clock (the default and the test twin)."""

    def __init__(self, clock: Clock, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._rows: dict[tuple[str, int], tuple[int, FeatureVector1s]] = {}  # -> (expires at µs, row)
        self._latest: dict[str, tuple[int, FeatureVector1s]] = {}
        self._lock = threading.Lock()
        self._sweep_every = sweep_every
        self._puts = 0

    def put_features(self, symbol: str, ts_sec: int, vector: FeatureVector1s, ttl_s: int = DEFAULT_TTL_S) -> None:
        check_put(symbol, ts_sec, vector, ttl_s)
        now = self._clock.now_us()
        expires = now + ttl_s * US_PER_SEC
        with self._lock:
            self._rows[(symbol, ts_sec)] = (expires, vector)
            current = self._latest.get(symbol)
            if current is None or current[0] <= now or current[1].ts_sec < ts_sec:
                self._latest[symbol] = (expires, vector)
            self._puts += 1
            if self._puts % self._sweep_every == 0:
                # Expired rows are dropped now and then, so memory stays bounded without a timer thread.
                for key in [k for k, (exp, _) in self._rows.items() if exp <= now]:
                    del self._rows[key]

    def put_many(self, vectors: Sequence[FeatureVector1s], ttl_s: int = DEFAULT_TTL_S) -> None:
        for v in vectors:
            self.put_features(v.symbol, v.ts_sec, v, ttl_s)

    def get_features(self, symbol: str, ts_sec: int) -> FeatureVector1s | None:
        check_ts_sec(ts_sec)
        with self._lock:
            entry = self._rows.get((symbol, ts_sec))
        if entry is None or entry[0] <= self._clock.now_us():
            return None
        return entry[1]

    def get_latest(self, symbol: str) -> FeatureVector1s | None:
        with self._lock:
            entry = self._latest.get(symbol)
        if entry is None or entry[0] <= self._clock.now_us():
            return None
        return entry[1]

    def close(self) -> None:
        with self._lock:
            self._rows.clear()
            self._latest.clear()
