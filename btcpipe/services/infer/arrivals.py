"""Which feature rows have arrived: inference predicts a second the moment its rows are on ``features-1s``.

The processor writes a row to the online store *before* it publishes it on ``features-1s``, so a row
seen on the stream is readable from the store. Inference reads the stream from its head (``latest``:
only rows of the seconds still to predict matter) and keeps, per second, the symbols whose rows came;
a tick no longer waits a fixed offset after the second's end but only until its rows are in (or the
wait runs out and the fallback takes over). Positions are in memory: a restart starts at the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from btcpipe.bus.consumer import BusConsumer, shards_for_keys
from btcpipe.bus.port import STREAM_FEATURES, Bus
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.wire.codec import decode_feature_vector

_KEEP_S = 30  # seconds of arrivals kept (ticks look at the current second; a late loop a few back)


class RowArrivals:
    """Follows ``features-1s`` for ``symbols`` and answers whether second ``t``'s rows have all arrived."""

    def __init__(self, bus: Bus, symbols: Sequence[str], *, name: str = "inference-rows",
                 start: Literal["earliest", "latest"] = "latest", max_records: int = 1000) -> None:
        self.symbols = frozenset(symbols)
        self._rows: BusConsumer[FeatureVector1s] = BusConsumer(
            bus, STREAM_FEATURES, decode_feature_vector, name=name, positions=InMemoryPositionStore(),
            shards=shards_for_keys(bus, STREAM_FEATURES, symbols), start=start)
        self.max_records = max_records
        self._seen: dict[int, set[str]] = {}
        self.newest = -1  # newest second with an arrived row

    @property
    def skipped(self) -> int:
        """Undecodable payloads passed over."""
        return self._rows.skipped

    def poll(self, block_ms: int = 0) -> int:
        """Read what is new on the stream (``BusError`` propagates); returns the rows of our symbols read."""
        got = self._rows.poll(self.max_records, block_ms)
        return self.add(d.value for d in got)

    def add(self, rows: Iterable[FeatureVector1s]) -> int:
        n = 0
        for row in rows:
            if row.symbol in self.symbols:
                self._seen.setdefault(row.ts_sec, set()).add(row.symbol)
                self.newest = max(self.newest, row.ts_sec)
                n += 1
        if n and len(self._seen) > _KEEP_S:
            horizon = self.newest - _KEEP_S * US_PER_SEC
            for ts in [t for t in self._seen if t < horizon]:
                del self._seen[ts]
        return n

    def arrived(self, ts_sec: int, symbols: Iterable[str]) -> bool:
        """Whether every one of ``symbols`` has its row of second ``ts_sec``."""
        seen = self._seen.get(ts_sec)
        return seen is not None and all(s in seen for s in symbols)
