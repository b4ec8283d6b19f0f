"""Publishing the ingestor's Avro payloads to the bus, batched, in order, without blocking the stream reader.

Payloads wait in one FIFO per (bus stream, key). A single publisher task takes everything waiting and calls
``Bus.publish`` off the event loop (Redis and Kinesis block), so the more arrives while one call is in flight
the bigger the next batch: low latency when quiet, high throughput under load, order per key kept.

With tracing on, a payload may come with an open ``bus.publish`` span: its traceparent travels as the record's
bus metadata and the span ends when the bus has the record (so it covers the queue wait and the call).

A failing bus (``BusError``) is retried with capped backoff; the payloads stay queued (counted, logged) and
``add`` waits once ``max_pending`` payloads are queued, so back-pressure reaches the socket instead of
memory growing without bound. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from btcpipe.bus.port import Bus
from btcpipe.domain.errors import BusError
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.tracing import TraceSpan

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PublishStats:
    """Records and batches the publisher put on the bus, errors, and waits on a full buffer."""

    published: int = 0
    batches: int = 0
    errors: int = 0
    waits_full: int = 0  # times ``add`` waited for room


class BusPublisher:
    """Batches live records per stream and symbol and publishes them to the bus."""

    def __init__(
        self,
        bus: Bus,
        *,
        metrics: Metrics | None = None,
        max_batch: int = 1000,
        max_pending: int = 200_000,
        retry_cap_s: float = 5.0,
        in_thread: bool = True,
        now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_cap_s = retry_cap_s
        self.in_thread = in_thread  # False only for a bus whose publish never blocks (the in-process one)
        self.stats = PublishStats()
        self.failing = False
        self._now_us = now_us
        self._queues: dict[tuple[str, str], list[tuple[bytes, int, TraceSpan | None]]] = {}
        self._pending = 0
        self._traced = 0  # queued payloads with an open span
        self._has_work = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bus-publisher")

    async def add(self, stream: str, key: str, payload: bytes, ts_recv: int, span: TraceSpan | None = None) -> None:
        """Queue one payload; waits while ``max_pending`` are queued (the bus is down or slow). ``span``: the
        payload's open publish span (tracing on and sampled), ended once the bus has it."""
        while self._pending >= self.max_pending:
            self.stats.waits_full += 1
            self._room.clear()
            await self._room.wait()
        self._queues.setdefault((stream, key), []).append((payload, ts_recv, span))
        if span is not None:
            self._traced += 1
        self._pending += 1
        self._idle.clear()
        self._has_work.set()

    async def drain(self) -> None:
        """Wait until everything queued so far is on the bus."""
        if self._pending:
            await self._idle.wait()

    async def close(self, timeout_s: float = 30.0) -> int:
        """Publish what is queued (retrying while the bus fails) for up to ``timeout_s``, then stop.

        Returns how many payloads could not be published (logged as an error when any).
        """
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            log.error("bus still failing at shutdown: payloads not published", extra={"unpublished": self._pending})
        self._closing = True
        if self._task is not None:
            if self._pending:
                self._task.cancel()
            else:
                self._has_work.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self._pending

    async def _run(self) -> None:
        attempt = 0
        while True:
            await self._has_work.wait()
            if self._closing and not self._pending:
                return
            self._has_work.clear()
            work = self._queues
            self._queues = {}
            for (stream, key), items in work.items():
                done = 0
                while done < len(items):
                    chunk = items[done : done + self.max_batch]
                    try:
                        payloads = [p for p, _, _ in chunk]
                        if self._traced:  # only then look at the spans: untraced payloads cost nothing more
                            traces = [None if sp is None else sp.traceparent for _, _, sp in chunk]
                            call = functools.partial(self.bus.publish, stream, key, payloads, traces)
                        else:  # untraced: exactly the call a bus without trace metadata knows
                            call = functools.partial(self.bus.publish, stream, key, payloads)
                        if self.in_thread:
                            await asyncio.to_thread(call)
                        else:
                            call()
                    except BusError as exc:
                        self.stats.errors += 1
                        self.failing = True
                        attempt += 1
                        delay = min(self.retry_cap_s, 0.05 * 2**attempt)
                        log.error("bus publish failed; retrying, nothing dropped",
                                  extra={"stream": stream, "queued": self._pending, "error": str(exc),
                                         "retry_in_s": delay})
                        await asyncio.sleep(delay)
                        continue
                    attempt = 0
                    self.failing = False
                    done += len(chunk)
                    self._pending -= len(chunk)
                    self.stats.published += len(chunk)
                    self.stats.batches += 1
                    if self.metrics is not None:
                        now = self._now_us()
                        hist = self.metrics.ingest_publish_latency.labels(stream)
                        for _, ts_recv, _ in chunk:
                            if ts_recv:
                                hist.observe(max(now - ts_recv, 0) / 1e6)
                    if self._traced:
                        for _, _, span in chunk:
                            if span is not None:
                                span.end()
                                self._traced -= 1
                    if self._pending < self.max_pending:
                        self._room.set()
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
