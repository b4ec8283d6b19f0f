"""An asyncio client for Binance's market-data WebSocket streams (SBE binary, JSON fallback), aiohttp based.

``MarketStreamClient(symbols, settings).run(sink)`` keeps one combined-stream connection alive and hands
every decoded, normalized record (``ws_messages.MarketEvent``) to ``sink`` in order, until ``stop()``.

- SBE at ``{sbe_url}/stream?streams=…`` with the API key in ``X-MBX-APIKEY``. Without a key, or when the
  handshake refuses it (HTTP 401/403), the client uses the public JSON streams at
  ``{json_url}/stream?streams=…&timeUnit=MICROSECOND`` for the rest of the run and says so with a WARNING.
  The key is never logged, never put in a URL and kept out of ``repr``.
- Pings are answered by aiohttp (``autoping``: a pong carrying the ping's payload).
- Reconnects with the one capped exponential backoff with equal jitter (``domain.backoff.backoff_delay``).
- ``serverShutdown`` and the connection's maximum age are handled the same way: a NEW connection is opened
  first while the old one keeps delivering; once the old one has caught up with where the new one began
  (per stream: the old's last id + 1 >= the new's first id) the old one is closed and what the new one
  buffered is released. A filter drops every event already delivered (trade ids, depth ``u``, book update
  ids), so the overlap gives no duplicates and, as long as the old one reaches the new one's start, no loss.
- A silence watchdog reconnects a connection that delivered nothing for ``silence_timeout_s``.
- Undecodable frames are counted, logged (the first ones, then every 1000th) and skipped.

Gaps left by a dropped connection are not this client's business: it delivers what arrives, and the
ingestor sees the trade-id / ``U``-``u`` gaps and repairs them from REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_messages import (
    KINDS,
    MarketEvent,
    WireMode,
    decode_binary,
    decode_text,
    event_id_range,
    event_kind,
    stream_names,
)
from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import AuthRefusedError, ConfigError, DataError, StreamError
from btcpipe.infra.metrics import Metrics

log = logging.getLogger(__name__)

Sink = Callable[[MarketEvent], Awaitable[None]]
API_KEY_HEADER = "X-MBX-APIKEY"


@dataclass(frozen=True)
class StreamSettings:
    """Where the streams are and how patient to be. ``api_key`` is a secret: never printed."""

    sbe_url: str  # ws base of the SBE streams, e.g. wss://stream-sbe.binance.com:9443
    json_url: str  # ws base of the JSON streams, e.g. wss://stream.binance.com:9443
    api_key: str | None = field(default=None, repr=False)
    kinds: tuple[str, ...] = ("trade", "bestBidAsk", "depth")
    silence_timeout_s: float = 30.0
    max_connection_age_s: float = 24 * 3600.0
    rotate_before_s: float = 600.0  # open the replacement this long before the server's age limit
    overlap_timeout_s: float = 10.0  # give up waiting for the old connection to catch up after this
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    open_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in KINDS:
                raise ConfigError(f"unknown stream kind {kind!r} (known: {', '.join(KINDS)})")
        if self.silence_timeout_s <= 0 or self.backoff_base_s <= 0 or self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("silence timeout and backoff must be positive, and the cap at least the base")
        if not 0 <= self.rotate_before_s < self.max_connection_age_s:
            raise ConfigError("rotate_before_s must be at least 0 and less than max_connection_age_s")


@dataclass(slots=True)
class StreamClientStats:
    """What the stream client has seen: frames, events, decode errors, duplicates, connections and fallbacks."""

    frames: int = 0  # WebSocket data frames received
    events: int = 0  # records handed to the sink
    decode_errors: int = 0
    duplicates_dropped: int = 0  # events (or trades) already delivered, dropped by the overlap filter
    connections_opened: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)  # by reason
    fallbacks_to_json: int = 0
    rotation_timeouts: int = 0  # replacements taken before the old connection caught up
    decode_errors_by_type: dict[str, int] = field(default_factory=dict)


class DeliveredFilter:
    """Drops what was already delivered, per (symbol, kind): the de-duplication of overlaps and reconnects."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}

    def admit(self, event: MarketEvent) -> MarketEvent | None:
        """The part of ``event`` not yet delivered (None: all of it was), and remember it as delivered."""
        key = (event.symbol, event_kind(event))
        last = self.last.get(key)
        first_id, last_id = event_id_range(event)
        if isinstance(event, TradesEvent):
            if not event.trades:
                return None
            if last is not None and first_id <= last:
                fresh = tuple(t for t in event.trades if t.id > last)
                if not fresh:
                    return None
                event = event._replace(trades=fresh)
                last_id = fresh[-1].id
        elif last is not None and last_id <= last:
            return None
        self.last[key] = last_id if last is None else max(last, last_id)
        return event


DECODE_LOG_INTERVAL_S = 1.0  # undecodable frames: at most one log line per error class per interval
_CLOSED = "closed"
_SHUTDOWN = "server_shutdown"
_STOP = "stop"


class _Connection:
    """One open WebSocket and the task reading it into the client's queue."""

    def __init__(self, number: int, ws: aiohttp.ClientWebSocketResponse, mode: WireMode, opened_at: float) -> None:
        self.number = number
        self.ws = ws
        self.mode: WireMode = mode
        self.opened_at = opened_at
        self.last_data_at = opened_at
        self.received_data = False
        self.first_ids: dict[tuple[str, str], int] = {}  # first id of each stream (for the overlap check)
        self.last_ids: dict[tuple[str, str], int] = {}  # last id delivered of each stream
        self.pending: list[MarketEvent] = []  # a replacement's events, held until the switch
        self.reader: asyncio.Task[None] | None = None

    def note(self, event: MarketEvent) -> None:
        key = (event.symbol, event_kind(event))
        first_id, last_id = event_id_range(event)
        self.first_ids.setdefault(key, first_id)
        self.last_ids[key] = last_id

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            await self.ws.close()


class MarketStreamClient:
    """See the module docstring. ``mode`` is ``"sbe"`` or ``"json"`` (after a fallback)."""

    def __init__(
        self,
        symbols: tuple[str, ...] | list[str],
        settings: StreamSettings,
        *,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        now_us: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not symbols:
            raise ConfigError("the stream client needs at least one symbol")
        self.symbols = tuple(s.upper() for s in symbols)
        self.settings = settings
        self.metrics = metrics
        self.stats = StreamClientStats()
        self.mode: WireMode = "sbe" if settings.api_key else "json"
        self._rng = rng or random.Random()
        self._now_us = now_us or (lambda: time.time_ns() // 1000)
        self._monotonic = monotonic
        self._filter = DeliveredFilter()
        self._queue: asyncio.Queue[tuple[_Connection | None, object]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._numbers = 0
        self._session: aiohttp.ClientSession | None = None
        self._current: _Connection | None = None
        self._decode_logged: dict[str, tuple[float, int]] = {}  # error class → (last logged at, not logged since)
        if not settings.api_key:
            self._warn_json("no API key configured")

    # --- public --------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._current is not None and not self._current.ws.closed

    def url(self, mode: WireMode | None = None) -> str:
        mode = mode or self.mode
        base = (self.settings.sbe_url if mode == "sbe" else self.settings.json_url).rstrip("/")
        url = f"{base}/stream?streams={'/'.join(stream_names(self.symbols, self.settings.kinds, mode))}"
        return url if mode == "sbe" else url + "&timeUnit=MICROSECOND"

    def stop(self) -> None:
        """Ask ``run`` to return (safe from any thread)."""
        self._stopping = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._queue.put_nowait((None, _STOP))
        else:
            loop.call_soon_threadsafe(self._queue.put_nowait, (None, _STOP))

    async def run(self, sink: Sink) -> None:
        """Stream into ``sink`` until ``stop()``; errors of the sink propagate, network errors never do."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        if self._stopping:
            return
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.open_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                await self._supervise(sink)
            finally:
                if self._current is not None:
                    await self._current.close()
                    self._current = None
                self._session = None

    # --- connection lifecycle ---------------------------------------------------------------------------
    def _warn_json(self, why: str) -> None:
        log.warning(
            "SBE market-data streams unavailable (%s): using the public JSON streams instead; "
            "book tickers carry no exchange time on JSON and decoding costs more",
            why,
            extra={"symbols": list(self.symbols), "json_url": self.settings.json_url},
        )

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.settings.backoff_base_s, self.settings.backoff_cap_s, self._rng)

    def _count_reconnect(self, reason: str, mode: WireMode) -> None:
        self.stats.reconnects[reason] = self.stats.reconnects.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.ingest_reconnects.labels(mode, reason).inc()

    async def _wait_or_stop(self, seconds: float) -> None:
        deadline = self._monotonic() + seconds
        while not self._stopping:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            if item[1] == _STOP:
                return

    async def _open(self) -> _Connection:
        """Open a connection in the current mode, falling back to JSON once if the SBE key is refused."""
        if self.mode == "sbe":
            try:
                return await self._open_mode("sbe")
            except AuthRefusedError as exc:
                self.mode = "json"
                self.stats.fallbacks_to_json += 1
                self._warn_json(f"the SBE endpoint refused the API key: {exc}")
        return await self._open_mode("json")

    async def _open_mode(self, mode: WireMode) -> _Connection:
        assert self._session is not None
        headers = {API_KEY_HEADER: self.settings.api_key} if mode == "sbe" and self.settings.api_key else {}
        url = self.url(mode)
        try:
            ws = await self._session.ws_connect(
                url, headers=headers, autoping=True, heartbeat=None, max_msg_size=16 * 2**20
            )
        except aiohttp.WSServerHandshakeError as exc:
            # Only the status: the exception's request_info holds the request headers, the key among them.
            if exc.status in (401, 403):
                raise AuthRefusedError(f"handshake refused with HTTP {exc.status}", status=exc.status) from None
            retry = float(exc.headers.get("Retry-After", 0) or 0) if exc.headers else 0.0
            error = StreamError(f"{mode} stream handshake failed with HTTP {exc.status}", status=exc.status)
            error.retry_after = retry  # type: ignore[attr-defined]
            raise error from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StreamError(f"cannot connect to the {mode} streams at {url}: {type(exc).__name__}: {exc}") from None
        self._numbers += 1
        self.stats.connections_opened += 1
        conn = _Connection(self._numbers, ws, mode, self._monotonic())
        conn.reader = asyncio.create_task(self._read(conn), name=f"ws-reader-{conn.number}")
        log.info("stream connected", extra={"mode": mode, "url": url, "connection": conn.number})
        return conn

    async def _supervise(self, sink: Sink) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = await self._open()
            except StreamError as exc:
                attempt += 1
                delay = max(self._backoff(attempt), float(getattr(exc, "retry_after", 0.0)))
                log.warning(
                    "stream connect failed; retrying",
                    extra={"error": str(exc), "attempt": attempt, "retry_in_s": round(delay, 3)},
                )
                await self._wait_or_stop(delay)
                continue
            self._current = conn
            reason = await self._pump(conn, sink)
            ended = self._current
            self._current = None
            if ended is not None:
                await ended.close()
            if reason == _STOP or self._stopping:
                return
            self._count_reconnect(reason, ended.mode if ended is not None else self.mode)
            attempt = 1 if ended is not None and ended.received_data else attempt + 1
            delay = self._backoff(attempt)
            log.warning("stream lost; reconnecting", extra={"reason": reason, "retry_in_s": round(delay, 3)})
            await self._wait_or_stop(delay)

    # --- reading ---------------------------------------------------------------------------------------
    async def _read(self, conn: _Connection) -> None:
        put = self._queue.put_nowait
        ws = conn.ws
        try:
            while True:
                msg = await ws.receive()
                ts_recv = self._now_us()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.stats.frames += 1
                    try:
                        event = decode_binary(msg.data, ts_recv)
                    except Exception as exc:  # one bad frame costs only itself, never the connection
                        self._decode_error(conn, exc, msg.data)
                        continue
                    put((conn, event))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self.stats.frames += 1
                    try:
                        item = decode_text(msg.data, ts_recv)
                    except Exception as exc:  # as above: counted and skipped
                        self._decode_error(conn, exc, msg.data)
                        continue
                    if item == "server_shutdown":
                        log.info("serverShutdown received", extra={"connection": conn.number})
                        put((conn, _SHUTDOWN))
                    elif item != "ignored":
                        put((conn, item))
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.ERROR):
                    log.info("stream closed by peer", extra={"connection": conn.number, "close_code": ws.close_code})
                    break
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("stream read failed", extra={"connection": conn.number, "error": repr(exc)})
        finally:
            put((conn, _CLOSED))

    def _decode_error(self, conn: _Connection, exc: Exception, data: bytes | str) -> None:
        """Count a frame that did not decode (by error class: the ``error`` label of
        ``btcpipe_ingest_decode_errors_total``) and log it — at most once per ``DECODE_LOG_INTERVAL_S`` per
        error class, with a short sample and how many were not logged since — then carry on reading."""
        # A decoder bug (an exception outside the error tree) is counted under its own class, logged at
        # ERROR with its traceback, and costs the frame only: the stream goes on.
        name = type(exc).__name__ if isinstance(exc, DataError) else f"unexpected:{type(exc).__name__}"
        self.stats.decode_errors += 1
        self.stats.decode_errors_by_type[name] = self.stats.decode_errors_by_type.get(name, 0) + 1
        if self.metrics is not None:
            self.metrics.ingest_decode_errors.labels(conn.mode, name).inc()
        now = self._monotonic()
        last, suppressed = self._decode_logged.get(name, (-float("inf"), 0))
        if now - last < DECODE_LOG_INTERVAL_S:
            self._decode_logged[name] = (last, suppressed + 1)
            return
        self._decode_logged[name] = (now, 0)
        sample = data[:48].hex() if isinstance(data, bytes) else data[:120]
        log.log(
            logging.WARNING if isinstance(exc, DataError) else logging.ERROR,
            "undecodable stream frame skipped",
            extra={"mode": conn.mode, "error": name, "detail": str(exc)[:200], "bytes": len(data),
                   "sample": sample, "not_logged_since": suppressed, "decode_errors": self.stats.decode_errors},
            exc_info=None if isinstance(exc, DataError) else exc,
        )

    async def _emit(self, event: MarketEvent, sink: Sink) -> None:
        admitted = self._filter.admit(event)
        if admitted is None:
            self.stats.duplicates_dropped += 1
            return
        if admitted is not event:
            self.stats.duplicates_dropped += 1
        self.stats.events += 1
        await sink(admitted)

    # --- the pump: one live connection, and during a rotation its replacement ------------------------------
    def _rotation_due(self, conn: _Connection, now: float) -> bool:
        s = self.settings
        return now - conn.opened_at >= max(s.max_connection_age_s - s.rotate_before_s, 0.0)

    @staticmethod
    def _caught_up(old: _Connection, new: _Connection) -> bool:
        """Every stream the old connection carries has reached where the new connection's copy begins."""
        if not new.received_data:
            return False
        for key, last in old.last_ids.items():
            first = new.first_ids.get(key)
            if first is None or last + 1 < first:
                return False
        return True

    async def _switch(self, old: _Connection, new: _Connection, reason: str, sink: Sink) -> _Connection:
        await old.close()
        self._count_reconnect(reason, old.mode)
        log.info("stream connection replaced", extra={"reason": reason, "old": old.number, "new": new.number,
                                                      "buffered": len(new.pending)})
        pending, new.pending = new.pending, []
        self._current = new
        new.last_data_at = self._monotonic()
        for event in pending:
            await self._emit(event, sink)
        return new

    async def _pump(self, cur: _Connection, sink: Sink) -> str:
        s = self.settings
        nxt: _Connection | None = None
        rotate_reason: str | None = None
        retry_rotation_at = 0.0
        overlap_deadline = 0.0
        while True:
            if self._stopping:
                if nxt is not None:
                    await nxt.close()
                return _STOP
            now = self._monotonic()
            if rotate_reason is None and self._rotation_due(cur, now):
                rotate_reason = "max_age"
            if rotate_reason is not None and nxt is None and now >= retry_rotation_at:
                try:
                    nxt = await self._open()
                    overlap_deadline = self._monotonic() + s.overlap_timeout_s
                except StreamError as exc:
                    retry_rotation_at = now + self._backoff(2)
                    log.warning("replacement connection failed; the old one stays for now", extra={"error": str(exc)})
                now = self._monotonic()
            deadlines = [cur.last_data_at + s.silence_timeout_s]
            if nxt is not None:
                deadlines.append(overlap_deadline)
            elif rotate_reason is not None:
                deadlines.append(retry_rotation_at)
            else:
                deadlines.append(cur.opened_at + max(s.max_connection_age_s - s.rotate_before_s, 0.0))
            timeout = max(min(deadlines) - now, 0.0)
            try:
                # get_nowait first: under load the queue is rarely empty, and wait_for costs a task per call
                conn, item = self._queue.get_nowait() if self._queue.qsize() else await asyncio.wait_for(
                    self._queue.get(), timeout
                )
            except TimeoutError:
                now = self._monotonic()
                if nxt is not None and now >= overlap_deadline:
                    self.stats.rotation_timeouts += 1
                    log.warning("old connection did not catch up with its replacement; switching anyway",
                                extra={"old": cur.number, "new": nxt.number})
                    cur = await self._switch(cur, nxt, rotate_reason or "rotation", sink)
                    nxt, rotate_reason = None, None
                elif now - cur.last_data_at >= s.silence_timeout_s:
                    log.warning("stream silent; reconnecting", extra={"connection": cur.number,
                                                                      "silent_s": round(now - cur.last_data_at, 3)})
                    if nxt is not None:
                        await nxt.close()
                    return "silence"
                continue
            if item == _STOP:
                continue
            if conn is cur:
                if item == _CLOSED:
                    if nxt is not None:
                        cur = await self._switch(cur, nxt, rotate_reason or "closed", sink)
                        nxt, rotate_reason = None, None
                        continue
                    return "closed"
                if item == _SHUTDOWN:
                    rotate_reason = rotate_reason or "server_shutdown"
                    continue
                event: MarketEvent = item  # type: ignore[assignment]
                cur.last_data_at = self._monotonic()
                cur.received_data = True
                cur.note(event)
                await self._emit(event, sink)
                if nxt is not None and self._caught_up(cur, nxt):
                    cur = await self._switch(cur, nxt, rotate_reason or "rotation", sink)
                    nxt, rotate_reason = None, None
            elif nxt is not None and conn is nxt:
                if item == _CLOSED:
                    log.warning("replacement connection closed before the switch", extra={"connection": nxt.number})
                    nxt = None
                    retry_rotation_at = self._monotonic() + self._backoff(2)
                    continue
                if item == _SHUTDOWN:
                    continue
                event = item  # type: ignore[assignment]
                nxt.received_data = True
                nxt.note(event)
                nxt.pending.append(event)
                if self._caught_up(cur, nxt):
                    cur = await self._switch(cur, nxt, rotate_reason or "rotation", sink)
                    nxt, rotate_reason = None, None
            # anything else comes from a connection already replaced: covered by its successor
