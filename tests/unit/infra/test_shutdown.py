"""The process's stop request: callbacks once, waits cut short, what was left undone, the watchdog's bound, and
blocking calls abandoned on a stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.infra.shutdown import EXIT_OVERRAN, Interrupted, Shutdown, call_interruptibly, in_daemon_thread


def test_request_runs_each_callback_once_and_later_ones_at_once() -> None:
    shutdown = Shutdown(2.0)
    calls: list[str] = []
    shutdown.on_request(lambda: calls.append("early"))
    shutdown.request("SIGTERM")
    shutdown.request("SIGINT")  # a second signal changes nothing
    shutdown.on_request(lambda: calls.append("late"))
    assert calls == ["early", "late"]
    assert shutdown.reason == "SIGTERM"
    assert shutdown.is_set()


def test_wait_returns_as_soon_as_the_stop_is_requested() -> None:
    shutdown = Shutdown()
    threading.Timer(0.1, shutdown.request, ("duration",)).start()
    started = time.monotonic()
    assert shutdown.wait(30.0) is True
    assert time.monotonic() - started < 10.0
    assert Shutdown().wait(0.01) is False


def test_remaining_counts_down_from_the_request() -> None:
    now = [10.0]
    shutdown = Shutdown(5.0, clock=lambda: now[0])
    assert shutdown.remaining() == 5.0
    shutdown.request("SIGTERM")
    now[0] += 2.0
    assert shutdown.remaining() == 3.0
    now[0] += 9.0
    assert shutdown.remaining() == 0.0


def test_the_report_says_what_was_left_undone_and_how_long_the_stop_took() -> None:
    now = [0.0]
    shutdown = Shutdown(5.0, clock=lambda: now[0])
    shutdown.request("SIGTERM")
    shutdown.note_unfinished("depth_snapshot requests given up", count=1)
    now[0] = 1.25
    report = shutdown.finished().to_dict()
    assert report == {"reason": "SIGTERM", "grace_s": 5.0, "seconds": 1.25,
                      "unfinished": ["depth_snapshot requests given up (count=1)"]}


def test_a_grace_period_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="positive"):
        Shutdown(0)


def test_the_watchdog_ends_a_process_whose_stop_hangs_after_the_grace_period() -> None:
    code = (
        "import time\n"
        "from btcpipe.infra.logs import configure_logging\n"
        "from btcpipe.infra.shutdown import Shutdown\n"
        "configure_logging(service='test')\n"
        "s = Shutdown(0.5)\n"
        "s.start_watchdog()\n"
        "s.request('SIGTERM')\n"
        "s.note_unfinished('a flush that hangs')\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ), check=False)
    assert done.returncode == EXIT_OVERRAN
    assert time.monotonic() - started < 30.0  # not the minute of the hanging flush
    assert "shutdown overran its grace period" in done.stderr
    assert "a flush that hangs" in done.stderr


def test_the_watchdog_stands_down_when_the_stop_finishes_in_time() -> None:
    code = (
        "from btcpipe.infra.shutdown import Shutdown\n"
        "s = Shutdown(0.3)\n"
        "s.start_watchdog()\n"
        "s.request('SIGTERM')\n"
        "s.finished()\n"
        "import time; time.sleep(0.6)\n"
        "print('clean')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_call_interruptibly_returns_the_value_or_the_error_and_gives_up_on_a_stop() -> None:
    stop = threading.Event()
    assert call_interruptibly(stop, lambda x: x + 1, 41) == 42
    with pytest.raises(KeyError):
        call_interruptibly(stop, {}.__getitem__, "missing")
    release = threading.Event()
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(Interrupted):
        call_interruptibly(stop, release.wait, 30.0)
    release.set()


def test_in_daemon_thread_can_be_abandoned_without_holding_up_the_loop() -> None:
    release = threading.Event()

    async def main() -> tuple[int, bool]:
        value = await in_daemon_thread(lambda: 7)
        task = asyncio.ensure_future(in_daemon_thread(release.wait, 30.0))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return value, True
        return value, False

    started = time.monotonic()
    assert asyncio.run(main()) == (7, True)
    assert time.monotonic() - started < 10.0  # asyncio.run did not wait for the abandoned call
    release.set()
