"""Ride through bus outages: a processor that loses Redis (or Kinesis) waits and resumes, never exits.

A ``BusError`` out of ``Processor.step`` leaves the processor's in-memory read positions possibly ahead of
what it applied (a poll over several shards can fail half-way). So the processor is not patched up: it is
closed (its silver rows flushed; a commit that fails is counted) and built again from its committed
positions, exactly as a restart would, after a capped exponential backoff. Building fails too while the bus
is down; that is retried the same way. Rows emitted twice across the outage are the same rows (a restart
re-reads from the rewind point), so consumers see at-least-once delivery, as after a crash.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import BtcpipeError, BusError
from btcpipe.services.process.processor import Processor

log = logging.getLogger(__name__)


class ProcessorRide:
    """Steps a processor; on a bus error closes it, waits (backoff) and rebuilds it from its positions."""

    def __init__(
        self,
        build: Callable[[], Processor],
        *,
        should_stop: Callable[[], bool],
        wait: Callable[[float], object],
        base_s: float = 0.2,
        cap_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._build = build
        self._should_stop = should_stop
        self._wait = wait
        self.base_s, self.cap_s = base_s, cap_s
        self._rng = rng or random.Random()
        self.processor: Processor | None = None
        self.bus_errors = 0  # bus errors ridden through (while running or while building)
        self.rebuilds = 0  # times the processor was built again after an outage

    def start(self) -> Processor | None:
        """Build the processor, retrying while the bus is unreachable; ``None`` if told to stop first."""
        attempt = 0
        while not self._should_stop():
            try:
                self.processor = self._build()
                return self.processor
            except BusError as exc:
                attempt += 1
                self._outage(exc, attempt, "building the processor")
        return None

    def step(self) -> int:
        """One processor cycle; after a bus error, the processor is rebuilt and 0 is returned."""
        if self.processor is None:
            return 0
        try:
            return self.processor.step()
        except BusError as exc:
            self._outage(exc, 1, "processing")
            self._close()
            if self.start() is not None:
                self.rebuilds += 1
                log.info("processor resumed from its positions after a bus outage",
                         extra={"processor": self.processor.name if self.processor else None,
                                "resumed_from": self.processor.stats.resumed_from if self.processor else None})
            return 0

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        processor, self.processor = self.processor, None
        if processor is None:
            return
        try:
            processor.close()
        except BtcpipeError as exc:  # close() counts its own failures; anything else must not stop the ride
            log.warning("closing the processor after a bus error failed", extra={"error": str(exc)})

    def _outage(self, exc: BusError, attempt: int, doing: str) -> None:
        self.bus_errors += 1
        delay = backoff_delay(attempt, self.base_s, self.cap_s, self._rng)
        log.warning("bus unreachable; retrying", extra={"doing": doing, "error": str(exc), "attempt": attempt,
                                                        "retry_in_s": round(delay, 3)})
        self._wait(delay)
