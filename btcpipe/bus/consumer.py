"""A consumer over the shards of one stream: decodes payloads, skips bad ones, commits positions.

Delivery is at-least-once: ``poll`` advances positions in memory, ``commit`` persists them to a
``PositionStore``; after a crash the consumer resumes from the last commit and sees again what it had
polled since (consumers de-duplicate by event id). A payload that cannot be decoded is counted in
``skipped``, logged with its record id, and passed over — one bad message never stops a stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from btcpipe.bus.port import Bus, BusRecord, Position, PositionStore
from btcpipe.domain.errors import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T]):
    """One decoded bus record handed to a consumer's caller, with the record it came from."""

    record: BusRecord
    value: T


def shards_for_keys(bus: Bus, stream: str, keys: Iterable[str]) -> list[str]:
    """The shards holding ``keys`` (a processor that owns some symbols reads only these)."""
    wanted = {bus.shard_for(stream, k) for k in keys}
    return [s for s in bus.shards(stream) if s in wanted]


class BusConsumer(Generic[T]):
    """Reads one stream over its shards: polls, decodes, skips and counts bad payloads, commits positions."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        decode: Callable[[bytes], T],
        *,
        name: str,
        positions: PositionStore,
        shards: Sequence[str] | None = None,
        start: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.name = name
        self._decode = decode
        self._store = positions
        self.skipped = 0
        stored = positions.load(name, stream)
        self._positions: dict[str, Position] = {}
        for shard in shards if shards is not None else bus.shards(stream):
            if shard in stored:
                self._positions[shard] = Position(stream, shard, stored[shard])
            elif start == "latest":
                self._positions[shard] = bus.end_position(stream, shard)
            else:
                self._positions[shard] = Position(stream, shard, None)
        self._order = list(self._positions)
        self._next = 0

    @property
    def positions(self) -> dict[str, Position]:
        return dict(self._positions)

    def _take(self, position: Position, max_count: int, block_ms: int, out: list[Delivery[T]]) -> int:
        records, self._positions[position.shard] = self.bus.read(position, max_count, block_ms)
        for record in records:
            try:
                value = self._decode(record.payload)
            except DataError as exc:
                self.skipped += 1
                log.warning(
                    "skipped an undecodable bus payload",
                    extra={"stream": record.stream, "shard": record.shard, "id": record.id, "error": str(exc)},
                )
                continue
            out.append(Delivery(record, value))
        return len(records)

    def poll(self, max_count: int = 1000, block_ms: int = 0) -> list[Delivery[T]]:
        """Up to ``max_count`` records from each shard (shard by shard; in order within a shard)."""
        out: list[Delivery[T]] = []
        if len(self._order) == 1:
            self._take(self._positions[self._order[0]], max_count, block_ms, out)
            return out
        got = sum(self._take(self._positions[s], max_count, 0, out) for s in self._order)
        # Nothing anywhere: wait on the shards in turn, a slice of the budget each.
        deadline = time.monotonic() + block_ms / 1000.0
        slice_ms = max(1, block_ms // max(1, len(self._order)))
        while not got and (remaining := int((deadline - time.monotonic()) * 1000)) > 0:
            shard = self._order[self._next % len(self._order)]
            self._next += 1
            got = self._take(self._positions[shard], max_count, min(slice_ms, remaining), out)
        return out

    def commit(self) -> None:
        """Persist the positions after everything polled so far."""
        self._store.save(
            self.name, self.stream, {s: p.after for s, p in self._positions.items() if p.after is not None}
        )
