"""Where a restarted processor resumes reading: per shard, the position before the records that still
matter (those whose events are at most the rewind window older than the oldest symbol's last row)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from btcpipe.bus.consumer import Delivery
from btcpipe.domain.time import US_PER_SEC


class Rewind:
    """Per shard, (first event time, position before the record) of the records read, oldest first."""

    def __init__(self, start: dict[str, str | None]) -> None:
        self._marks: dict[str, deque[tuple[int, str | None]]] = {s: deque([(-1, a)]) for s, a in start.items()}
        self._last: dict[str, str | None] = dict(start)
        self._last_sec: dict[str, int] = {}  # second of the last record seen with events, per shard

    def see_poll(self, deliveries: Sequence[Delivery[bytes]], first_ts: npt.NDArray[np.int64]) -> None:
        """Note a poll's records: a mark (first event time, position before it) only where a record starts
        a new second (``first_ts`` −1: a record without events).

        ``positions`` then answers with the first record of a second instead of the exact record: never
        a later position, so a restart re-reads at most a second more (and de-duplicates it).
        """
        if not deliveries:
            return
        shards = [d.record.shard for d in deliveries]
        ids = [d.record.id for d in deliveries]
        cuts = [0, *(i for i in range(1, len(shards)) if shards[i] != shards[i - 1]), len(shards)]
        for a, b in itertools.pairwise(cuts):
            shard = shards[a]
            ts = first_ts[a:b]
            at = np.flatnonzero(ts >= 0)
            if at.size:
                sec = ts[at] // US_PER_SEC
                prev = self._last_sec.get(shard)
                new = np.concatenate(([prev is None or int(sec[0]) != prev], sec[1:] != sec[:-1]))
                marks = self._marks.setdefault(shard, deque())
                for k in at[new].tolist():
                    marks.append((int(ts[k]), ids[a + k - 1] if k else self._last.get(shard)))
                self._last_sec[shard] = int(sec[-1])
            self._last[shard] = ids[b - 1]

    def positions(self, cutoff_us: int) -> dict[str, str]:
        """Per shard, the position before the newest record starting at or before ``cutoff_us``."""
        out: dict[str, str] = {}
        for shard, marks in self._marks.items():
            while len(marks) > 1 and marks[1][0] <= cutoff_us:
                marks.popleft()
            after = marks[0][1]
            if after is not None:
                out[shard] = after
        return out
