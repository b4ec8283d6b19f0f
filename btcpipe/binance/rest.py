"""A synchronous client for Binance's public spot REST market data, paced by the weight the server reports.

Every response carries ``X-MBX-USED-WEIGHT-1M``. The client remembers it and, before a request that would
take the minute's total past ``weight_limit × weight_budget_share``, waits for the window to roll, so a
normal run never meets a 429. When one comes anyway (another process on the same IP), 429/418 wait the
``Retry-After`` the server asks for. 5xx, timeouts, dropped connections and malformed (truncated) bodies are
retried with capped exponential backoff and equal jitter (``btcpipe.domain.backoff``); after ``max_retries``
the error names the request.

Each typed method returns a ``RestResponse``: the parsed JSON body, the exact bytes that arrived (bronze
keeps them) and, for trades/aggTrades/klines, the bronze Arrow table. Parsing into the table happens inside
the retry loop, so a body that is valid JSON but not a valid page is retried like a truncated one.
"""

from __future__ import annotations

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
from btcpipe.binance.weights import MAX_PAGE_WEIGHT, WEIGHTS, depth_weight
from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import (
    ConfigError,
    DataError,
    ExchangeError,
    ExchangeRequestError,
    ExchangeServerError,
    MalformedResponseError,
    RateLimitedError,
)
from btcpipe.domain.time import US_PER_MS

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
        weight_window_s: float = 60.0,
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
        self.weight_limit = weight_limit
        self.weight_budget = max(1, int(weight_limit * weight_budget_share))
        self.weight_window_s = weight_window_s
        self.max_retries = max_retries
        self.max_rate_limit_waits = max_rate_limit_waits
        self.max_retry_after_s = max_retry_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.time_unit: TimeUnit = time_unit
        self.stats = RestStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        # Our view of the server's weight window: the last reported total (plus what we sent since
        # when a response lacked the header) and the latest instant the window can have started.
        self._used = 0
        self._window_start: float | None = None
        headers = {"Accept": "application/json", "User-Agent": "btcpipe-backfill"}
        if time_unit == "us":
            headers["X-MBX-TIME-UNIT"] = "MICROSECOND"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, transport=transport)

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

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_s += seconds
            self._sleep(seconds)

    def _pace(self, weight: int) -> None:
        """Wait until sending ``weight`` more keeps the window's total within the budget."""
        while True:
            now = self._clock()
            if self._window_start is not None and now >= self._window_start + self.weight_window_s:
                # Every weight we know of was counted in a window that has rolled by now.
                self._used = 0
                self._window_start = None
            if self._used + weight <= self.weight_budget or self._window_start is None:
                return
            wait = self._window_start + self.weight_window_s - now
            self.stats.window_waits += 1
            log.info(
                "weight budget reached; waiting for the window to roll",
                extra={"used_weight": self._used, "budget": self.weight_budget, "wait_s": round(wait, 3)},
            )
            self._wait(wait)

    def _note_weight(self, header: str | None, weight: int) -> None:
        now = self._clock()
        reported: int | None = None
        if header is not None:
            try:
                reported = int(header)
            except ValueError:
                reported = None
        if reported is None:
            self._used += weight
            if self._window_start is None:
                self._window_start = now
            return
        self.stats.max_used_weight = max(self.stats.max_used_weight, reported)
        # A total below what the same window would show means a new window began, at the latest now.
        if self._window_start is None or reported < self._used + weight:
            self._window_start = now
        self._used = reported

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
            self._pace(weight)
            self.stats.requests += 1
            self.stats.weight_sent += weight
            error: ExchangeError
            try:
                resp = self._http.get(path, params=dict(params))
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
                    # The window is full as far as the server is concerned.
                    self._used = max(self._used, self.weight_limit)
                    self._window_start = self._clock()
                    self._wait(retry_after)
                    self._used = 0
                    self._window_start = None
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
            self._wait(delay)


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
