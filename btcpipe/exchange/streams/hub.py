"""The replay engine behind the local exchange's WebSockets: one task walks every symbol's timeline by
exchange time and fans each event out to the connections subscribed to it.

Each event is encoded once per wire variant that has subscribers (SBE; JSON raw or combined-with-name,
ms or µs) and the same frame object is queued on every subscriber; a writer task per connection drains
its queue. A subscriber whose queue exceeds ``send_queue_limit`` frames is closed (1008, counted) rather
than silently losing frames. New connections join at the current exchange time; nothing is sent twice
and nothing from before they connected. Periodic JSON streams (``periodic.py``) tick on their own grids of
exchange time, in time order with the real-time events; subscriptions change live (``control.py``).

Faults (``StreamControl`` in ``routes.py`` switches them from any thread) act here: skipping the next
trade (or a given trade id) or depth diff for everybody, a garbage frame, dropping connections, a stall; and
at random per event (``random_faults.StreamFaultRates``): garbage, poison, skipped trades/diffs, stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine

from aiohttp import WSCloseCode, web

from btcpipe.binance.sbe_encode import (
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades_event,
)
from btcpipe.domain.errors import MalformedRecordError, StreamError
from btcpipe.domain.records import Trade
from btcpipe.exchange.state import ExchangeState
from btcpipe.exchange.streams.auth import ApiKeys, ConnectionAttemptLimiter
from btcpipe.exchange.streams.connection import Channel, Frame, StreamConfig, StreamStats, Subscriber, Variant
from btcpipe.exchange.streams.formats import (
    PERIODS_US,
    StreamSpec,
    agg_trade_json,
    book_ticker_json,
    combined,
    depth_update_json,
    partial_book_json,
    server_shutdown_json,
    trade_json,
)
from btcpipe.exchange.streams.periodic import PeriodicSource
from btcpipe.exchange.streams.random_faults import (
    STALL_S,
    FaultDraw,
    StreamFaultRates,
    poison_json,
    poison_sbe,
)
from btcpipe.exchange.streams.timeline import KIND_AGG_TRADE, KIND_BBA, KIND_DEPTH, KIND_TRADE, SymbolTimeline

__all__ = ["StreamConfig", "StreamHub", "StreamStats", "Subscriber"]  # the connection types, re-exported

log = logging.getLogger(__name__)

SHUTDOWN_CLOSE_S = 1.0  # at stop: how long stream clients get to answer the close frame

# A frame no SBE decoder accepts: schema id 0xBEEF, template 4242, then noise.
GARBAGE_SBE = bytes.fromhex("1200924aefbe0000") + b"\xde\xad\xbe\xef" * 6
GARBAGE_JSON = '{"e":"trade","E":17'  # truncated JSON
_CATCH_UP_BATCH = 1000
_MAX_WAIT_S = 0.05
_CATCH_UP_US = 60_000_000  # periodic ticks further behind than this are skipped after a clock jump


def _no_sbe() -> bytes:
    raise StreamError("this stream has no SBE form (JSON only)")


class StreamHub:
    """Fans the symbols' timelines out to the open WebSocket connections as the exchange clock advances."""

    def __init__(self, state: ExchangeState, config: StreamConfig) -> None:
        self.state = state
        self.config = config
        self.keys = ApiKeys(config.api_keys)
        self.attempts = ConnectionAttemptLimiter(config.attempt_limit, config.attempt_window_s)
        self.timelines = {
            sym: SymbolTimeline(m.tape, depth20_interval_us=config.depth20_interval_us, aggs=m.aggs)
            for sym, m in state.markets.items()
        }
        self.periodic = {sym: PeriodicSource(state.markets[sym], tl) for sym, tl in self.timelines.items()}
        self._ticks: dict[Channel, int] = {}  # periodic channel with subscribers → its next tick (µs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[Subscriber] = set()
        self._subs: dict[Channel, dict[Variant, set[Subscriber]]] = {}
        self._cond = threading.Condition()
        self._stats = StreamStats()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stall_until = 0.0
        self._skip_next_trades = 0
        self._skip_trade_ids: set[int] = set()
        self._skip_next_depth = 0
        self.random_faults = StreamFaultRates()
        self._poison_count = 0
        self._background: set[asyncio.Task[None]] = set()

    # --- counters (shared with test threads) -------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        with self._cond:
            setattr(self._stats, name, getattr(self._stats, name) + n)
            self._cond.notify_all()

    def stats(self) -> StreamStats:
        with self._cond:
            return self._stats.copy()

    def wait_until(self, predicate: Callable[[StreamStats], bool], timeout: float) -> StreamStats:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._stats), timeout):
                raise TimeoutError(f"stream stats did not reach the condition within {timeout}s: {self._stats}")
            return self._stats.copy()

    # --- lifecycle (aiohttp signals) ------------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._replay(), name="btcpipe-stream-replay")
        self._task.add_done_callback(self._replay_ended)

    def _replay_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Not silent: the streams would go quiet while connections stay open.
            log.error("stream replay stopped", exc_info=task.exception())

    async def on_shutdown(self, app: web.Application) -> None:
        subs = list(self.subscribers)
        closing = [asyncio.ensure_future(self.close(s, WSCloseCode.GOING_AWAY, "exchange stopping")) for s in subs]
        if closing:
            # A client that never answers the close frame must not hold up the exchange's bounded stop.
            _, late = await asyncio.wait(closing, timeout=SHUTDOWN_CLOSE_S)
            for task in late:
                task.cancel()

    async def on_cleanup(self, app: web.Application) -> None:
        for task in [self._task, *self._background]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- subscriptions --------------------------------------------------------------------------------------
    def register(self, sub: Subscriber, specs: list[StreamSpec]) -> None:
        self.subscribers.add(sub)
        self.subscribe(sub, specs)
        with self._cond:
            self._stats.connections_opened += 1
            self._stats.connections_open = len(self.subscribers)
            self._cond.notify_all()

    def subscribe(self, sub: Subscriber, specs: list[StreamSpec]) -> None:
        """Add streams to a connection (a name already there is left as it is); events from now on."""
        for spec in specs:
            if spec.name in sub.streams:
                continue
            channel: Channel = (spec.symbol, spec.kind)
            variant = sub.variant(spec.name)
            self._subs.setdefault(channel, {}).setdefault(variant, set()).add(sub)
            sub.streams[spec.name] = (channel, variant)
            if isinstance(spec.kind, str) and channel not in self._ticks:
                period = PERIODS_US[spec.kind]
                now = self.state.now_us()
                self._ticks[channel] = now - now % period + period

    def unsubscribe(self, sub: Subscriber, names: list[str]) -> None:
        for name in names:
            entry = sub.streams.pop(name, None)
            if entry is None:
                continue
            channel, variant = entry
            by_variant = self._subs.get(channel, {})
            group = by_variant.get(variant)
            if group is not None:
                group.discard(sub)
                if not group:
                    del by_variant[variant]
            if not by_variant:
                self._subs.pop(channel, None)
                self._ticks.pop(channel, None)

    def set_combined(self, sub: Subscriber, flag: bool) -> None:
        """``SET_PROPERTY combined``: re-register every stream of the connection under its new payload form."""
        if sub.sbe or sub.combined == flag:
            sub.combined = flag
            return
        specs = [StreamSpec(name, ch[0], ch[1]) for name, (ch, _) in sub.streams.items()]
        self.unsubscribe(sub, list(sub.streams))
        sub.combined = flag
        self.subscribe(sub, specs)

    def unregister(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        self.unsubscribe(sub, list(sub.streams))
        with self._cond:
            self._stats.connections_open = len(self.subscribers)
            self._cond.notify_all()

    async def close(self, sub: Subscriber, code: int, reason: str) -> None:
        """Close one connection with a close frame; cut the socket if the handshake does not finish."""
        if sub.close_reason is None:
            sub.close_reason = reason
        try:
            await asyncio.wait_for(sub.ws.close(code=code, message=reason.encode()), self.config.close_timeout_s)
        except (TimeoutError, ConnectionError, RuntimeError):
            if sub.transport is not None:
                sub.transport.abort()

    # --- the replay -----------------------------------------------------------------------------------------
    async def _replay(self) -> None:
        clock = self.state.clock
        now = clock.now_us()
        cursors = {sym: tl.position_after(now) for sym, tl in self.timelines.items()}
        assert self._wake is not None
        while True:
            now = clock.now_us()
            emitted = 0
            for sym, tl in self.timelines.items():
                # Periodic ticks interleave with the real-time events in exchange-time order.
                while (due := self._next_tick(sym, now)) is not None:
                    tick, channel = due
                    pos = cursors[sym]
                    cursors[sym] = await self._advance(tl, pos, tl.position_after(tick))
                    emitted += cursors[sym] - pos
                    self._emit_tick(channel, tick)
                pos = cursors[sym]
                cursors[sym] = await self._advance(tl, pos, tl.position_after(now))
                emitted += cursors[sym] - pos
            with self._cond:
                self._stats.events_emitted += emitted
                self._stats.replayed_up_to_us = now
                self._cond.notify_all()
            await self._wait_for_next(now, cursors)

    async def _advance(self, tl: SymbolTimeline, pos: int, stop: int) -> int:
        """Emit the timeline's events ``pos..stop-1``; the new cursor."""
        done = 0
        while pos < stop:
            try:
                self._emit(tl, int(tl.kind[pos]), int(tl.index[pos]))
            except (MalformedRecordError, StreamError, ValueError) as exc:
                self.count("events_unencodable")
                log.error("stream event not encodable, skipped", extra={"symbol": tl.symbol, "error": str(exc)})
            pos += 1
            done += 1
            if done % _CATCH_UP_BATCH == 0:
                await asyncio.sleep(0)  # let pings, handshakes and writers run during a catch-up
        return pos

    def _next_tick(self, symbol: str, now: int) -> tuple[int, Channel] | None:
        due = [(t, ch) for ch, t in self._ticks.items() if ch[0] == symbol and t <= now]
        if not due:
            return None
        tick, channel = min(due, key=lambda d: d[0])
        period = PERIODS_US[str(channel[1])]
        following = tick + period
        if now - following > _CATCH_UP_US:
            following = now - now % period  # the clock jumped far ahead: no use replaying a minute of stale ticks
        self._ticks[channel] = following
        return tick, channel

    def _emit_tick(self, channel: Channel, tick: int) -> None:
        variants = self._subs.get(channel)
        if not variants:
            return
        symbol, kind = channel
        period = PERIODS_US[str(kind)]
        bodies: dict[bool, list[bytes]] = {}
        try:
            for (_, name, micros), subs in variants.items():
                if not subs:
                    continue
                if micros not in bodies:
                    bodies[micros] = self.periodic[symbol].body(str(kind), tick, tick - period, micros)
                raw = bodies[micros]
                if not raw:
                    continue
                frames: list[Frame] = (
                    [combined(name, b) for b in raw] if name is not None else [b.decode() for b in raw]
                )
                for sub in subs:
                    sub.push(frames, self.config.send_queue_limit)
        except (MalformedRecordError, StreamError, ValueError) as exc:
            self.count("events_unencodable")
            log.error("periodic stream body not buildable, skipped", extra={"stream": kind, "error": str(exc)})
        self.count("ticks_emitted")

    async def _wait_for_next(self, now: int, cursors: dict[str, int]) -> None:
        assert self._wake is not None
        upcoming = [int(tl.key[cursors[s]]) for s, tl in self.timelines.items() if cursors[s] < len(tl)]
        upcoming += list(self._ticks.values())
        speed = getattr(self.state.clock, "speed", None)
        if upcoming and isinstance(speed, int | float) and speed > 0:
            wait = min(max((min(upcoming) - now) / speed / 1e6, 0.0), _MAX_WAIT_S)
        else:
            wait = self.config.poll_interval_s
        if wait <= 0:
            await asyncio.sleep(0)
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    def _emit(self, tl: SymbolTimeline, kind: int, index: int) -> None:
        variants = self._subs.get((tl.symbol, kind))
        if not variants:
            return
        draw = self.random_faults.draw(is_trade=kind == KIND_TRADE, is_depth=kind == KIND_DEPTH)
        if draw.garbage or draw.poison or draw.stall:
            self._random_extras(tl.symbol, kind, variants, draw)
        if draw.skip:
            self.count("skipped_random")
            return
        sbe: Callable[[], bytes]
        bodies: Callable[[bool], list[bytes]]
        if kind == KIND_TRADE:
            trades = self._without_skipped(tl.trades_of_group(index))
            if not trades:
                return
            event_time = tl.group_event_time(index)
            sbe = lambda: encode_trades_event(tl.trades_event(trades, event_time))  # noqa: E731
            bodies = lambda micros: [trade_json(t, event_time=event_time, micros=micros) for t in trades]  # noqa: E731
        elif kind == KIND_AGG_TRADE:
            row, agg_time = tl.agg_trade(index)
            sbe = _no_sbe
            bodies = lambda micros: [agg_trade_json(tl.symbol, row, event_time=agg_time, micros=micros)]  # noqa: E731
        elif kind == KIND_BBA:
            bba = tl.best_bid_ask(index)
            sbe = lambda: encode_best_bid_ask(bba)  # noqa: E731
            bodies = lambda micros: [book_ticker_json(bba)]  # noqa: E731
        elif kind == KIND_DEPTH:
            diff = tl.depth_diff(index)
            if self._skip_next_depth:
                self._skip_next_depth -= 1
                with self._cond:
                    self._stats.skipped_depth.append((diff.first_update_id, diff.last_update_id))
                    self._cond.notify_all()
                log.info("fault: depth diff omitted", extra={"U": diff.first_update_id, "u": diff.last_update_id})
                return
            sbe = lambda: encode_depth_diff(diff)  # noqa: E731
            bodies = lambda micros: [depth_update_json(diff, micros=micros)]  # noqa: E731
        else:
            snap = tl.depth20(index)
            if snap is None:
                return
            sbe = lambda: encode_depth_snapshot(snap)  # noqa: E731
            bodies = lambda micros: [partial_book_json(snap)]  # noqa: E731
        sbe_frames: list[Frame] | None = None
        json_bodies: dict[bool, list[bytes]] = {}
        limit = self.config.send_queue_limit
        for (is_sbe, name, micros), subs in variants.items():
            if not subs:
                continue
            frames: list[Frame]
            if is_sbe:
                if sbe_frames is None:
                    sbe_frames = [sbe()]
                frames = sbe_frames
            else:
                if micros not in json_bodies:
                    json_bodies[micros] = bodies(micros)
                raw = json_bodies[micros]
                frames = [combined(name, b) for b in raw] if name is not None else [b.decode() for b in raw]
            for sub in subs:
                sub.push(frames, limit)

    def _random_extras(self, symbol: str, kind: int, variants: dict[Variant, set[Subscriber]], draw: FaultDraw) -> None:
        """Garbage and poison frames for the subscribers of one channel, ahead of its event; a stall."""
        garbage, poison = draw.garbage, draw.poison
        if draw.stall and self.loop is not None:
            self.stall(STALL_S)
        limit = self.config.send_queue_limit + 1
        now = self.state.now_us()
        variant = self._poison_count % 4 if kind == KIND_TRADE else 4 if kind == KIND_BBA else 5
        self._poison_count += 1
        for (is_sbe, name, micros), subs in variants.items():
            frames: list[Frame] = []
            if garbage:
                frames.append(GARBAGE_SBE if is_sbe else GARBAGE_JSON)
            if poison:
                if is_sbe:
                    frames.append(poison_sbe(symbol, now, variant))
                else:
                    body = poison_json(symbol, now, variant, micros=micros)
                    frames.append(combined(name, body) if name is not None else body.decode())
            for sub in subs:
                sub.push(frames, limit)
            if garbage:
                self.count("garbage_sent", len(subs))
            if poison:
                self.count("poison_sent", len(subs))

    def _without_skipped(self, trades: list[Trade]) -> list[Trade]:
        if not self._skip_next_trades and not self._skip_trade_ids:
            return trades
        kept: list[Trade] = []
        for t in trades:
            if self._skip_next_trades or t.id in self._skip_trade_ids:
                if t.id in self._skip_trade_ids:
                    self._skip_trade_ids.discard(t.id)
                else:
                    self._skip_next_trades -= 1
                with self._cond:
                    self._stats.skipped_trade_ids.append(t.id)
                    self._cond.notify_all()
                log.info("fault: trade omitted from the stream", extra={"trade_id": t.id})
            else:
                kept.append(t)
        return kept

    # --- per-connection tasks -------------------------------------------------------------------------------
    async def writer(self, sub: Subscriber) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await sub.ready.wait()
            sub.ready.clear()
            if sub.overflow:
                self.count("closed_slow")
                log.warning("stream client too slow, closing", extra={"ip": sub.ip, "queued": len(sub.queue)})
                sub.queue.clear()
                await self.close(sub, WSCloseCode.POLICY_VIOLATION, "client too slow: send queue full")
                return
            sent = 0
            while sub.queue:
                while self._stall_until > loop.time():
                    await asyncio.sleep(self._stall_until - loop.time())
                frame = sub.queue.popleft()
                if isinstance(frame, bytes):
                    await sub.ws.send_bytes(frame)
                else:
                    await sub.ws.send_str(frame)
                sent += 1
            if sent:
                self.count("frames_sent", sent)

    async def pinger(self, sub: Subscriber) -> None:
        cfg = self.config
        n = 0
        while True:
            await asyncio.sleep(cfg.ping_interval_s)
            n += 1
            sub.ping_payload = str(n).encode()
            sub.pong.clear()
            await sub.ws.ping(sub.ping_payload)
            self.count("pings_sent")
            try:
                await asyncio.wait_for(sub.pong.wait(), cfg.pong_timeout_s)
            except TimeoutError:
                self.count("closed_no_pong")
                log.info("stream client did not pong, closing", extra={"ip": sub.ip})
                await self.close(sub, WSCloseCode.POLICY_VIOLATION, "pong timeout")
                return

    def on_pong(self, sub: Subscriber, payload: bytes) -> None:
        self.count("pongs_received")
        if payload == sub.ping_payload:
            sub.pong.set()

    async def age_limit(self, sub: Subscriber) -> None:
        await asyncio.sleep(self.config.max_connection_age_s)
        self.count("closed_max_age")
        await self.close(sub, WSCloseCode.GOING_AWAY, "maximum connection age reached")

    # --- faults and operator actions (run on the loop; StreamControl marshals calls here) --------------------
    def drop_connections(self) -> int:
        subs = list(self.subscribers)
        for sub in subs:
            sub.close_reason = "dropped (fault)"
            if sub.transport is not None:
                sub.transport.abort()
        self.count("dropped_fault", len(subs))
        return len(subs)

    def send_garbage(self, frame: bytes | None = None, text: str | None = None) -> int:
        for sub in self.subscribers:
            sub.push([frame or GARBAGE_SBE] if sub.sbe else [text or GARBAGE_JSON], self.config.send_queue_limit + 1)
        self.count("garbage_sent", len(self.subscribers))
        return len(self.subscribers)

    def skip_trade(self, trade_id: int | None) -> None:
        if trade_id is None:
            self._skip_next_trades += 1
        else:
            self._skip_trade_ids.add(trade_id)

    def skip_depth(self, count: int) -> None:
        self._skip_next_depth += count

    def stall(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._stall_until = max(self._stall_until, loop.time() + seconds)
        self.count("stalls")

    def server_shutdown(self, grace_s: float | None) -> int:
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        now = self.state.now_us()
        notified = [s for s in self.subscribers if not s.shutdown_notified]
        for sub in notified:
            sub.shutdown_notified = True
            frame = server_shutdown_json(now, micros=sub.sbe or sub.micros, wrapped=sub.combined and not sub.sbe)
            sub.push([frame], self.config.send_queue_limit + 1)
        self.count("shutdowns_sent", len(notified))
        self.spawn(self._close_after(notified, grace))
        return len(notified)

    async def _close_after(self, subs: list[Subscriber], grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        live = [s for s in subs if s in self.subscribers]
        self.count("closed_shutdown", len(live))
        await asyncio.gather(*(self.close(s, WSCloseCode.GOING_AWAY, "server shutdown") for s in live))
