"""The ingestor's heartbeat: "every event of this symbol before second t is on the bus", right after t.

Consumers close second ``t`` once every input has shown it is past ``t`` (``SymbolFeatureState``). In a
busy market the streams show it themselves; in a quiet second nothing arrives and, without a heartbeat,
only wall time + lateness would close it. So ``margin`` after each whole second ``t`` (by the ingestor's
clock) the ingestor publishes ``Heartbeat(symbol, t)`` on ``market-heartbeat``: an event of exchange time
before ``t`` that has not reached it ``margin`` after ``t`` is taken to be lost or late. The margin covers
the exchange → ingestor hop and the clocks' skew (a few ms on loopback; tens of ms to Binance).

The heartbeat goes through the same publisher as the events, after every event received before it, so a
consumer that reads a heartbeat and *then* reads the event streams to their end has seen every event it
vouches for. No heartbeat is sent while the source is down, before a symbol's first trade, or while a
trade gap is open or being filled from REST (its trades would arrive after seconds the heartbeat closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from btcpipe.domain.messages import Heartbeat
from btcpipe.domain.time import US_PER_SEC


async def heartbeat_loop(
    symbols: Sequence[str],
    *,
    margin_us: int,
    now_us: Callable[[], int],
    ready: Callable[[str], bool],
    publish: Callable[[Heartbeat], Awaitable[None]],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Publish ``Heartbeat(symbol, t)`` ``margin_us`` after each whole second ``t`` for every ready symbol."""
    while True:
        now = now_us()
        t = (now - margin_us) // US_PER_SEC * US_PER_SEC + US_PER_SEC  # the next second whose beat is ahead
        await sleep((t + margin_us - now) / US_PER_SEC)
        for symbol in symbols:
            if ready(symbol):
                await publish(Heartbeat(symbol, t))
