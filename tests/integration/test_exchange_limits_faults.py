"""Rate limits and injected faults, as a client sees them over real HTTP on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from btcpipe.domain.errors import ConfigError, ExchangeError
from btcpipe.exchange.ratelimit import WeightLimiter
from btcpipe.exchange.server import LocalExchange
from btcpipe.market.handmade import synthetic_tape

SYMBOL = "BTCUSDT"
AGG = "/api/v3/aggTrades"


class SteppedTime:
    """The limiter's clock: frozen unless a test moves it."""

    def __init__(self) -> None:
        self.now = 60.0 * 29_000_000 + 30.0  # half a minute into a window

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def limiter_time() -> SteppedTime:
    return SteppedTime()


@pytest.fixture(scope="module")
def exchange(limiter_time: SteppedTime) -> Iterator[LocalExchange]:
    limiter = WeightLimiter(100, clock=limiter_time, tolerated_429s=2, ban_s=120)
    with LocalExchange(synthetic_tape(n_orders=300), limiter=limiter) as ex:
        yield ex


@pytest.fixture
def client(exchange: LocalExchange, limiter_time: SteppedTime) -> Iterator[httpx.Client]:
    limiter_time.now = 60.0 * 29_000_000 + 30.0
    exchange.limiter.reset()
    exchange.faults.clear()
    exchange.faults.set(seed=0)
    with httpx.Client(base_url=exchange.base_url, timeout=10) as c:
        yield c


def test_429_past_the_limit_then_418_for_a_client_that_keeps_going(
    client: httpx.Client, exchange: LocalExchange
) -> None:
    # 100 / 4 = 25 calls fit; the 26th gets 429, two more are tolerated, the next one is banned.
    responses = [client.get(AGG, params={"symbol": SYMBOL, "limit": 1}) for _ in range(29)]
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 25 + [429] * 3 + [418]
    limited = responses[25]
    assert limited.headers["Retry-After"] == "30"  # seconds to the end of the minute
    assert limited.json()["code"] == -1003
    assert "request weight" in limited.json()["msg"]
    assert limited.headers["X-MBX-USED-WEIGHT-1M"] == "104"
    banned = responses[-1]
    assert banned.headers["Retry-After"] == "120"
    assert banned.json()["code"] == -1003
    assert "banned" in banned.json()["msg"]
    stats = exchange.stats
    assert (stats.rejected_429, stats.banned_418) == (3, 1)
    assert stats.max_used_weight == 112


def test_a_client_pacing_by_the_weight_header_never_meets_a_429(
    client: httpx.Client, exchange: LocalExchange, limiter_time: SteppedTime
) -> None:
    calls = 0
    used = 0
    while calls < 80:  # 320 weight: more than three windows' worth
        if used + 4 > exchange.limiter.limit:
            limiter_time.now += 60.0  # what waiting for the next minute looks like to the server
        r = client.get(AGG, params={"symbol": SYMBOL, "limit": 5})
        assert r.status_code == 200
        used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
        calls += 1
    stats = exchange.stats
    assert stats.rejected_429 == 0
    assert stats.banned_418 == 0
    assert stats.max_used_weight <= exchange.limiter.limit


def test_waiting_out_the_ban_lets_the_client_back(
    client: httpx.Client, exchange: LocalExchange, limiter_time: SteppedTime
) -> None:
    for _ in range(29):
        client.get(AGG, params={"symbol": SYMBOL, "limit": 1})
    assert client.get("/api/v3/ping").status_code == 418
    limiter_time.now += 121
    r = client.get("/api/v3/ping")
    assert r.status_code == 200
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_latency_delays_answers(client: httpx.Client, exchange: LocalExchange) -> None:
    exchange.faults.set(latency_s=0.3)
    started = time.perf_counter()
    assert client.get("/api/v3/ping").status_code == 200
    assert time.perf_counter() - started >= 0.3
    assert exchange.fault_stats.delayed >= 1


def test_a_share_of_requests_gets_5xx_with_a_binance_body(client: httpx.Client, exchange: LocalExchange) -> None:
    exchange.limiter.reset()
    exchange.faults.set(error_rate=0.25, seed=42)
    codes = [client.get("/api/v3/time").status_code for _ in range(90)]
    errors = [c for c in codes if c >= 500]
    assert 8 <= len(errors) <= 40
    assert set(errors) <= {500, 502, 503, 504}
    assert set(codes) - set(errors) == {200}
    exchange.faults.script("5xx")
    r = client.get("/api/v3/time")
    assert r.status_code >= 500
    assert r.json() == {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def test_truncated_body_keeps_the_status_but_cuts_the_json(client: httpx.Client, exchange: LocalExchange) -> None:
    whole = client.get(AGG, params={"symbol": SYMBOL, "limit": 200})
    exchange.faults.script("truncate")
    cut = client.get(AGG, params={"symbol": SYMBOL, "limit": 200})
    assert cut.status_code == 200
    assert cut.headers["X-MBX-USED-WEIGHT-1M"] == "8"
    assert 0 < len(cut.content) < len(whole.content)
    assert whole.content.startswith(cut.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


def test_dropped_connection_gives_no_response_and_the_server_lives_on(
    client: httpx.Client, exchange: LocalExchange
) -> None:
    exchange.faults.script("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(AGG, params={"symbol": SYMBOL, "limit": 5})
    assert client.get("/api/v3/ping").status_code == 200
    assert exchange.fault_stats.dropped >= 1


def test_faults_switch_on_and_off_while_requests_run(client: httpx.Client, exchange: LocalExchange) -> None:
    results: list[int] = []
    progress = threading.Condition()
    done = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=exchange.base_url, timeout=10) as c:
            while not done.is_set():
                code = c.get("/api/v3/ping").status_code
                with progress:
                    results.append(code)
                    progress.notify_all()

    def wait_for_more(n: int) -> None:
        with progress:
            target = len(results) + n
            assert progress.wait_for(lambda: len(results) >= target, timeout=30)

    exchange.limiter.reset()
    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        wait_for_more(10)
        exchange.faults.set(error_rate=1.0)
        wait_for_more(10)
        exchange.faults.set(error_rate=0.0)
        wait_for_more(10)
    finally:
        done.set()
        worker.join()
    assert results[:5] == [200] * 5
    assert any(code >= 500 for code in results)
    assert results[-5:] == [200] * 5


def test_the_exchange_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        LocalExchange(synthetic_tape(n_orders=5), host="0.0.0.0")


def test_a_port_already_taken_is_a_clear_start_error(exchange: LocalExchange) -> None:
    with pytest.raises(ExchangeError, match="failed to start"):
        LocalExchange(synthetic_tape(n_orders=5), port=exchange.port).start()
