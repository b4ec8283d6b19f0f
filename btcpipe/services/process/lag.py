"""Consumer lag in records: how far a consumer's positions are behind the head of each stream.

Sampled at most once per interval (it costs a bus round trip per shard) for the
``btcpipe_consumer_lag_records{stream, consumer}`` gauge that the ``ConsumerLagHigh`` alert watches.
How a shard's lag is counted depends on what its positions are:

- at the head (``end_position`` equals the consumer's position): 0, on every bus that can say so;
- offsets (the in-process bus): the difference;
- Redis stream ids: counted by reading from the consumer's position, at most ``cap`` records (the gauge
  saturates at ``cap``; the alert threshold is well below it);
- anything else (Kinesis sequence numbers, whose head is only a timestamp): unknown, not reported —
  Kinesis has its own ``IteratorAgeMilliseconds`` for this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from btcpipe.bus.consumer import BusConsumer
from btcpipe.bus.port import Bus, Position
from btcpipe.domain.errors import BusError

log = logging.getLogger(__name__)

_REDIS_ID = re.compile(r"\d+-\d+")
DEFAULT_CAP = 10_000


def _offset(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def records_behind(bus: Bus, position: Position, cap: int = DEFAULT_CAP) -> int | None:
    """Records published after ``position`` (None when this bus cannot tell)."""
    head = bus.end_position(position.stream, position.shard).after
    after = position.after
    if head == after:
        return 0
    h, a = _offset(head), -1 if after is None else _offset(after)
    if h is not None and a is not None:
        return max(h - a, 0)
    if head is not None and _REDIS_ID.fullmatch(head) and (after is None or _REDIS_ID.fullmatch(after)):
        records, _ = bus.read(position, cap, 0)
        return len(records)
    return None


class ConsumerLag:
    """Samples how far each consumer is behind the head of its streams."""

    def __init__(self, bus: Bus, consumer: str, interval_us: int, cap: int = DEFAULT_CAP) -> None:
        self.bus = bus
        self.consumer = consumer
        self.interval_us = interval_us
        self.cap = cap
        self.last: dict[str, int] = {}  # stream → records behind, as last sampled
        self._due: int | None = None

    def sample(self, now_us: int, consumers: Sequence[BusConsumer[Any]]) -> dict[str, int]:
        """Per stream, records behind the head summed over the consumer's shards; {} between samples."""
        if self._due is not None and now_us < self._due:
            return {}
        self._due = now_us + self.interval_us
        out: dict[str, int] = {}
        for consumer in consumers:
            total = 0
            try:
                for position in consumer.positions.values():
                    behind = records_behind(self.bus, position, self.cap)
                    if behind is None:
                        break
                    total += behind
                else:
                    out[consumer.stream] = total
            except BusError as exc:
                log.warning("sampling consumer lag failed", extra={"consumer": self.consumer,
                                                                   "stream": consumer.stream, "error": str(exc)})
        self.last.update(out)
        return out
