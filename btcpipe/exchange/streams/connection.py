"""The state of the streams' connections: configuration, counters, and one subscriber's queue and streams.

Kept apart from the replay engine (``hub.py``) so both stay readable; ``routes.py`` and the hub share these.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, fields, replace

from aiohttp import web

from btcpipe.domain.errors import ConfigError
from btcpipe.exchange.streams.control import MessageRateLimit
from btcpipe.exchange.streams.formats import StreamKind

Frame = bytes | str
# (is_sbe, combined stream name or None for a raw /ws connection, µs times)
Variant = tuple[bool, str | None, bool]
Channel = tuple[str, StreamKind]  # (symbol, kind): a timeline kind (int) or a periodic stream (str)


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How the streams behave; the defaults are Binance's."""

    api_keys: frozenset[str] = frozenset()
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_connection_age_s: float = 86_400.0
    attempt_limit: int = 300
    attempt_window_s: float = 300.0
    shutdown_grace_s: float = 5.0
    depth20_interval_us: int = 50_000
    max_streams: int = 1024
    send_queue_limit: int = 200_000
    poll_interval_s: float = 0.005  # replay tick when the clock's speed is unknown (ManualClock)
    close_timeout_s: float = 2.0  # how long a close handshake may take before the socket is cut

    def __post_init__(self) -> None:
        for f in ("ping_interval_s", "pong_timeout_s", "max_connection_age_s", "attempt_window_s",
                  "poll_interval_s", "close_timeout_s"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"StreamConfig.{f} must be positive, got {getattr(self, f)}")
        if self.shutdown_grace_s < 0 or self.depth20_interval_us <= 0 or self.attempt_limit < 1:
            raise ConfigError("StreamConfig: shutdown_grace_s >= 0, depth20_interval_us > 0, attempt_limit >= 1")


@dataclass(slots=True)
class StreamStats:
    """The stream side's counters: connections and why they closed, refusals, events and frames sent, faults."""

    connections_opened: int = 0
    connections_open: int = 0
    refused_401: int = 0
    refused_403: int = 0
    refused_429: int = 0
    refused_bad_request: int = 0
    closed_no_pong: int = 0
    closed_max_age: int = 0
    closed_shutdown: int = 0
    closed_slow: int = 0
    dropped_fault: int = 0
    garbage_sent: int = 0
    poison_sent: int = 0  # poison frames queued (one per subscriber reached)
    skipped_random: int = 0  # events left out by the skip-trade / skip-depth rates
    stalls: int = 0
    shutdowns_sent: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    events_emitted: int = 0
    ticks_emitted: int = 0  # periodic stream bodies built (depth<N>, kline, tickers, merged depth)
    control_requests: int = 0
    closed_message_rate: int = 0  # connections closed for more than 5 incoming messages per second
    events_unencodable: int = 0  # tape rows the wire cannot carry: logged and skipped, the replay goes on
    replayed_up_to_us: int = 0  # the exchange time the replay has sent everything up to
    frames_sent: int = 0
    skipped_trade_ids: list[int] = field(default_factory=list)
    skipped_depth: list[tuple[int, int]] = field(default_factory=list)  # (U, u) of each omitted diff

    def copy(self) -> StreamStats:
        return replace(self, skipped_trade_ids=list(self.skipped_trade_ids), skipped_depth=list(self.skipped_depth))

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Subscriber:
    """One open WebSocket: its queue of frames and what it asked for."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, *, sbe: bool, micros: bool, opened: float
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self.ip = request.remote or "unknown"
        self.sbe = sbe
        self.micros = micros
        self.opened = opened
        self.queue: deque[Frame] = deque()
        self.ready = asyncio.Event()
        self.pong = asyncio.Event()
        self.ping_payload = b""
        self.overflow = False
        self.shutdown_notified = False
        self.close_reason: str | None = None
        self.combined = False  # combined-stream payloads ({"stream":..., "data":...}); JSON only
        self.streams: dict[str, tuple[Channel, Variant]] = {}  # name as subscribed → where it is registered
        self.rate = MessageRateLimit()

    def variant(self, name: str) -> Variant:
        return (self.sbe, name if self.combined and not self.sbe else None, self.micros)

    def push(self, frames: list[Frame], limit: int) -> None:
        if len(self.queue) + len(frames) > limit:
            self.overflow = True
        else:
            self.queue.extend(frames)
        self.ready.set()
