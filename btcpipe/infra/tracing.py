"""Tracing: spans around the pipeline's hops, exported with OpenTelemetry when ``[tracing]`` turns it on.

Off (the default) a service holds ``NO_TRACING``: ``enabled`` is False, the services skip their tracing
branches, and the hot path pays one attribute test per batch and nothing per message. OpenTelemetry is
an optional extra (``pip install btcpipe[tracing]``) imported only by ``open_tracing``.

What is traced, and how the pieces find each other:
- a sampled trade frame: ``ingest.receive`` (from ``ts_recv`` until handed to the publisher) and its child
  ``bus.publish``; the record carries the publish span's W3C ``traceparent`` in its bus metadata
  (``BusRecord.trace``), and the processor's ``bus.consume`` continues that trace;
- a second of features: ``features.second`` is the root of a trace whose ids derive from (symbol, ts_sec)
  (``second_traceparent``), with children ``store.write`` and ``bus.publish`` and links to the consume spans
  of the trades of that second; the inference tick of the same second is a child of the same root
  (``inference.tick`` → ``bus.publish``), so a prediction, its feature row and the row's trades are one
  click apart without the online store carrying any trace data.

Sampling is decided here, not by the SDK: trades by ``sample()`` (a ratio), seconds by a checksum of (symbol,
ts_sec) (the same decision in every process, so the processor and inference trace the same seconds). Only
sampled work creates spans; unsampled work costs a random number (trades) or a crc32 (one per second).
"""

from __future__ import annotations

import contextvars
import hashlib
import random
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from btcpipe.domain.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer

EXPORTERS = ("otlp", "console")
DEFAULT_SAMPLE_RATIO = 0.01  # ~one traced second per 100 s, one frame in 100: < 5 % overhead (docs/OPERATIONS.md)
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
# The ids the next span must take (the deterministic root of a second); read by _FixedIds.
_NEXT_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("btcpipe_next_ids", default=None)

Attributes = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class TracingSettings:
    """The ``[tracing]`` section: off by default; ``exporter`` otlp (OTLP/HTTP to ``endpoint``) or console."""

    enabled: bool = False
    exporter: str = "otlp"
    endpoint: str = DEFAULT_OTLP_ENDPOINT
    sample_ratio: float = DEFAULT_SAMPLE_RATIO

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"tracing.exporter must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ConfigError(f"tracing.sample_ratio must be within [0, 1], got {self.sample_ratio}")
        if self.enabled and self.exporter == "otlp" and not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"tracing.endpoint must be an http(s) URL, got {self.endpoint!r}")


def format_traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def parse_traceparent(text: str) -> tuple[int, int, bool] | None:
    """(trace id, span id, sampled) of a W3C traceparent, or None when it is not one (never raises)."""
    parts = text.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(flags & 1)


def is_sampled(traceparent: str | None) -> bool:
    """A record's metadata names a sampled trace (cheap: looks at the flags only)."""
    return traceparent is not None and traceparent.endswith("-01")


def second_ids(symbol: str, ts_sec: int) -> tuple[int, int]:
    """The trace id and root span id of the second (symbol, ts_sec): the same in every process and run."""
    digest = hashlib.blake2b(f"{symbol}:{ts_sec}".encode(), digest_size=24, person=b"btcpipe-second").digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


class TraceSpan:
    """An open span; exists only while tracing is on and its trace is sampled."""

    __slots__ = ("_span", "span_id", "trace_id", "traceparent")

    def __init__(self, span: Span) -> None:
        self._span = span
        ctx = span.get_span_context()
        self.trace_id = f"{ctx.trace_id:032x}"
        self.span_id = ctx.span_id
        self.traceparent = format_traceparent(ctx.trace_id, ctx.span_id)

    def set(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def end(self, end_ns: int | None = None) -> None:
        self._span.end(end_time=end_ns)


class Tracing:
    """The services' view of tracing: sampling decisions and spans named by traceparent strings."""

    def __init__(self, tracer: Tracer | None = None, provider: TracerProvider | None = None,
                 sample_ratio: float = 0.0) -> None:
        self.enabled = tracer is not None
        self._tracer = tracer
        self._provider = provider
        self._ratio = sample_ratio
        self._bound = round(sample_ratio * (1 << 32))

    def sample(self) -> bool:
        """Head sampling of a new trace (a trade frame)."""
        return self.enabled and random.random() < self._ratio

    def second_traceparent(self, symbol: str, ts_sec: int) -> str | None:
        """The traceparent of the second's root span when the second is sampled, else None."""
        # crc32 decides (cheap, the same everywhere); the ids are only derived for the seconds it keeps.
        if not self.enabled or zlib.crc32(f"{symbol}:{ts_sec}".encode()) >= self._bound:
            return None
        return format_traceparent(*second_ids(symbol, ts_sec))

    def start(self, name: str, *, parent: str | None = None, links: Sequence[str] = (),
              attributes: Attributes | None = None, start_ns: int | None = None) -> TraceSpan:
        """A span under the remote ``parent`` traceparent (None: a new trace), linked to ``links``."""
        from opentelemetry import trace
        from opentelemetry.trace import Link

        assert self._tracer is not None, "start() needs tracing enabled"
        context = None
        if parent is not None and (parsed := _span_context(parent)) is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(parsed))
        span_links = [Link(c) for c in (_span_context(t) for t in links) if c is not None]
        span = self._tracer.start_span(name, context=context, links=span_links, attributes=attributes,
                                       start_time=start_ns)
        return TraceSpan(span)

    def start_second(self, symbol: str, ts_sec: int, *, links: Sequence[str] = (),
                     attributes: Attributes | None = None) -> TraceSpan | None:
        """The root span of a sampled second, with the ids ``second_traceparent`` names; None when unsampled."""
        if self.second_traceparent(symbol, ts_sec) is None:
            return None
        token = _NEXT_IDS.set(second_ids(symbol, ts_sec))
        try:
            return self.start("features.second", links=links,
                              attributes={"symbol": symbol, "ts_sec": ts_sec, **(attributes or {})})
        finally:
            _NEXT_IDS.reset(token)

    def shutdown(self) -> None:
        """Export what is buffered and stop (a service calls it on exit)."""
        if self._provider is not None:
            self._provider.shutdown()


NO_TRACING = Tracing()


def _span_context(traceparent: str) -> SpanContext | None:
    from opentelemetry.trace import SpanContext, TraceFlags

    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, sampled = parsed
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def open_tracing(settings: TracingSettings, service: str, *, exporter: SpanExporter | None = None) -> Tracing:
    """A ``Tracing`` for ``service`` per ``settings`` (``NO_TRACING`` when off). ``exporter`` replaces the
    configured one and exports each span as it ends (tests use the SDK's in-memory exporter)."""
    if not settings.enabled:
        return NO_TRACING
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    except ImportError as exc:
        raise ConfigError("tracing is enabled but OpenTelemetry is not installed: pip install 'btcpipe[tracing]'"
                          ) from exc

    class _FixedIds(RandomIdGenerator):
        """Random ids, except for a second's root span, whose ids are fixed by (symbol, ts_sec)."""

        def generate_trace_id(self) -> int:
            fixed = _NEXT_IDS.get()
            return fixed[0] if fixed is not None else super().generate_trace_id()

        def generate_span_id(self) -> int:
            fixed = _NEXT_IDS.get()
            return fixed[1] if fixed is not None else super().generate_span_id()

    # Sampling happens before a span is started (see the module doc): the SDK records every span it is given.
    provider = TracerProvider(resource=Resource.create({"service.name": f"btcpipe-{service}"}), sampler=ALWAYS_ON,
                              id_generator=_FixedIds())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    return Tracing(provider.get_tracer("btcpipe"), provider, settings.sample_ratio)


def wall_ns_of(perf_ns: int, now_perf_ns: int) -> int:
    """The wall-clock ns of an earlier ``perf_counter_ns`` reading (spans take wall time; durations take perf)."""
    return time.time_ns() - (now_perf_ns - perf_ns)


def exemplar(span: TraceSpan | None) -> dict[str, str] | None:
    """The exemplar labels of a histogram observation made inside ``span`` (Prometheus links it to the trace)."""
    return None if span is None else {"trace_id": span.trace_id}


__all__ = [
    "DEFAULT_SAMPLE_RATIO", "EXPORTERS", "NO_TRACING", "TraceSpan", "Tracing", "TracingSettings", "exemplar",
    "format_traceparent", "is_sampled", "open_tracing", "parse_traceparent", "second_ids", "wall_ns_of",
]
