"""Bounded shutdown: one stop request per process, a grace period, and waits that the request cuts short.

Every long-running command makes one ``Shutdown`` and hands it (or its ``wait``/``is_set``) to whatever may
block: the REST client's weight-window and backoff waits, pacing sleeps, polling loops. SIGTERM, SIGINT or
the end of ``--duration`` call ``request(reason)``; from then on those waits return at once, the services
flush what they hold (bronze, bus batches, positions) and the command exits. ``note_unfinished`` records
what could not be finished (an abandoned snapshot request, payloads the bus did not take), for the log and
the command's final statistics (``report()``).

The grace period is a promise to the orchestrator (Kubernetes, ECS and compose wait their own grace period
after SIGTERM, then SIGKILL): ``start_watchdog`` ends the process ``grace_s`` after the request even if a
flush hangs, saying in the log what was still unfinished. Deploy files give the containers more than
``grace_s`` (``tests/deploy`` checks it).

A blocking call that cannot itself be interrupted (a sync HTTP request to a server that does not answer)
runs through ``call_interruptibly`` / ``in_daemon_thread``: the caller stops waiting on a stop request, and
the abandoned daemon thread cannot hold up the interpreter's exit the way an executor thread would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol, TypeVar

from btcpipe.domain.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 5.0
EXIT_OVERRAN = 70  # the watchdog's exit status (EX_SOFTWARE): the graceful path did not finish in time
_POLL_S = 0.05

T = TypeVar("T")


class StopSignal(Protocol):
    """What a blocking component needs to know of a shutdown (``threading.Event`` fits too)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Interrupted(Exception):  # noqa: N818 - it is what happened, not an error of the caller
    """A blocking call was abandoned because a stop was requested."""


@dataclass(slots=True)
class ShutdownReport:
    """What the final statistics say about the stop."""

    reason: str | None = None
    grace_s: float = DEFAULT_GRACE_S
    seconds: float | None = None  # from the request to ``finished()``
    unfinished: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "grace_s": self.grace_s,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "unfinished": list(self.unfinished)}


class Shutdown:
    """A process's stop request: thread-safe, idempotent, with callbacks and a grace deadline."""

    def __init__(self, grace_s: float = DEFAULT_GRACE_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not grace_s > 0:
            raise ConfigError(f"the shutdown grace period must be positive, got {grace_s}")
        self.grace_s = grace_s
        self._clock = clock
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._requested_at: float | None = None
        self._report = ShutdownReport(grace_s=grace_s)
        self._watchdog: threading.Timer | None = None

    # --- the request -------------------------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Ask everything to stop (any thread, a signal handler included). Later calls only log."""
        with self._lock:
            first = self._requested_at is None
            if first:
                self._requested_at = self._clock()
                self._report.reason = reason
                callbacks = list(self._callbacks)
            else:
                callbacks = []
        if not first:
            log.warning("stop already requested; finishing within the grace period",
                        extra={"reason": reason, "remaining_s": round(self.remaining(), 3)})
            return
        log.info("stopping", extra={"reason": reason, "grace_s": self.grace_s})
        self._event.set()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from stopping
                log.exception("stop callback failed")

    def on_request(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the stop is requested (at once if it already was)."""
        with self._lock:
            if self._requested_at is None:
                self._callbacks.append(callback)
                return
        callback()

    # --- StopSignal ----------------------------------------------------------------------------------------
    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds; True (at once) when the stop is or gets requested."""
        return self._event.wait(timeout)

    @property
    def reason(self) -> str | None:
        return self._report.reason

    def remaining(self) -> float:
        """Seconds left of the grace period (the whole period before the request)."""
        if self._requested_at is None:
            return self.grace_s
        return max(0.0, self._requested_at + self.grace_s - self._clock())

    # --- what could not be finished ------------------------------------------------------------------------
    def note_unfinished(self, what: str, **detail: object) -> None:
        """Record (and log) something the stop left undone."""
        text = what if not detail else f"{what} ({', '.join(f'{k}={v}' for k, v in detail.items())})"
        with self._lock:
            self._report.unfinished.append(text)
        log.warning("left unfinished at shutdown", extra={"what": what, **detail})

    def finished(self) -> ShutdownReport:
        """Mark the graceful path done (stops the watchdog); returns the report for the final statistics."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        with self._lock:
            if self._requested_at is not None and self._report.seconds is None:
                self._report.seconds = self._clock() - self._requested_at
            report = ShutdownReport(self._report.reason, self.grace_s, self._report.seconds,
                                    list(self._report.unfinished))
        if report.reason is not None:
            log.info("stopped", extra=report.to_dict())
        return report

    def report(self) -> ShutdownReport:
        with self._lock:
            return ShutdownReport(self._report.reason, self.grace_s, self._report.seconds,
                                  list(self._report.unfinished))

    # --- signals and the watchdog ------------------------------------------------------------------------
    def install_signal_handlers(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """SIGTERM and SIGINT request the stop (through ``loop`` when given, so the loop wakes at once)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(signum).name
            if loop is not None:
                loop.add_signal_handler(signum, self.request, name)
            else:
                def handler(received: int, frame: FrameType | None, name: str = name) -> None:
                    self.request(name)

                signal.signal(signum, handler)

    def start_watchdog(self) -> None:
        """End the process ``grace_s`` after the request if the graceful path has not finished by then."""
        def arm() -> None:
            timer = threading.Timer(self.remaining(), self._overran)
            timer.daemon = True
            timer.name = "btcpipe-shutdown-watchdog"
            self._watchdog = timer
            timer.start()

        self.on_request(arm)

    def _overran(self) -> None:
        with self._lock:
            unfinished = list(self._report.unfinished)
        log.error("shutdown overran its grace period; exiting now",
                  extra={"grace_s": self.grace_s, "reason": self._report.reason, "unfinished": unfinished})
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(EXIT_OVERRAN)


def call_interruptibly(stop: StopSignal, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a daemon thread; raises ``Interrupted`` as soon as ``stop`` is set instead of waiting.

    For blocking calls that cannot be cut short themselves (a sync HTTP request). The abandoned thread keeps
    running until its call returns, but as a daemon it never holds up the exit.
    """
    if stop.is_set():
        raise Interrupted("stop requested")
    done = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="btcpipe-interruptible", daemon=True).start()
    while not done.wait(_POLL_S):
        if stop.is_set():
            raise Interrupted("stop requested")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread`` on a daemon thread: cancelling the await abandons the call, and the thread
    cannot delay the interpreter's exit (the default executor's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        # The loop may be gone by now (the call was abandoned and the loop closed): nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="btcpipe-rest-call", daemon=True).start()
    return await future
