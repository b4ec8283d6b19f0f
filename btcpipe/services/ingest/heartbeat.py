"""The ingestor's heartbeat: "every event of this symbol before second t is on the bus", soon after t.

Consumers close second ``t`` once every input has shown it is past ``t`` (``SymbolFeatureState``). In a
busy market the streams show it themselves; in a quiet second nothing arrives and, without a heartbeat,
only wall time + lateness would close it. So, after each whole second ``t`` of the ingestor's clock, the
ingestor publishes ``Heartbeat(symbol, t)`` on ``market-heartbeat`` once an event of exchange time before
``t`` can no longer be on its way: ``margin`` plus the largest transit (receive time − exchange time)
of the symbol's recent events (``TransitWindow``), which also absorbs the clocks' skew.

A heartbeat is only sent while the two clocks agree: when the recent transit is outside
``[−margin, tolerance]`` — a recording replayed with its old timestamps, an accelerated or slowed exchange
clock, a badly skewed host — none is sent (consumers then close on events and wall time, as without one).

The heartbeat goes through the same publisher as the events, after every event received before it, so a
consumer that reads a heartbeat and *then* reads the event streams to their end has seen every event it
vouches for (``btcpipe.bus.heartbeats``). The ingestor sends none while the source is down, before a
symbol's first trade, or while a trade gap is open or being filled from REST.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.time import US_PER_SEC


class TransitWindow:
    """The largest ``receive − exchange`` time of a symbol's events over the last ``window_s`` seconds."""

    def __init__(self, window_s: int = 10) -> None:
        self.window_s = window_s
        self._by_second: dict[int, int] = {}  # receive second → largest transit seen in it

    def observe(self, ts_recv: int, ts_event: int) -> None:
        if ts_recv <= 0:
            return
        sec = ts_recv // US_PER_SEC
        transit = ts_recv - ts_event
        if transit > self._by_second.get(sec, -(2**62)):
            self._by_second[sec] = transit
            if len(self._by_second) > self.window_s:
                for old in [s for s in self._by_second if s <= sec - self.window_s]:
                    del self._by_second[old]

    def largest(self, now_us: int) -> int | None:
        """The largest recent transit (µs), or None when no event came within the window."""
        lo = now_us // US_PER_SEC - self.window_s
        recent = [d for s, d in self._by_second.items() if s > lo]
        return max(recent) if recent else None


async def heartbeat_loop(
    symbols: Sequence[str],
    *,
    margin_us: int,
    tolerance_us: int,
    transit: Callable[[str], TransitWindow],
    now_us: Callable[[], int],
    ready: Callable[[str], bool],
    publish: Callable[[Heartbeat], Awaitable[None]],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Publish ``Heartbeat(symbol, t)`` after each whole second ``t`` for every ready symbol whose clock agrees."""
    last: dict[str, int] = {}
    while True:
        now = now_us()
        delays = {s: transit(s).largest(now) for s in symbols}
        agreed = {s: max(d, 0) for s, d in delays.items() if d is not None and -margin_us <= d <= tolerance_us}
        wait = margin_us + max(agreed.values(), default=0)
        t = (now - wait) // US_PER_SEC * US_PER_SEC + US_PER_SEC  # the next second whose beat is still ahead
        await sleep((t + wait - now) / US_PER_SEC)
        now = now_us()
        for symbol in agreed:
            d = transit(symbol).largest(now)  # again: events that came while waiting may have been slower
            if d is None or not -margin_us <= d <= tolerance_us or now < t + margin_us + max(d, 0):
                continue
            if last.get(symbol, -1) < t and ready(symbol):
                last[symbol] = t
                await publish(Heartbeat(symbol, t))
