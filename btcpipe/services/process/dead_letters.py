"""Dead letters: bus payloads the processor cannot decode, set aside with where they were and why.

A payload that does not decode costs only itself. The processor hands it to ``DeadLetters.send``, which
publishes one record to the bus stream ``dead-letters`` (partition key: the source stream), counts it in
``btcpipe_dead_letters_total{stream, reason}`` (reason = the error class) and logs it — at most one line per
(stream, reason) every ``log_interval_s``, with a hex sample. The processor then goes on: its positions move
past the payload like past any other record, so a restart never meets it as a crash again (it may dead-letter
it once more when the restart re-reads its trailing window: delivery is at-least-once).

A dead-letter record is one JSON line, a newline, then the original payload bytes unchanged::

    {"stream":"market-sbe-trade","shard":"0","id":"1733-0","key":"BTCUSDT","reason":"PayloadDecodeError",
     "detail":"corrupt MarketTradeColumns payload: ...","consumer":"processor","ts_us":1733...}\\n<payload>

``read_dead_letter`` splits one back. If the bus refuses the dead letter itself (``BusError``), the payload is
still skipped: counted (``publish_errors``) and logged with its position, never retried in a loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from btcpipe.bus.port import STREAM_DEAD_LETTERS, Bus, BusRecord
from btcpipe.domain.errors import BusError, PayloadDecodeError
from btcpipe.infra.metrics import Metrics

log = logging.getLogger(__name__)

SAMPLE_BYTES = 48  # how much of a payload the log line shows (hex)


@dataclass(slots=True)
class DeadLetterStats:
    """What was set aside: by (source stream, reason); publish failures of the dead letters themselves."""

    sent: int = 0
    by_reason: dict[tuple[str, str], int] = field(default_factory=dict)
    publish_errors: int = 0


def encode_dead_letter(record: BusRecord, reason: str, detail: str, consumer: str, ts_us: int) -> bytes:
    header = {"stream": record.stream, "shard": record.shard, "id": record.id, "key": record.key,
              "reason": reason, "detail": detail[:500], "consumer": consumer, "ts_us": ts_us}
    return orjson.dumps(header) + b"\n" + record.payload


def read_dead_letter(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A dead-letter record → (its JSON header, the original payload)."""
    head, sep, payload = data.partition(b"\n")
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodeError(f"not a dead-letter record: {exc}") from exc
    if not sep or not isinstance(header, dict):
        raise PayloadDecodeError("not a dead-letter record: no JSON header line")
    return header, payload


class DeadLetters:
    """Sets undecodable bus payloads aside on the ``dead-letters`` stream, counted and logged."""

    def __init__(
        self,
        bus: Bus,
        *,
        consumer: str,
        metrics: Metrics | None = None,
        now_us: Callable[[], int] | None = None,
        log_interval_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.consumer = consumer
        self.metrics = metrics
        self.stats = DeadLetterStats()
        self._now_us = now_us or (lambda: time.time_ns() // 1000)
        self._log_interval_s = log_interval_s
        self._monotonic = monotonic
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}  # → (last logged at, not logged since)

    def send(self, record: BusRecord, error: Exception) -> None:
        """Set ``record`` aside because decoding it raised ``error``; never raises."""
        reason = type(error).__name__
        key = (record.stream, reason)
        self.stats.sent += 1
        self.stats.by_reason[key] = self.stats.by_reason.get(key, 0) + 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(record.stream, reason).inc()
        published = True
        try:
            self.bus.publish(STREAM_DEAD_LETTERS, record.stream,
                             [encode_dead_letter(record, reason, str(error), self.consumer, self._now_us())])
        except BusError as exc:
            published = False
            self.stats.publish_errors += 1
            log.error("could not publish a dead letter; the payload is skipped",
                      extra={"stream": record.stream, "shard": record.shard, "id": record.id, "error": str(exc)})
        self._log(record, reason, str(error), published)

    def _log(self, record: BusRecord, reason: str, detail: str, published: bool) -> None:
        key = (record.stream, reason)
        now = self._monotonic()
        last, suppressed = self._logged.get(key, (-float("inf"), 0))
        if now - last < self._log_interval_s:
            self._logged[key] = (last, suppressed + 1)
            return
        self._logged[key] = (now, 0)
        log.warning(
            "undecodable bus payload sent to dead letters",
            extra={"stream": record.stream, "shard": record.shard, "id": record.id, "reason": reason,
                   "detail": detail[:200], "sample": record.payload[:SAMPLE_BYTES].hex(),
                   "bytes": len(record.payload), "published": published, "not_logged_since": suppressed},
        )
