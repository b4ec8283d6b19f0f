"""Binance spot market-data request weights (``shared/binance/REST.md``): facts of the API, kept once.

The REST client paces itself by them and the local exchange charges them, so both must read the same
table; a weight changed here changes for both. ``WeightBudget`` is how a process spends them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from btcpipe.domain.errors import ConfigError

API = "/api/v3"
DEPTH_PATH = f"{API}/depth"
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000

# Endpoints whose weight does not depend on the parameters. depth's does: ``depth_weight``.
WEIGHTS: Mapping[str, int] = MappingProxyType(
    {
        f"{API}/ping": 1,
        f"{API}/time": 1,
        f"{API}/exchangeInfo": 20,
        f"{API}/aggTrades": 4,
        f"{API}/historicalTrades": 25,
        f"{API}/trades": 25,
        f"{API}/klines": 2,
        f"{API}/uiKlines": 2,
        f"{API}/avgPrice": 2,
    }
)

# The heaviest fixed-weight request (historicalTrades): a client's weight budget must hold at least one.
MAX_PAGE_WEIGHT = max(WEIGHTS.values())

def ticker_weight(path: str, n_symbols: int | None) -> int | None:
    """The weight of a ticker endpoint asked for ``n_symbols`` symbols (None: all); None if not a ticker path."""
    k = n_symbols
    if path == f"{API}/ticker/24hr":
        return 80 if k is None or k > 100 else (2 if k <= 20 else 40)
    if path == f"{API}/ticker":
        return min(4 * (k or 1), 200)
    if path in (f"{API}/ticker/price", f"{API}/ticker/bookTicker"):
        return 2 if k == 1 else 4
    return None

# (largest limit of the tier, weight): 1–100 → 5, 101–500 → 25, 501–1000 → 50, 1001–5000 → 250.
_DEPTH_TIERS = ((100, 5), (500, 25), (1000, 50))
_DEPTH_TOP_WEIGHT = 250


def depth_weight(limit: int) -> int:
    """The weight of ``/api/v3/depth`` with this ``limit`` (callers cap the limit to 1..5000 first)."""
    for largest, weight in _DEPTH_TIERS:
        if limit <= largest:
            return weight
    return _DEPTH_TOP_WEIGHT


# --- one budget per exchange endpoint -----------------------------------------------------------------
Priority = Literal["live", "bulk"]
LIVE: Priority = "live"  # order-book snapshots and trade gap fills: the live path
BULK: Priority = "bulk"  # backfill pages: whatever the live path leaves
DEFAULT_BUDGET_SHARE = 0.8
DEFAULT_LIVE_RESERVE_SHARE = 0.2


class WeightBudget:
    """The request weight one exchange endpoint (one IP's minute window) allows, shared by every client of a
    process, with the live path first.

    Live requests may take the window to ``weight_limit × budget_share``; bulk requests (backfill pages)
    stop ``live_reserve`` short of that, so a long backfill always leaves the live path room for its depth
    snapshots and gap fills, and a bulk request also waits while a live one is waiting. The view of the
    window is the server's ``X-MBX-USED-WEIGHT-1M`` (which counts every process on the IP, so the reserve
    holds across processes too) plus the weight of requests in flight. Thread-safe.
    """

    def __init__(
        self,
        weight_limit: int = 6000,
        *,
        budget_share: float = DEFAULT_BUDGET_SHARE,
        live_reserve_share: float = DEFAULT_LIVE_RESERVE_SHARE,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < budget_share <= 1:
            raise ConfigError(f"the weight budget share must be in (0, 1], got {budget_share}")
        if not 0 <= live_reserve_share < budget_share:
            raise ConfigError(f"the live reserve share must be in [0, {budget_share}), got {live_reserve_share}")
        self.weight_limit = weight_limit
        self.window_s = window_s
        self.live_ceiling = max(1, int(weight_limit * budget_share))
        self.bulk_ceiling = max(1, self.live_ceiling - int(weight_limit * live_reserve_share))
        if self.bulk_ceiling < MAX_PAGE_WEIGHT <= self.live_ceiling:
            # Bulk requests would go one per window roll: a silent crawl.
            raise ConfigError(
                f"the live reserve {live_reserve_share} of {weight_limit} leaves backfill pages less than one "
                f"request's weight ({MAX_PAGE_WEIGHT}); lower the reserve or raise the weight limit"
            )
        self._clock = clock
        self._lock = threading.Lock()
        self._reported = 0  # the server's last total for the current window
        self._in_flight = 0  # weight of requests sent whose answer has not come yet
        self._window_start: float | None = None  # the latest instant the current window can have begun
        self._live_waiting = 0

    def ceiling(self, priority: Priority) -> int:
        return self.live_ceiling if priority == LIVE else self.bulk_ceiling

    @property
    def used(self) -> int:
        """The weight this process believes the current window holds (server total + in flight)."""
        with self._lock:
            self._roll(self._clock())
            return self._reported + self._in_flight

    def room(self, priority: Priority) -> int:
        """Weight a request of ``priority`` could take now without waiting (nothing is reserved)."""
        return max(0, self.ceiling(priority) - self.used)

    def _roll(self, now: float) -> None:
        if self._window_start is not None and now >= self._window_start + self.window_s:
            # Every weight we know of was counted in a window that has rolled by now.
            self._reported = 0
            self._window_start = None

    def take(self, weight: int, priority: Priority) -> float:
        """Reserve ``weight`` for a request now (returns 0.0), or say how many seconds to wait before asking
        again. A request with no known window (the first, or after a roll) always goes."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            used = self._reported + self._in_flight
            live_first = priority == BULK and self._live_waiting > 0
            if not live_first and (used + weight <= self.ceiling(priority) or self._window_start is None):
                self._in_flight += weight
                if self._window_start is None:
                    self._window_start = now
                return 0.0
            if live_first and used + weight <= self.ceiling(priority):
                return 0.05  # a live request is waiting for room: let it go first
            assert self._window_start is not None
            return max(0.001, self._window_start + self.window_s - now)

    def waiting(self, priority: Priority, delta: int) -> None:
        """Count a request of ``priority`` that starts (+1) or stops (-1) waiting for room."""
        if priority == LIVE:
            with self._lock:
                self._live_waiting += delta

    def settle(self, weight: int, reported: int | None) -> None:
        """A request reserved by ``take`` got its answer (or failed): ``reported`` is the header, if any."""
        with self._lock:
            now = self._clock()
            self._in_flight = max(0, self._in_flight - weight)
            if reported is None:
                # No header: count the weight as spent in the current window.
                self._reported += weight
                if self._window_start is None:
                    self._window_start = now
                return
            # A total below what the same window would show means a new window began, at the latest now.
            if self._window_start is None or reported < self._reported + weight:
                self._window_start = now
            self._reported = reported

    def full_until(self, wait_s: float) -> None:
        """A 429/418: the server's window is full; after ``wait_s`` (its Retry-After) it is empty again."""
        with self._lock:
            now = self._clock()
            self._reported = max(self._reported, self.weight_limit)
            self._window_start = now + wait_s - self.window_s


_BUDGETS: dict[str, WeightBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def shared_budget(endpoint: str, **settings: Any) -> WeightBudget:
    """The process's one budget for ``endpoint`` (a base URL): made with ``settings`` on first use."""
    key = endpoint.rstrip("/")
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = WeightBudget(**settings)
        return budget
