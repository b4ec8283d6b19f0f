"""Who may open a stream: the API-key check of the SBE handshake and the connection-attempt limit per IP.

Both answer before the WebSocket upgrade, as Binance does: no key → 401, a key not in the configured set →
403, more than ``limit`` attempts from one IP within ``window_s`` → 429 with ``Retry-After``. Every attempt
counts, refused ones included, so a client hammering the endpoint stays refused until it backs off.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from btcpipe.domain.errors import ConfigError

API_KEY_HEADER = "X-MBX-APIKEY"


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    """Whether one more connection attempt is allowed, and when to retry if not."""

    allowed: bool
    attempts: int  # in the window, this one included
    retry_after_s: int = 0


class ConnectionAttemptLimiter:
    """A sliding window of connection attempts per IP (thread-safe; the clock is injectable for tests)."""

    def __init__(
        self, limit: int = 300, window_s: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ConfigError(f"attempt limit must be >= 1 and the window positive, got {limit} per {window_s}s")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts: dict[str, deque[float]] = {}

    def attempt(self, ip: str) -> AttemptDecision:
        now = self._clock()
        with self._lock:
            window = self._attempts.setdefault(ip, deque())
            while window and window[0] <= now - self.window_s:
                window.popleft()
            window.append(now)
            n = len(window)
            if n <= self.limit:
                return AttemptDecision(True, n)
            # The attempt that would bring the window back under the limit expires first.
            oldest_to_expire = window[n - self.limit - 1]
            return AttemptDecision(False, n, max(1, math.ceil(oldest_to_expire + self.window_s - now)))

    def reset(self) -> None:
        with self._lock:
            self._attempts.clear()


class ApiKeys:
    """The set of accepted keys; replaceable at runtime (a test revokes or adds keys between connections)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._keys = frozenset(keys)

    def set(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._keys = frozenset(keys)

    def check(self, key: str | None) -> int:
        """HTTP status for a handshake carrying ``key``: 200 accepted, 401 missing, 403 unknown."""
        if not key:
            return 401
        with self._lock:
            return 200 if key in self._keys else 403
