"""Exchange time: which instant of the tape the local exchange is "at".

REST answers only with data whose ``ts_event`` is at or before the exchange's now, so the same server can
serve a tape as finished history (the default) or replay it "live" (a later issue drives the WebSocket
streams from the same clock). Clocks are adapters: they may read the wall clock; the pure code takes a
``now_us`` value.
"""

from __future__ import annotations

import threading
import time

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.time import US_PER_SEC, Clock


class SystemClock:
    """Wall time in µs since the epoch."""

    def now_us(self) -> int:
        return time.time_ns() // 1_000


class HistoryClock:
    """Everything in the tape is history: now is the wall time, but never before the tape's end."""

    def __init__(self, tape_end_us: int, wall: Clock | None = None) -> None:
        self.tape_end_us = tape_end_us
        self._wall = wall or SystemClock()

    def now_us(self) -> int:
        return max(self._wall.now_us(), self.tape_end_us)


class ReplayClock:
    """Tape time that advances with the wall clock from ``tape_start_us`` at ``speed`` × real time.

    The replay starts when the clock is created (or at ``wall_start_us``), so a tape starting at
    09:00 is at 09:00:10 ten wall seconds later. A ``held`` clock stays at ``tape_start_us`` until
    ``start()``, so clients can connect before the first event is due.
    """

    def __init__(
        self,
        tape_start_us: int,
        *,
        speed: float = 1.0,
        wall: Clock | None = None,
        wall_start_us: int | None = None,
        held: bool = False,
    ) -> None:
        if speed <= 0:
            raise ConfigError(f"replay speed must be positive, got {speed}")
        self._wall = wall or SystemClock()
        self.tape_start_us = tape_start_us
        self.speed = speed
        self.wall_start_us: int | None = None
        if not held:
            self.wall_start_us = self._wall.now_us() if wall_start_us is None else wall_start_us

    def start(self) -> None:
        """Start (or restart) the replay from ``tape_start_us`` now."""
        self.wall_start_us = self._wall.now_us()

    def now_us(self) -> int:
        started = self.wall_start_us
        if started is None:
            return self.tape_start_us
        return self.tape_start_us + int((self._wall.now_us() - started) * self.speed)


class ManualClock:
    """A clock a test sets and advances explicitly (thread-safe: the server reads it from its own thread)."""

    def __init__(self, now_us: int) -> None:
        self._now = now_us
        self._lock = threading.Lock()

    def now_us(self) -> int:
        with self._lock:
            return self._now

    def set(self, now_us: int) -> None:
        with self._lock:
            self._now = now_us

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += int(seconds * US_PER_SEC)
