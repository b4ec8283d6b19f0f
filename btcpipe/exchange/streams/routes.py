"""The local exchange's WebSocket market-data streams: Binance's SBE streams and its public JSON streams.

URL layout (same aiohttp app and port as REST; ``ex.ws_url`` is ``ws://127.0.0.1:<port>``):

- SBE, binary frames, an ``X-MBX-APIKEY`` header from the configured set required:
  ``/ws/<stream>`` and ``/stream?streams=<s1>/<s2>/...`` with ``<symbol>@trade`` (template 10000, the
  fills of one match in one frame), ``@bestBidAsk`` (10001), ``@depth`` (10003 diffs), ``@depth20``
  (10002, top 20 every 50 ms of tape time). A combined SBE stream sends the same bare frames (the frame
  says what it is). All times µs.
- JSON, text frames, no key: ``/json/ws/<stream>`` and ``/json/stream?streams=...`` with ``<symbol>@trade``,
  ``@bookTicker``, ``@depth`` / ``@depth@100ms`` (``depthUpdate``), ``@depth20`` / ``@depth20@100ms`` (partial
  book); combined frames are ``{"stream": <name as requested>, "data": ...}``; ``?timeUnit=MICROSECOND``
  gives µs times (default ms). Symbols lowercase in names.
- Bare ``/ws``, ``/stream`` (and ``/json/...``), or a path segment without ``@`` (ccxt's ``/ws/0``), open a
  connection with no stream; on any connection ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` /
  ``SET_PROPERTY``/``GET_PROPERTY combined`` text frames act live (``control.py``), at most 5 incoming
  messages (pings, pongs, control frames) a second, else the connection is closed (1008). More JSON streams
  (aggTrade, klines, partial books, tickers) are listed in ``formats.py``.
- Refusals before the upgrade: 401 (no key) / 403 (unknown key) on SBE, 400 (unknown stream or symbol),
  429 + ``Retry-After`` beyond ``attempt_limit`` connection attempts per ``attempt_window_s`` per IP.
- ``serverShutdown`` is a text frame ``{"e":"serverShutdown","E":...}`` (µs on SBE and on JSON with
  ``timeUnit=MICROSECOND``, else ms), wrapped ``{"stream":"!serverShutdown","data":...}`` on combined JSON;
  the server closes those connections (1001) after the grace period.
  Pings carry a counter payload; a pong with that payload must come back within ``pong_timeout_s`` or the
  server closes with 1008. Connections older than ``max_connection_age_s`` are closed with 1001.

LocalExchange hooks (``btcpipe.exchange.server.LocalExchange``)::

    from btcpipe.infra.clocks import ReplayClock
    from btcpipe.exchange.streams.routes import StreamConfig, replay_clock
    clock = replay_clock(tape, speed=10.0, start_offset_s=30.0)   # tape time advances 10x from 30 s in
    cfg = StreamConfig(api_keys=frozenset({"key-1"}), ping_interval_s=0.2, pong_timeout_s=0.5,
                       max_connection_age_s=86_400, attempt_limit=300, attempt_window_s=300,
                       shutdown_grace_s=0.5)
    with LocalExchange(tape, clock=clock, streams=cfg) as ex:
        ex.ws_url                              # ws://127.0.0.1:<port>
        ctl = ex.streams                       # StreamControl: thread-safe, callable from the test thread
        ctl.set_api_keys({"key-2"})            # replace the accepted keys at runtime
        ctl.server_shutdown(grace_s=0.5)       # serverShutdown frame to every open connection, close later
        ctl.drop_connections()                 # cut every open connection (no close frame)
        ctl.send_garbage()                     # one undecodable frame to every connection (binary on SBE)
        ctl.skip_trade()                       # omit the next trade that goes out (or skip_trade(trade_id))
        ctl.skip_depth_update()                # omit the next depth diff (the client's U/u check sees it)
        ctl.stall(3.0)                         # send nothing for 3 s, then deliver what queued up
        ctl.set_fault_rates({"poison": 0.02})  # per event: garbage, poison, skip-trade, skip-depth, stall
        ctl.stats() / ctl.wait_until(lambda s: s.connections_open == 2, timeout=5)
        ctl.reset_attempts()                   # forget the connection-attempt window

The replay follows the exchange clock, shared with REST (so REST only shows what has happened): use a
``ReplayClock`` (real time at ``speed`` 1, accelerated above) or a ``ManualClock`` a test advances (then
``ctl.wake()`` makes the replay look at once). With the default ``HistoryClock`` the whole tape is past and
the streams stay quiet. Each client gets events from the moment it connects; the replay starts at the
exchange time when the server starts (``start_offset_s`` begins mid-tape). Without ``streams=`` a
``LocalExchange`` serves no WebSockets; ``add_stream_routes(app, config)`` adds them to any exchange app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from btcpipe.domain.errors import ConfigError, ExchangeError
from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.state import EXCHANGE
from btcpipe.exchange.streams.auth import API_KEY_HEADER
from btcpipe.exchange.streams.connection import StreamConfig, StreamStats, Subscriber
from btcpipe.exchange.streams.control import ControlPort, handle_control
from btcpipe.exchange.streams.formats import StreamNameError, WireFormat, parse_stream_list
from btcpipe.exchange.streams.hub import StreamHub
from btcpipe.exchange.streams.random_faults import StreamFaultKind
from btcpipe.infra.clocks import ReplayClock

__all__ = ["STREAMS", "StreamConfig", "StreamControl", "StreamStats", "add_stream_routes", "replay_clock"]

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAMS: web.AppKey[StreamHub] = web.AppKey("btcpipe_streams", StreamHub)


def replay_clock(
    tapes: MarketTape | Iterable[MarketTape], *, speed: float = 1.0, start_offset_s: float = 0.0
) -> ReplayClock:
    """Exchange time that starts ``start_offset_s`` into the tapes (their earliest start) and runs at ``speed``."""
    tape_list = [tapes] if isinstance(tapes, MarketTape) else list(tapes)
    start = min(t.start_us for t in tape_list)
    return ReplayClock(start + int(start_offset_s * 1e6), speed=speed)


def _refuse(hub: StreamHub, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    counter = {401: "refused_401", 403: "refused_403", 429: "refused_429"}.get(status, "refused_bad_request")
    hub.count(counter)
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


async def _serve(request: web.Request, fmt: WireFormat, names: str, combined: bool) -> web.StreamResponse:
    hub = request.app[STREAMS]
    ip = request.remote or "unknown"
    decision = hub.attempts.attempt(ip)
    if not decision.allowed:
        log.info("stream connection attempts limited", extra={"ip": ip, "attempts": decision.attempts})
        return _refuse(
            hub, 429, -1003,
            f"Too many connection attempts: more than {hub.attempts.limit} per {hub.attempts.window_s:g}s "
            "from this IP.",
            {"Retry-After": str(decision.retry_after_s)},
        )
    try:
        specs = parse_stream_list(names, fmt, list(hub.timelines), hub.config.max_streams)
    except StreamNameError as exc:
        return _refuse(hub, 400, -1121, str(exc))
    time_unit = request.query.get("timeUnit", "MILLISECOND").upper()
    if time_unit not in ("MILLISECOND", "MICROSECOND"):
        return _refuse(hub, 400, -1100, f"timeUnit must be MILLISECOND or MICROSECOND, got {time_unit!r}")
    if fmt == "sbe":
        status = hub.keys.check(request.headers.get(API_KEY_HEADER))
        if status != 200:
            what = "an API key is required" if status == 401 else "API key not accepted"
            return _refuse(hub, status, -2015, f"SBE market data streams: {what} (header {API_KEY_HEADER}).")
    micros = fmt == "sbe" or time_unit == "MICROSECOND"
    ws = web.WebSocketResponse(autoping=False, max_msg_size=64 * 1024, timeout=hub.config.close_timeout_s)
    loop = asyncio.get_running_loop()
    sub = Subscriber(ws, request, sbe=fmt == "sbe", micros=micros, opened=loop.time())
    sub.combined = combined
    # Subscribed before the 101 goes out: a client that has its handshake answer is already receiving, and
    # events of that instant queue up until the writer starts.
    hub.register(sub, specs)
    port = ControlPort(
        fmt=fmt, symbols=list(hub.timelines), max_streams=hub.config.max_streams,
        subscribed=lambda: list(sub.streams), subscribe=lambda new: hub.subscribe(sub, new),
        unsubscribe=lambda names: hub.unsubscribe(sub, names), combined=lambda: sub.combined,
        set_combined=lambda flag: hub.set_combined(sub, flag),
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        await ws.prepare(request)
        log.info("stream connection opened", extra={"ip": ip, "format": fmt, "streams": [s.name for s in specs]})
        tasks = [
            asyncio.create_task(hub.writer(sub)),
            asyncio.create_task(hub.pinger(sub)),
            asyncio.create_task(hub.age_limit(sub)),
        ]
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            if not sub.rate.allow(loop.time()):
                # Binance's limit: 5 incoming messages (pings, pongs, control frames) a second, else disconnect.
                hub.count("closed_message_rate")
                log.info("stream client sent too many messages, closing", extra={"ip": ip})
                await hub.close(sub, WSCloseCode.POLICY_VIOLATION, "too many messages: more than 5 per second")
                break
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                hub.on_pong(sub, msg.data)
            elif msg.type == WSMsgType.TEXT:
                hub.count("control_requests")
                sub.push([handle_control(msg.data, port)], hub.config.send_queue_limit + 1)
    finally:
        hub.unregister(sub)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not ws.closed:
            await hub.close(sub, 1000, "bye")
        log.info("stream connection closed", extra={"ip": ip, "reason": sub.close_reason or "client closed"})
    return ws


async def _sbe_single(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "sbe", request.match_info.get("stream", ""), combined=False)


async def _sbe_combined(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "sbe", request.query.get("streams", ""), combined=True)


async def _json_single(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "json", request.match_info.get("stream", ""), combined=False)


async def _json_combined(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "json", request.query.get("streams", ""), combined=True)


def add_stream_routes(app: web.Application, config: StreamConfig | None = None) -> StreamHub:
    """Add the SBE and JSON stream endpoints to an exchange app (before it starts); returns their hub."""
    hub = StreamHub(app[EXCHANGE], config or StreamConfig())
    app[STREAMS] = hub
    # Bare /ws and /stream (no stream yet) are for clients that connect first and SUBSCRIBE afterwards.
    for prefix, single, both in (("", _sbe_single, _sbe_combined), ("/json", _json_single, _json_combined)):
        app.router.add_get(f"{prefix}/ws", single)
        app.router.add_get(f"{prefix}/ws/", single)
        app.router.add_get(prefix + "/ws/{stream:.+}", single)
        app.router.add_get(f"{prefix}/stream", both)
        app.router.add_get(f"{prefix}/stream/", both)
    app.on_startup.append(hub.on_startup)
    app.on_shutdown.append(hub.on_shutdown)
    app.on_cleanup.append(hub.on_cleanup)
    return hub


class StreamControl:
    """Thread-safe handle on the running streams for tests and operators (every call runs on the server loop)."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub

    def _call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        loop = self.hub.loop
        if loop is None or loop.is_closed():
            raise ExchangeError("the exchange's streams are not running (start the LocalExchange first)")
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    # --- settings -------------------------------------------------------------------------------------------
    def set_api_keys(self, keys: Iterable[str]) -> None:
        self.hub.keys.set(keys)

    def reset_attempts(self) -> None:
        self.hub.attempts.reset()

    def wake(self) -> None:
        """Make the replay look at the clock now (after advancing a ManualClock)."""
        self._call(self.hub.wake)

    # --- operator events and faults -------------------------------------------------------------------------
    def server_shutdown(self, grace_s: float | None = None) -> int:
        """Send ``serverShutdown`` to every open connection and close them after ``grace_s``; returns how many."""
        return self._call(lambda: self.hub.server_shutdown(grace_s))

    def drop_connections(self) -> int:
        return self._call(self.hub.drop_connections)

    def send_garbage(self, frame: bytes | None = None, text: str | None = None) -> int:
        return self._call(lambda: self.hub.send_garbage(frame, text))

    def skip_trade(self, trade_id: int | None = None) -> None:
        self._call(lambda: self.hub.skip_trade(trade_id))

    def skip_depth_update(self, count: int = 1) -> None:
        if count < 1:
            raise ConfigError(f"count must be >= 1, got {count}")
        self._call(lambda: self.hub.skip_depth(count))

    def stall(self, seconds: float) -> None:
        if seconds < 0:
            raise ConfigError(f"stall must not be negative, got {seconds}")
        self._call(lambda: self.hub.stall(seconds))

    def set_fault_rates(self, rates: dict[StreamFaultKind, float], seed: int | None = None) -> None:
        """Per-event probabilities of garbage, poison, skip-trade, skip-depth and stall (see ``random_faults``)."""
        self.hub.random_faults.set(rates, seed)

    # --- observation ----------------------------------------------------------------------------------------
    def stats(self) -> StreamStats:
        return self.hub.stats()

    def wait_until(self, predicate: Callable[[StreamStats], bool], timeout: float = 10.0) -> StreamStats:
        """Block until the counters satisfy ``predicate`` (an event, not a sleep); TimeoutError otherwise."""
        return self.hub.wait_until(predicate, timeout)
