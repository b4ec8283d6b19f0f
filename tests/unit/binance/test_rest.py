"""BinanceRestClient's pacing and retry rules, driven by a scripted transport and a fake clock.

The real adapter against the real local exchange over loopback is tested in
tests/integration/test_backfill_rest.py; here every branch is hit deterministically and instantly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.domain.errors import (
    ExchangeError,
    ExchangeRequestError,
    ExchangeServerError,
    MalformedResponseError,
    RateLimitedError,
    RequestCancelledError,
)

AGG = {"a": 1, "p": "10.00000000", "q": "1.00000000", "f": 1, "l": 1, "T": 1735689600010866, "m": False, "M": True}


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class WindowServer:
    """Counts weight in fixed windows aligned to ``window_s`` on the fake clock, like the exchange."""

    def __init__(self, t: FakeTime, limit: int, window_s: float = 60.0) -> None:
        self.t, self.limit, self.window_s = t, limit, window_s
        self.window = -1
        self.used = 0
        self.max_used = 0
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        window = int(self.t.now // self.window_s)
        if window != self.window:
            self.window, self.used = window, 0
        self.used += 4
        self.requests += 1
        self.max_used = max(self.max_used, self.used)
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.used)}
        if self.used > self.limit:
            return httpx.Response(429, headers={**headers, "Retry-After": "1"}, json={"code": -1003, "msg": "Too many"})
        self.t.now += 0.01  # the request takes a little time
        return httpx.Response(200, headers=headers, content=orjson.dumps([AGG]))


def _client(handler: Callable[[httpx.Request], httpx.Response], t: FakeTime, **kw: object) -> BinanceRestClient:
    return BinanceRestClient(
        "http://127.0.0.1:1", transport=httpx.MockTransport(handler), sleep=t.sleep, clock=t.clock,
        rng=random.Random(1), **kw,  # type: ignore[arg-type]
    )


def test_pacing_keeps_the_window_within_budget_and_never_meets_a_429() -> None:
    t = FakeTime()
    t.now = 1037.5  # start mid-window: the client does not know where windows begin
    server = WindowServer(t, limit=300)
    with _client(server, t, weight_limit=300, weight_budget_share=0.8) as client:
        for _ in range(400):
            client.agg_trades("BTCUSDT", from_id=1)
    assert server.max_used <= 240
    assert client.stats.rate_limited == 0
    assert client.stats.window_waits >= 5
    assert client.stats.max_used_weight == server.max_used
    # 400 requests × 4 weight at 240 a window need at least 6 windows of waiting.
    assert t.now - 1037.5 >= 6 * 60


def test_429_waits_retry_after_then_succeeds() -> None:
    t = FakeTime()
    answers = [
        httpx.Response(429, headers={"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "6004"}, json={"code": -1003}),
        httpx.Response(200, headers={"X-MBX-USED-WEIGHT-1M": "4"}, content=orjson.dumps([AGG])),
    ]
    with _client(lambda r: answers.pop(0), t) as client:
        page = client.agg_trades("BTCUSDT", from_id=1)
    assert page.table is not None
    assert page.table.num_rows == 1
    assert 7.0 in t.sleeps
    assert client.stats.rate_limited == 1


def test_418_with_a_ban_longer_than_allowed_is_raised_not_slept() -> None:
    t = FakeTime()
    client = _client(lambda r: httpx.Response(418, headers={"Retry-After": "86400"}), t)
    with client, pytest.raises(RateLimitedError, match="IP banned") as info:
        client.agg_trades("BTCUSDT", from_id=1)
    assert info.value.retry_after == 86400
    assert t.sleeps == []


def test_5xx_is_retried_with_capped_jittered_exponential_backoff_then_raised() -> None:
    t = FakeTime()
    client = _client(lambda r: httpx.Response(503), t, max_retries=6, backoff_base_s=1.0, backoff_cap_s=5.0)
    with client, pytest.raises(ExchangeServerError, match=r"GET /api/v3/aggTrades\?symbol=BTCUSDT.*HTTP 503"):
        client.agg_trades("BTCUSDT", from_id=42)
    assert client.stats.requests == 7
    assert len(t.sleeps) == 6
    ceilings = [1, 2, 4, 5, 5, 5]
    for slept, ceiling in zip(t.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_truncated_body_is_retried_then_fails_naming_the_request() -> None:
    t = FakeTime()
    body = orjson.dumps([AGG, AGG])
    client = _client(lambda r: httpx.Response(200, content=body[:-7]), t, max_retries=3)
    request = r"GET /api/v3/aggTrades\?symbol=BTCUSDT&limit=1000&fromId=9"
    with client, pytest.raises(MalformedResponseError, match=request):
        client.agg_trades("BTCUSDT", from_id=9)
    assert client.stats.malformed == 4


def test_truncated_body_then_a_good_one_succeeds() -> None:
    t = FakeTime()
    body = orjson.dumps([AGG])
    answers = [httpx.Response(200, content=body[:10]), httpx.Response(200, content=body)]
    with _client(lambda r: answers.pop(0), t) as client:
        page = client.agg_trades("BTCUSDT", from_id=1)
    assert page.raw == body
    assert page.body == [AGG]


def test_dropped_connections_are_retried() -> None:
    t = FakeTime()
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, content=orjson.dumps([AGG]))

    with _client(handler, t) as client:
        page = client.agg_trades("BTCUSDT", from_id=1)
    assert page.table is not None
    assert page.table.num_rows == 1
    assert client.stats.transport_errors == 2


def test_timeouts_exhaust_retries_with_an_exchange_error() -> None:
    t = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = _client(handler, t, max_retries=2)
    with client, pytest.raises(ExchangeError, match="ReadTimeout"):
        client.historical_trades("BTCUSDT", from_id=1)


def test_bad_request_is_not_retried_and_keeps_binance_code() -> None:
    t = FakeTime()
    client = _client(lambda r: httpx.Response(400, json={"code": -1121, "msg": "Invalid symbol."}), t)
    with client, pytest.raises(ExchangeRequestError, match="Invalid symbol") as info:
        client.agg_trades("NOPE", from_id=1)
    assert info.value.code == -1121
    assert client.stats.requests == 1


def test_microsecond_header_and_time_params_are_sent() -> None:
    t = FakeTime()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"[]")

    with _client(handler, t) as client:
        client.agg_trades("BTCUSDT", start_time_us=1735689600010866, end_time_us=1735689600999999, limit=1)
    with _client(handler, t, time_unit="ms") as client:
        client.agg_trades("BTCUSDT", start_time_us=1735689600010866, limit=1)
    assert seen[0].headers["X-MBX-TIME-UNIT"] == "MICROSECOND"
    assert seen[0].url.params["startTime"] == "1735689600010866"
    assert seen[0].url.params["endTime"] == "1735689600999999"
    assert "X-MBX-TIME-UNIT" not in seen[1].headers
    assert seen[1].url.params["startTime"] == "1735689600010"


def test_valid_json_that_is_not_a_page_is_treated_as_malformed() -> None:
    t = FakeTime()
    client = _client(lambda r: httpx.Response(200, json={"unexpected": True}), t, max_retries=1)
    with client, pytest.raises(MalformedResponseError, match="expected a JSON list"):
        client.agg_trades("BTCUSDT", from_id=1)


def test_a_stop_ends_a_weight_window_wait_at_once_with_a_cancelled_error() -> None:
    server = WindowServer(FakeTime(), limit=10_000)
    stop = threading.Event()
    client = BinanceRestClient("http://127.0.0.1:1", transport=httpx.MockTransport(server), weight_limit=100,
                               weight_budget_share=0.5, stop=stop)
    with client:
        client.agg_trades("BTCUSDT", from_id=1)  # the window now reads 4 of a budget of 50
        client.budget.full_until(60.0)  # as after a 429: nothing more for a minute
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(RequestCancelledError, match="cancelled, the process is stopping"):
            client.agg_trades("BTCUSDT", from_id=2)
        assert time.monotonic() - started < 5.0  # not the minute
    assert client.stats.cancelled == 1
    assert server.requests == 1


def test_a_stop_abandons_a_request_the_server_does_not_answer() -> None:
    release = threading.Event()

    def never(request: httpx.Request) -> httpx.Response:
        release.wait(30)
        return httpx.Response(200, content=orjson.dumps([AGG]))

    stop = threading.Event()
    with BinanceRestClient("http://127.0.0.1:1", transport=httpx.MockTransport(never), stop=stop) as client:
        threading.Timer(0.2, stop.set).start()
        with pytest.raises(RequestCancelledError):
            client.agg_trades("BTCUSDT", from_id=1)
    assert client.stats.cancelled == 1
    release.set()
