"""Reading the ingestor's heartbeats (``market-heartbeat``) so that they never overtake the events they vouch for.

A heartbeat ``(symbol, t)`` says every event of ``symbol`` before ``t`` has been published — on the *other*
streams. A reader must therefore have read those streams past the point where the heartbeat was published
before it applies the heartbeat. The rule (used by the processor and the inference fallback):

1. ``poll()`` the heartbeat stream *first* in a cycle; what it returns is held;
2. then read the event streams; only if every one of them came back short (caught up with its head, so
   everything published before the heartbeat has been read) does ``release(True)`` hand the held
   heartbeats over; otherwise they wait for a later cycle.

Positions are in memory and the reader starts at the head: an old heartbeat is of no use after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.port import STREAM_HEARTBEAT, Bus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.errors import BusError
from btcpipe.domain.messages import Heartbeat
from btcpipe.wire.codec import decode_heartbeat

log = logging.getLogger(__name__)


class HeartbeatReader:
    """Follows ``market-heartbeat`` for ``symbols``; hands heartbeats over only once the events are read."""

    def __init__(self, bus: Bus, symbols: Sequence[str], *, name: str, max_records: int = 1000) -> None:
        self.symbols = frozenset(symbols)
        self.max_records = max_records
        self._consumer: BusConsumer[Heartbeat] | None
        try:
            self._consumer = BusConsumer(bus, STREAM_HEARTBEAT, decode_heartbeat, name=name,
                                         positions=InMemoryPositionStore(),
                                         shards=shards_for_keys(bus, STREAM_HEARTBEAT, symbols), start="latest")
        except BusError as exc:  # a bus without the stream (an older deployment): close on events and wall time
            log.warning("no heartbeat stream: quiet seconds close on wall time", extra={"error": str(exc)})
            self._consumer = None
        self._held: dict[str, int] = {}
        self.received = 0

    def poll(self) -> None:
        """Read new heartbeats (before the event streams of the same cycle); they are held."""
        if self._consumer is None:
            return
        for d in self._consumer.poll(self.max_records):
            hb = d.value
            if hb.symbol in self.symbols:
                self.received += 1
                self._held[hb.symbol] = max(self._held.get(hb.symbol, -1), hb.ts_event)

    def release(self, caught_up: bool) -> dict[str, int]:
        """The newest held heartbeat per symbol once the event streams are ``caught_up`` (else nothing yet)."""
        if not caught_up or not self._held:
            return {}
        out, self._held = self._held, {}
        return out

    @property
    def live(self) -> bool:
        """Whether heartbeats come at all (a reader may then wait on the events in shorter slices)."""
        return self.received > 0

    @property
    def skipped(self) -> int:
        return 0 if self._consumer is None else self._consumer.skipped
