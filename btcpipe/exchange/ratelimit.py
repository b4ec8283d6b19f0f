"""Binance's REQUEST_WEIGHT limit: a fixed 1-minute window per client IP, 429 past it, 418 bans after.

Every request adds its endpoint's weight to the client's window (rejected ones too, as on Binance, so
``X-MBX-USED-WEIGHT-1M`` can read above the limit after a burst). A request that takes the window past
the limit gets 429 with ``Retry-After`` (seconds to the window's end). A client that sends more than
``tolerated_429s`` requests while it is being told to wait is banned: 418 with ``Retry-After`` for
``ban_s`` seconds, doubling for each further ban up to 3 days.

``RateStats`` keeps what a test needs to prove a client behaved: the highest used weight the server
ever reported and how many 429s/418s it sent. Thread-safe: the server thread writes, tests read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from btcpipe.domain.errors import ConfigError

MAX_BAN_S = 3 * 86_400.0


@dataclass(slots=True)
class RateStats:
    """The limiter's counters: requests, the highest used weight, 429s and 418 bans."""

    requests: int = 0
    max_used_weight: int = 0
    rejected_429: int = 0
    banned_418: int = 0
    weight_by_ip: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict on one request: ``status`` 200 (go ahead), 429 or 418; ``retry_after_s`` for the latter."""

    status: int
    used_weight: int
    retry_after_s: int = 0
    banned_until_s: float = 0.0


@dataclass(slots=True)
class _Client:
    window_start: float = -math.inf
    used: int = 0
    blocked_until: float = 0.0  # the end of the window in which the client got its 429
    strikes: int = 0  # requests received while blocked
    banned_until: float = 0.0
    bans: int = 0


class WeightLimiter:
    """Binance's request-weight limit per IP over a rolling window: 429 past it, 418 bans for repeat offenders."""

    def __init__(
        self,
        limit: int = 6000,
        *,
        window_s: float = 60.0,
        tolerated_429s: int = 3,
        ban_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit <= 0 or window_s <= 0:
            raise ConfigError(f"weight limit and window must be positive (got {limit}, {window_s})")
        self.limit = limit
        self.window_s = window_s
        self.tolerated_429s = tolerated_429s
        self.ban_s = ban_s
        self._clock = clock
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()
        self._stats = RateStats()

    def check(self, ip: str, weight: int) -> RateDecision:
        """Count ``weight`` for ``ip`` and say whether the request may proceed."""
        with self._lock:
            now = self._clock()
            self._stats.requests += 1
            client = self._clients.setdefault(ip, _Client())
            window_start = now - now % self.window_s  # aligned, as Binance's minute buckets are
            if window_start != client.window_start:
                client.window_start, client.used = window_start, 0
            if now < client.banned_until:
                self._stats.banned_418 += 1
                return RateDecision(418, client.used, _ceil_s(client.banned_until - now), client.banned_until)
            if now < client.blocked_until:
                client.strikes += 1
                if client.strikes > self.tolerated_429s:
                    client.bans += 1
                    duration = min(self.ban_s * 2 ** (client.bans - 1), MAX_BAN_S)
                    client.banned_until, client.strikes = now + duration, 0
                    self._stats.banned_418 += 1
                    return RateDecision(418, client.used, _ceil_s(duration), client.banned_until)
            else:
                client.strikes = 0
            client.used += weight
            self._stats.max_used_weight = max(self._stats.max_used_weight, client.used)
            self._stats.weight_by_ip[ip] = self._stats.weight_by_ip.get(ip, 0) + weight
            if client.used > self.limit:
                window_end = window_start + self.window_s
                client.blocked_until = window_end
                self._stats.rejected_429 += 1
                return RateDecision(429, client.used, _ceil_s(window_end - now))
            return RateDecision(200, client.used)

    def used_weight(self, ip: str) -> int:
        """The weight ``ip`` has used in the current window (what the header would say now)."""
        with self._lock:
            client = self._clients.get(ip)
            if client is None:
                return 0
            now = self._clock()
            return client.used if now - now % self.window_s == client.window_start else 0

    def stats(self) -> RateStats:
        """A copy of the counters."""
        with self._lock:
            s = self._stats
            return RateStats(s.requests, s.max_used_weight, s.rejected_429, s.banned_418, dict(s.weight_by_ip))

    def reset(self) -> None:
        """Forget every client and counter (between test cases sharing one server)."""
        with self._lock:
            self._clients.clear()
            self._stats = RateStats()


def _ceil_s(seconds: float) -> int:
    return max(1, math.ceil(seconds))
