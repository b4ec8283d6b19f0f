"""The processor's tracing: which sampled trade records fed which second, and the spans of each emitted row.

Exists only while tracing is on (the processor holds ``None`` otherwise). A trade record whose bus metadata
names a sampled trace gets a ``bus.consume`` span in that trace; its (first, last) event time is kept per
symbol until the seconds it can belong to have closed. When second t closes ([t−1 s, t) per the feature
contract), its ``features.second`` root span (ids fixed by (symbol, t), see ``btcpipe.infra.tracing``) links to
the consume spans of every kept record whose trades overlap [t−1 s, t).
"""

from __future__ import annotations

from collections.abc import Sequence

from btcpipe.bus.consumer import Delivery
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.domain.time import US_PER_SEC
from btcpipe.infra.tracing import TraceSpan, Tracing, is_sampled
from btcpipe.wire.trade_batches import TradeBatches

MAX_LINKS = 128  # a span's links are bounded by the SDK too; a busy second links to its first 128 frames


class RowSpans:
    """The open root spans of the sampled rows of one emit; store and bus spans hang under the newest."""

    def __init__(self, tracing: Tracing, spans: dict[tuple[str, int], TraceSpan]) -> None:
        self._tracing = tracing
        self._spans = spans
        self._last = list(spans.values())[-1]

    def child(self, name: str, **attributes: str | int) -> TraceSpan:
        return self._tracing.start(name, parent=self._last.traceparent, attributes=attributes)

    def traces(self, vectors: Sequence[FeatureVector1s]) -> list[str | None]:
        """The traceparent each row's bus record carries (None for rows of unsampled seconds)."""
        spans = self._spans
        return [None if (s := spans.get((v.symbol, v.ts_sec))) is None else s.traceparent for v in vectors]

    def end(self) -> None:
        for span in self._spans.values():
            span.end()


class SecondTraces:
    """Consume spans of sampled trade records, kept per symbol until their seconds close."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self._pending: dict[str, list[tuple[int, int, str]]] = {}

    def see_trades(self, deliveries: Sequence[Delivery[bytes]], batches: TradeBatches) -> None:
        counts = batches.counts
        offsets = batches.offsets
        ts_event = batches.ts_event
        for i, delivery in enumerate(deliveries):
            record = delivery.record
            n = int(counts[i])
            if not n or not is_sampled(record.trace):
                continue
            assert record.trace is not None
            start = int(offsets[i])
            symbol = batches.symbols[i]
            span = self.tracing.start("bus.consume", parent=record.trace, attributes={
                "stream": record.stream, "shard": record.shard, "record": record.id, "symbol": symbol, "trades": n})
            span.end()
            self._pending.setdefault(symbol, []).append(
                (int(ts_event[start]), int(ts_event[start + n - 1]), span.traceparent))

    def open_rows(self, vectors: Sequence[FeatureVector1s]) -> RowSpans | None:
        """Root spans for the sampled rows among ``vectors`` (in close order), each linked to its trades."""
        spans: dict[tuple[str, int], TraceSpan] = {}
        for v in vectors:
            pending = self._pending.get(v.symbol)
            links = []
            if pending:
                begin = v.ts_sec - US_PER_SEC
                links = [tp for first, last, tp in pending if first < v.ts_sec and last >= begin]
                # A record whose last trade is before t cannot feed t or any later second.
                self._pending[v.symbol] = [e for e in pending if e[1] >= v.ts_sec]
            span = self.tracing.start_second(v.symbol, v.ts_sec, links=links[:MAX_LINKS],
                                             attributes={"trade_records": len(links)})
            if span is not None:
                spans[(v.symbol, v.ts_sec)] = span
        return RowSpans(self.tracing, spans) if spans else None
