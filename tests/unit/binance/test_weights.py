"""Request weights: Binance's tiers, and the REST client paces by exactly what the local exchange charges."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.weights import BULK, LIVE, Priority, WeightBudget, depth_weight
from btcpipe.domain.errors import ConfigError
from btcpipe.exchange.rest.api import request_weight


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)],
)
def test_depth_weight_follows_binances_tiers_at_their_edges(limit: int, weight: int) -> None:
    assert depth_weight(limit) == weight


def test_the_exchange_charges_a_depth_limit_out_of_range_as_binance_caps_it() -> None:
    assert request_weight("/api/v3/depth", {"limit": "9000"}) == 250
    assert request_weight("/api/v3/depth", {"limit": "0"}) == 5
    assert request_weight("/api/v3/depth", {"limit": "x"}) == 5  # refused later, charged at the default
    assert request_weight("/api/v3/depth", {}) == 5
    assert request_weight("/api/v3/allOrders", {}) is None


CALLS: list[tuple[str, Callable[[BinanceRestClient], object]]] = [
    ("ping", lambda c: c.ping()),
    ("time", lambda c: c.server_time()),
    ("exchangeInfo", lambda c: c.exchange_info()),
    ("depth 100", lambda c: c.depth("BTCUSDT", 100)),
    ("depth 101", lambda c: c.depth("BTCUSDT", 101)),
    ("depth 1000", lambda c: c.depth("BTCUSDT", 1000)),
    ("depth 5000", lambda c: c.depth("BTCUSDT", 5000)),
    ("aggTrades", lambda c: c.agg_trades("BTCUSDT", from_id=1)),
    ("historicalTrades", lambda c: c.historical_trades("BTCUSDT", from_id=1)),
    ("trades", lambda c: c.recent_trades("BTCUSDT")),
    ("klines", lambda c: c.klines("BTCUSDT", "1m")),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[name for name, _ in CALLS])
def test_the_client_counts_the_weight_the_exchange_charges_for_the_request_it_sends(
    call: Callable[[BinanceRestClient], object],
) -> None:
    charged: list[int | None] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        charged.append(request_weight(request.url.path, dict(request.url.params)))
        body: object = [] if request.url.path.endswith(("Trades", "trades", "klines")) else {}
        return httpx.Response(200, json=body)

    with BinanceRestClient("http://127.0.0.1:1", transport=httpx.MockTransport(exchange)) as client:
        call(client)
        sent = client.stats.weight_sent
    assert len(charged) == 1
    assert charged[0] is not None
    assert sent == charged[0]


# --- the shared budget ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _spend(budget: WeightBudget, weight: int, priority: Priority, reported: int) -> None:
    assert budget.take(weight, priority) == 0.0
    budget.settle(weight, reported)


def test_bulk_requests_stop_short_of_the_live_reserve_and_live_ones_still_go() -> None:
    clock = Clock()
    budget = WeightBudget(1000, budget_share=0.8, live_reserve_share=0.2, clock=clock)
    assert (budget.live_ceiling, budget.bulk_ceiling) == (800, 600)
    _spend(budget, 25, BULK, reported=520)  # the server's total: this process and others on the IP
    wait = budget.take(100, BULK)
    assert 0 < wait <= 60.0, "a bulk request past 600 waits for the window to roll"
    assert budget.take(250, LIVE) == 0.0, "a depth snapshot still fits under the live ceiling"
    budget.settle(250, 775)
    assert budget.take(50, LIVE) > 0, "past the live ceiling the live path waits too"
    clock.now += 60.0
    assert budget.take(25, BULK) == 0.0, "the window rolled"


def test_a_bulk_request_yields_while_a_live_one_waits() -> None:
    clock = Clock()
    budget = WeightBudget(1000, clock=clock)
    _spend(budget, 5, LIVE, reported=100)
    budget.waiting(LIVE, +1)
    assert budget.take(25, BULK) > 0
    budget.waiting(LIVE, -1)
    assert budget.take(25, BULK) == 0.0


def test_weight_in_flight_counts_before_its_answer_comes() -> None:
    budget = WeightBudget(1000, clock=Clock())
    _spend(budget, 25, BULK, reported=500)
    assert budget.take(50, BULK) == 0.0  # in flight: 550
    assert budget.take(75, BULK) > 0  # 550 + 75 would pass the bulk ceiling of 600
    budget.settle(50, 550)
    assert budget.used == 550


def test_a_429_fills_the_window_until_retry_after() -> None:
    clock = Clock()
    budget = WeightBudget(1000, clock=clock)
    _spend(budget, 25, LIVE, reported=10)
    budget.full_until(7.0)
    assert 6.9 <= budget.take(5, LIVE) <= 7.0
    clock.now += 7.0
    assert budget.take(5, LIVE) == 0.0


def test_a_reserve_that_leaves_no_bulk_share_is_refused() -> None:
    with pytest.raises(ConfigError, match="live reserve"):
        WeightBudget(1000, budget_share=0.5, live_reserve_share=0.5)


def test_clients_of_one_endpoint_share_one_budget() -> None:
    url = "http://127.0.0.1:9/shared-budget-test"
    with BinanceRestClient.shared(url, priority=BULK) as bulk, BinanceRestClient.shared(url + "/") as live:
        assert bulk.budget is live.budget
        assert (bulk.weight_budget, live.weight_budget) == (3600, 4800)
    with BinanceRestClient.shared("http://127.0.0.1:9/another") as other:
        assert other.budget is not bulk.budget
