"""The local Binance-compatible exchange: an aiohttp app over tapes, and ``LocalExchange`` to run it.

``create_app(state)`` returns the application with the REST endpoints (``/api/v3/...``) and the bulk dumps
(``/data/spot/daily/...``). Every ``/api/`` request passes the weight limiter (``X-MBX-USED-WEIGHT-1M``
and ``X-MBX-USED-WEIGHT`` on every answer, 429/418 with ``Retry-After``), then the fault injector
(latency, 5xx, truncated body, dropped connection). More routes — the WebSocket streams of a later issue —
are added to the same app before it starts: ``LocalExchange(..., configure=[add_stream_routes])`` calls
each ``configure(app)``; they reach tapes and exchange time through ``app[EXCHANGE]``.

``LocalExchange`` serves on 127.0.0.1 (port 0 picks a free one) from a background thread with its own
event loop, as a context manager, for tests, benchmarks and ``btcpipe run``/``exchange serve``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType

from aiohttp import web

from btcpipe.domain.errors import ConfigError, ExchangeError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import Clock
from btcpipe.exchange.faults import Faults, FaultStats
from btcpipe.exchange.ratelimit import RateDecision, RateStats, WeightLimiter
from btcpipe.exchange.rest.api import ApiError, add_rest_routes, error_response, request_weight
from btcpipe.exchange.rest.dump_routes import add_dump_routes
from btcpipe.exchange.rest.tickers import add_ticker_routes
from btcpipe.exchange.state import EXCHANGE, ExchangeState, build_state
from btcpipe.exchange.streams.routes import STREAMS, StreamConfig, StreamControl, add_stream_routes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AppConfigurer = Callable[[web.Application], None]
LOOPBACK = "127.0.0.1"
_TOO_MUCH = (
    "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
_BANNED = (
    "Way too much request weight used; IP banned until {until_ms}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)


def _weight_headers(used: int) -> dict[str, str]:
    return {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}


def _rate_limited(decision: RateDecision, limit: int) -> web.Response:
    headers = _weight_headers(decision.used_weight) | {"Retry-After": str(decision.retry_after_s)}
    if decision.status == 418:
        msg = _BANNED.format(until_ms=int(decision.banned_until_s * 1000))
    else:
        msg = _TOO_MUCH.format(limit=limit)
    return error_response(decision.status, -1003, msg, headers)


@web.middleware
async def _exchange_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[EXCHANGE]
    path = request.path
    headers: dict[str, str] = {}
    if path.startswith("/api/"):
        ip = request.remote or "unknown"
        weight = request_weight(path, request.query)
        if weight is None:
            headers = _weight_headers(state.limiter.used_weight(ip))
        else:
            decision = state.limiter.check(ip, weight)
            if decision.status != 200:
                log.info("rate limited", extra={"ip": ip, "status": decision.status, "used": decision.used_weight})
                return _rate_limited(decision, state.limiter.limit)
            headers = _weight_headers(decision.used_weight)
    plan = state.faults.plan(path)
    if plan.delay_s > 0:
        await asyncio.sleep(plan.delay_s)
    if plan.kind == "drop":
        if request.transport is not None:
            request.transport.abort()  # no status line, no body: the client sees the connection die
        # aiohttp finds the transport closed and sends nothing; returning keeps its error log quiet.
        return web.Response(status=500)
    if plan.kind == "5xx":
        return error_response(
            plan.status, -1001, "Internal error; unable to process your request. Please try again.", headers
        )
    try:
        response = await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.msg, headers)
    except web.HTTPException as exc:
        if exc.status >= 400 and not path.startswith("/data/"):  # dumps are a file server: its own 404s
            # Binance answers every refusal, unknown paths included, with a JSON error body clients can parse.
            reason = "Unknown path" if exc.status == 404 else exc.reason
            return error_response(exc.status, -1000, f"{reason}: {request.method} {path}", headers)
        return web.Response(status=exc.status, text=exc.text, headers=headers)
    response.headers.update(headers)
    if plan.kind == "truncate" and isinstance(response, web.Response) and isinstance(response.body, bytes):
        body = response.body
        keep = min(max(1, int(len(body) * plan.cut_fraction)), max(len(body) - 1, 1))
        cut = web.Response(body=body[:keep], status=response.status, headers=headers)
        cut.content_type = response.content_type
        return cut
    return response


def create_app(state: ExchangeState) -> web.Application:
    """The exchange's application (not started): REST, dumps, limiter and faults over ``state``."""
    app = web.Application(middlewares=[_exchange_middleware], client_max_size=64 * 1024)
    app[EXCHANGE] = state
    add_rest_routes(app)
    add_ticker_routes(app)
    add_dump_routes(app)
    return app


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ConfigError(f"the local exchange only listens on loopback (127.0.0.1), not on {host!r}")


class LocalExchange:
    """Runs the exchange in a background thread; ``with LocalExchange(tape) as ex: ex.base_url``."""

    def __init__(
        self,
        tapes: MarketTape | Iterable[MarketTape],
        *,
        host: str = LOOPBACK,
        port: int = 0,
        clock: Clock | None = None,
        weight_limit: int = 6000,
        limiter: WeightLimiter | None = None,
        faults: Faults | None = None,
        first_agg_id: int = 1,
        configure: Sequence[AppConfigurer] = (),
        streams: StreamConfig | None = None,
        partial_dump_days: bool = True,
        shutdown_timeout_s: float = 1.0,
    ) -> None:
        """``shutdown_timeout_s``: how long ``stop()`` lets requests in flight finish (a request held by a
        latency fault or a client that reads slowly is cut after it), so the exchange stops in bounded time."""
        _check_loopback(host)
        self.shutdown_timeout_s = shutdown_timeout_s
        tape_list = [tapes] if isinstance(tapes, MarketTape) else list(tapes)
        self.state = build_state(
            tape_list,
            clock=clock,
            limiter=limiter or WeightLimiter(weight_limit),
            faults=faults,
            first_agg_id=first_agg_id,
            partial_dump_days=partial_dump_days,
        )
        self.host = host
        self.port = port
        self.app = create_app(self.state)
        for configure_app in configure:
            configure_app(self.app)
        if streams is not None:  # the WebSocket streams (btcpipe.exchange.streams.routes documents URLs and hooks)
            add_stream_routes(self.app, streams)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- what tests use ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def streams(self) -> StreamControl:
        """Faults, serverShutdown, API keys and counters of the WebSocket streams (``streams=`` must be given)."""
        if STREAMS not in self.app:
            raise ExchangeError("this exchange serves no streams; pass LocalExchange(..., streams=StreamConfig(...))")
        return StreamControl(self.app[STREAMS])

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def limiter(self) -> WeightLimiter:
        return self.state.limiter

    @property
    def stats(self) -> RateStats:
        """Weight and rate-limit counters (a copy): ``max_used_weight``, ``rejected_429``, ``banned_418``."""
        return self.state.limiter.stats()

    @property
    def fault_stats(self) -> FaultStats:
        return self.state.faults.stats()

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> LocalExchange:
        if self._thread is not None:
            raise ExchangeError("the local exchange is already running")
        self._thread = threading.Thread(target=self._run, name="btcpipe-exchange", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ExchangeError(f"the local exchange did not start within {timeout}s")
        if self._error is not None:
            raise ExchangeError(f"the local exchange failed to start: {self._error}") from self._error
        log.info("local exchange listening", extra={"url": self.base_url, "symbols": sorted(self.state.markets)})
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()
            loop.run_until_complete(self._shutdown())
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # the bound socket tells which port 0 became
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = self._loop = None

    def __enter__(self) -> LocalExchange:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
