"""A synchronous client for Binance's public spot REST market data, paced by the weight the server reports.

Every response carries ``X-MBX-USED-WEIGHT-1M``. The client keeps it in a ``WeightBudget`` (shared by
every client of the process that talks to the same endpoint, ``weights.shared_budget``) and, before a
request that would take the minute's total past its priority's ceiling (live: ``weight_limit ×
weight_budget_share``; bulk, for backfill pages: that minus the live reserve), waits for the window to
roll, so a normal run never meets a 429 and a backfill never starves the live path's snapshots and gap
fills. When a 429 comes anyway (another process on the same IP), 429/418 wait the ``Retry-After`` the
server asks for. 5xx, timeouts, dropped connections and malformed (truncated) bodies are retried with
capped exponential backoff and equal jitter (``btcpipe.domain.backoff``); after ``max_retries`` the error
names the request.

Given a ``stop`` (``btcpipe.infra.shutdown``), every wait (window, Retry-After, backoff) ends when it is
set, and the HTTP request itself runs where a stop abandons it: the call raises ``RequestCancelledError``
within a fraction of a second of the stop, whatever the server does.

Each typed method returns a ``RestResponse``: the parsed JSON body, the exact bytes that arrived (bronze
keeps them) and, for trades/aggTrades/klines, the bronze Arrow table. Parsing into the table happens inside
the retry loop, so a body that is valid JSON but not a valid page is retried like a truncated one.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import orjson
import pyarrow as pa

from btcpipe.binance.rest_parsing import TimeUnit, agg_trades_table, klines_table, trades_table
from btcpipe.binance.weights import LIVE, MAX_PAGE_WEIGHT, WEIGHTS, Priority, WeightBudget, depth_weight, shared_budget
from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import (
    ConfigError,
    DataError,
    ExchangeError,
    ExchangeRequestError,
    ExchangeServerError,
    MalformedResponseError,
    RateLimitedError,
    RequestCancelledError,
)
from btcpipe.domain.time import US_PER_MS
from btcpipe.infra.shutdown import Interrupted, StopSignal, call_interruptibly

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data-api.binance.vision"
WEIGHT_HEADER = "x-mbx-used-weight-1m"

@dataclass(frozen=True, slots=True)
class RestResponse:
    """One REST answer: the parsed body, the raw bytes, the used weight and, for history endpoints, the bronze table."""

    body: Any  # the parsed JSON
    raw: bytes  # exactly the bytes that arrived
    request: str  # "GET /api/v3/aggTrades?symbol=BTCUSDT&fromId=..." for messages
    used_weight: int | None  # X-MBX-USED-WEIGHT-1M after this request
    time_unit: TimeUnit  # the unit the times in ``body`` are in
    table: pa.Table | None = None  # the bronze table, for trades / aggTrades / klines


@dataclass(slots=True)
class RestStats:
    """What the client did, for results, benchmarks and logs."""

    requests: int = 0  # HTTP requests sent, retries included
    weight_sent: int = 0  # sum of the weights of those requests
    max_used_weight: int = 0  # highest X-MBX-USED-WEIGHT-1M seen
    window_waits: int = 0  # times pacing waited for the weight window to roll
    waited_s: float = 0.0  # total seconds spent waiting (pacing, Retry-After, backoff)
    rate_limited: int = 0  # 429 and 418 answers
    server_errors: int = 0  # 5xx answers
    transport_errors: int = 0  # timeouts, refused or dropped connections
    malformed: int = 0  # bodies that did not parse
    cancelled: int = 0  # requests and waits given up because the process is stopping
    by_status: dict[int, int] = field(default_factory=dict)


Validator = Callable[[Any], pa.Table | None]


class TableParser(Protocol):
    """Turns a page of REST items into a bronze Arrow table."""

    def __call__(self, items: Sequence[Any], /, *, time_unit: TimeUnit | None = None) -> pa.Table: ...


class BinanceRestClient:
    """Binance spot public REST market data (no key), paced and retried. Use as a context manager."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        weight_limit: int = 6000,
        weight_budget_share: float = 0.8,
        live_reserve_share: float = 0.2,
        weight_window_s: float = 60.0,
        budget: WeightBudget | None = None,
        priority: Priority = LIVE,
        stop: StopSignal | None = None,
        timeout: float = 10.0,
        max_retries: int = 8,
        max_rate_limit_waits: int = 10,
        max_retry_after_s: float = 300.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 15.0,
        time_unit: TimeUnit = "us",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``budget``: the weight budget to spend (``shared_budget(base_url, ...)`` for one shared by the
        process's clients of this endpoint); without one the client keeps its own from ``weight_limit``,
        ``weight_budget_share``, ``live_reserve_share`` and ``weight_window_s``. ``priority``: ``"live"``
        (snapshots, gap fills) or ``"bulk"`` (backfill pages, which leave the live reserve unused)."""
        if not 0 < weight_budget_share <= 1:
            raise ConfigError(f"weight_budget_share must be in (0, 1], got {weight_budget_share}")
        if not (math.isfinite(weight_window_s) and weight_window_s > 0):
            raise ConfigError(f"weight_window_s must be a positive number of seconds, got {weight_window_s}")
        if int(weight_limit * weight_budget_share) < MAX_PAGE_WEIGHT:
            # A budget below one request's weight would send one request per window roll: a silent crawl.
            raise ConfigError(
                f"weight limit {weight_limit} × share {weight_budget_share} leaves less than one request's weight "
                f"({MAX_PAGE_WEIGHT}); raise the weight limit"
            )
        self.base_url = base_url.rstrip("/")
        # A private budget keeps a reserve only when the share leaves room for one.
        reserve = live_reserve_share if live_reserve_share < weight_budget_share else 0.0
        self.budget = budget or WeightBudget(weight_limit, budget_share=weight_budget_share,
                                             live_reserve_share=reserve, window_s=weight_window_s, clock=clock)
        self.priority: Priority = priority
        self.weight_limit = self.budget.weight_limit
        self.weight_budget = self.budget.ceiling(priority)
        self.weight_window_s = self.budget.window_s
        self.max_retries = max_retries
        self.max_rate_limit_waits = max_rate_limit_waits
        self.max_retry_after_s = max_retry_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.time_unit: TimeUnit = time_unit
        self.stats = RestStats()
        self._stop = stop
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        headers = {"Accept": "application/json", "User-Agent": "btcpipe-backfill"}
        if time_unit == "us":
            headers["X-MBX-TIME-UNIT"] = "MICROSECOND"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, transport=transport)

    @classmethod
    def shared(cls, base_url: str, *, weight_limit: int = 6000, weight_budget_share: float = 0.8,
               live_reserve_share: float = 0.2, weight_window_s: float = 60.0, **kwargs: Any) -> BinanceRestClient:
        """A client spending the process's one budget for ``base_url`` (made with these settings first)."""
        budget = shared_budget(base_url, weight_limit=weight_limit, budget_share=weight_budget_share,
                               live_reserve_share=live_reserve_share, window_s=weight_window_s)
        return cls(base_url, budget=budget, **kwargs)

    # --- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BinanceRestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints ------------------------------------------------------------------------------------
    def ping(self) -> RestResponse:
        return self._get("/api/v3/ping", {}, WEIGHTS["/api/v3/ping"], expect=dict)

    def server_time(self) -> RestResponse:
        """``body["serverTime"]`` is in the client's time unit."""
        return self._get("/api/v3/time", {}, WEIGHTS["/api/v3/time"], expect=dict)

    def exchange_info(self, symbol: str | None = None) -> RestResponse:
        params = {"symbol": symbol} if symbol else {}
        return self._get("/api/v3/exchangeInfo", params, WEIGHTS["/api/v3/exchangeInfo"], expect=dict)

    def depth(self, symbol: str, limit: int = 100) -> RestResponse:
        return self._get("/api/v3/depth", {"symbol": symbol, "limit": limit}, depth_weight(limit), expect=dict)

    def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 1000,
    ) -> RestResponse:
        """``/api/v3/aggTrades``; ``end_time_us`` is inclusive, as on Binance. ``table`` is BRONZE_AGG_TRADES."""
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        return self._page("/api/v3/aggTrades", self._with_times(params, start_time_us, end_time_us), agg_trades_table)

    def historical_trades(self, symbol: str, from_id: int | None = None, limit: int = 1000) -> RestResponse:
        """``/api/v3/historicalTrades`` from ``from_id`` (inclusive). ``table`` is BRONZE_TRADES."""
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        return self._page("/api/v3/historicalTrades", params, trades_table)

    def recent_trades(self, symbol: str, limit: int = 500) -> RestResponse:
        return self._page("/api/v3/trades", {"symbol": symbol, "limit": limit}, trades_table)

    def klines(
        self,
        symbol: str,
        interval: str = "1m",
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 1000,
    ) -> RestResponse:
        """``/api/v3/klines``; ``table`` is BRONZE_KLINES."""
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        return self._page("/api/v3/klines", self._with_times(params, start_time_us, end_time_us), klines_table)

    # --- machinery ------------------------------------------------------------------------------------
    def _with_times(self, params: dict[str, Any], start_us: int | None, end_us: int | None) -> dict[str, Any]:
        """``startTime``/``endTime`` in the client's time unit, when given."""
        for name, ts_us in (("startTime", start_us), ("endTime", end_us)):
            if ts_us is not None:
                params[name] = ts_us if self.time_unit == "us" else ts_us // US_PER_MS
        return params

    def _page(self, path: str, params: Mapping[str, Any], parse: TableParser) -> RestResponse:
        """A list endpoint whose body must parse into its bronze table (else it is retried as malformed)."""
        unit = self.time_unit
        return self._get(path, params, WEIGHTS[path], expect=list, validate=lambda body: parse(body, time_unit=unit))

    def _wait(self, seconds: float, request: str) -> None:
        if seconds <= 0:
            return
        self.stats.waited_s += seconds
        if self._stop is None:
            self._sleep(seconds)
            return
        if self._sleep is time.sleep:
            if self._stop.wait(seconds):
                raise self._cancelled(request)
        else:  # an injected sleep (tests): sleep, then look
            self._sleep(seconds)
        if self._stop.is_set():
            raise self._cancelled(request)

    def _cancelled(self, request: str) -> RequestCancelledError:
        self.stats.cancelled += 1
        return RequestCancelledError(f"{request}: cancelled, the process is stopping", request=request)

    def _pace(self, weight: int, request: str) -> None:
        """Wait until the budget has room for ``weight`` at this client's priority, and take it."""
        if self._stop is not None and self._stop.is_set():
            raise self._cancelled(request)
        wait = self.budget.take(weight, self.priority)
        if wait <= 0:
            return
        self.stats.window_waits += 1
        log.info(
            "weight budget reached; waiting for the window to roll",
            extra={"used_weight": self.budget.used, "budget": self.weight_budget, "priority": self.priority,
                   "wait_s": round(wait, 3)},
        )
        self.budget.waiting(self.priority, +1)
        try:
            while wait > 0:
                # In slices: what other clients of the budget learn meanwhile (a new window) counts at once.
                self._wait(min(wait, 1.0) if self._sleep is time.sleep else wait, request)
                wait = self.budget.take(weight, self.priority)
        finally:
            self.budget.waiting(self.priority, -1)

    def _send(self, path: str, params: Mapping[str, Any], request: str) -> httpx.Response:
        if self._stop is None:
            return self._http.get(path, params=dict(params))
        try:
            return call_interruptibly(self._stop, functools.partial(self._http.get, path, params=dict(params)))
        except Interrupted:
            raise self._cancelled(request) from None

    def _get(
        self,
        path: str,
        params: Mapping[str, Any],
        weight: int,
        *,
        expect: type,
        validate: Validator | None = None,
    ) -> RestResponse:
        request = f"GET {path}" + (f"?{urlencode(params)}" if params else "")
        failures = 0
        rate_limit_waits = 0
        while True:
            self._pace(weight, request)
            self.stats.requests += 1
            self.stats.weight_sent += weight
            error: ExchangeError
            try:
                resp = self._send(path, params, request)
            except RequestCancelledError:
                self.budget.settle(weight, None)
                raise
            except httpx.RemoteProtocolError as exc:
                # The server closed before the promised body was complete: a truncated response.
                self._note_weight(None, weight)
                self.stats.malformed += 1
                error = MalformedResponseError(f"{request}: incomplete response ({exc})", request=request)
            except httpx.TransportError as exc:
                self._note_weight(None, weight)
                self.stats.transport_errors += 1
                error = ExchangeError(f"{request}: {type(exc).__name__}: {exc}", request=request)
            else:
                self._note_weight(resp.headers.get(WEIGHT_HEADER), weight)
                status = resp.status_code
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                if status in (429, 418):
                    self.stats.rate_limited += 1
                    rate_limit_waits += 1
                    retry_after = _retry_after(resp, default=self.weight_window_s)
                    limited = RateLimitedError(
                        f"{request}: HTTP {status} ({'IP banned' if status == 418 else 'rate limited'}), "
                        f"retry after {retry_after:g} s",
                        status=status,
                        retry_after=retry_after,
                        request=request,
                    )
                    if rate_limit_waits > self.max_rate_limit_waits or retry_after > self.max_retry_after_s:
                        raise limited
                    log.warning(str(limited), extra={"status": status, "retry_after_s": retry_after})
                    # The window is full as far as the server is concerned, until Retry-After has passed.
                    self.budget.full_until(retry_after)
                    self._wait(retry_after, request)
                    continue
                if status >= 500:
                    self.stats.server_errors += 1
                    error = ExchangeServerError(f"{request}: HTTP {status}", status=status, request=request)
                elif status >= 400:
                    code, msg = _binance_error(resp.content)
                    raise ExchangeRequestError(
                        f"{request}: HTTP {status} {msg}".rstrip(), status=status, code=code, request=request
                    )
                else:
                    raw = resp.content
                    try:
                        body = orjson.loads(raw)
                        if not isinstance(body, expect):
                            raise DataError(f"expected a JSON {expect.__name__}, got {type(body).__name__}")
                        table = validate(body) if validate is not None else None
                    except (orjson.JSONDecodeError, DataError) as exc:
                        self.stats.malformed += 1
                        error = MalformedResponseError(
                            f"{request}: malformed body ({len(raw)} bytes): {exc}", status=status, request=request
                        )
                    else:
                        return RestResponse(
                            body=body,
                            raw=raw,
                            request=request,
                            used_weight=_int_or_none(resp.headers.get(WEIGHT_HEADER)),
                            time_unit=self.time_unit,
                            table=table,
                        )
            failures += 1
            if failures > self.max_retries:
                raise error
            delay = backoff_delay(failures, self.backoff_base_s, self.backoff_cap_s, self._rng)
            log.warning(
                "request failed; retrying",
                extra={"error": str(error), "attempt": failures, "backoff_s": round(delay, 3)},
            )
            self._wait(delay, request)

    def _note_weight(self, header: str | None, weight: int) -> None:
        reported = _int_or_none(header)
        if reported is not None:
            self.stats.max_used_weight = max(self.stats.max_used_weight, reported)
        self.budget.settle(weight, reported)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _retry_after(resp: httpx.Response, *, default: float) -> float:
    text = resp.headers.get("retry-after")
    if text is None:
        return default
    try:
        return max(0.0, float(text))
    except ValueError:
        return default


def _binance_error(raw: bytes) -> tuple[int | None, str]:
    """Binance's ``{"code": -1121, "msg": "Invalid symbol."}``, or the start of whatever came instead."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        code = body.get("code")
        return (code if isinstance(code, int) else None), str(body.get("msg", ""))
    return None, raw[:200].decode("utf-8", "replace")
