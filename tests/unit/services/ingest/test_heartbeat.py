"""The ingestor's heartbeat: one per symbol after each whole second, late enough for the slowest recent event,
and none while the exchange's clock and the ingestor's disagree or a symbol is not ready."""

from __future__ import annotations

import asyncio

import pytest

from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.time import US_PER_SEC
from btcpipe.services.ingest.heartbeat import TransitWindow, heartbeat_loop

T = 1_704_067_200 * US_PER_SEC
MS = 1_000


class _StopError(Exception):
    pass


def run_loop(transit: dict[str, TransitWindow], *, start: int, seconds: int, ready: set[str],
             margin_us: int = 20 * MS) -> list[tuple[int, Heartbeat]]:
    """Run the loop on a fake clock for ``seconds``; (publish time, heartbeat) pairs."""
    now = [start]
    out: list[tuple[int, Heartbeat]] = []

    async def sleep(s: float) -> None:
        now[0] += round(s * US_PER_SEC)
        if now[0] > start + seconds * US_PER_SEC:
            raise _StopError

    async def publish(hb: Heartbeat) -> None:
        out.append((now[0], hb))

    with pytest.raises(_StopError):
        asyncio.run(heartbeat_loop(list(transit), margin_us=margin_us, tolerance_us=500 * MS,
                                   transit=transit.__getitem__, now_us=lambda: now[0], ready=ready.__contains__,
                                   publish=publish, sleep=sleep))
    return out


def window(*transits_us: int, at: int = T) -> TransitWindow:
    w = TransitWindow()
    for k, d in enumerate(transits_us):
        w.observe(at + k * MS, at + k * MS - d)
    return w


def test_a_heartbeat_per_second_waits_the_margin_plus_the_slowest_recent_transit() -> None:
    transit = {"BTCUSDT": window(2 * MS, 9 * MS, 3 * MS), "ETHUSDT": window(1 * MS)}
    beats = run_loop(transit, start=T + 400 * MS, seconds=3, ready={"BTCUSDT", "ETHUSDT"})
    assert [hb.ts_event for _, hb in beats if hb.symbol == "BTCUSDT"] == [T + k * US_PER_SEC for k in (1, 2, 3)]
    assert {hb.symbol for _, hb in beats} == {"BTCUSDT", "ETHUSDT"}
    assert all(at == hb.ts_event + 20 * MS + 9 * MS for at, hb in beats)  # margin + the slowest event seen


def test_no_heartbeat_when_the_clocks_disagree_or_the_symbol_is_not_ready() -> None:
    replayed = window(2 * 365 * 86_400 * US_PER_SEC)  # a recording replayed with its old timestamps
    ahead = window(-300 * MS)  # the exchange's clock runs ahead of ours
    quiet = TransitWindow()  # nothing received in the window
    transit = {"OLD": replayed, "AHEAD": ahead, "QUIET": quiet, "NOTREADY": window(1 * MS), "OK": window(1 * MS)}
    beats = run_loop(transit, start=T + 400 * MS, seconds=2, ready={"OLD", "AHEAD", "QUIET", "OK"})
    assert {hb.symbol for _, hb in beats} == {"OK"}


def test_the_transit_window_forgets_events_older_than_its_window() -> None:
    w = TransitWindow(window_s=5)
    w.observe(T, T - 40 * MS)
    w.observe(T + 3 * US_PER_SEC, T + 3 * US_PER_SEC - 2 * MS)
    assert w.largest(T + 4 * US_PER_SEC) == 40 * MS
    assert w.largest(T + 6 * US_PER_SEC) == 2 * MS
    assert w.largest(T + 20 * US_PER_SEC) is None
    w.observe(0, T)  # unknown receive time: ignored
    assert w.largest(T + 20 * US_PER_SEC) is None
