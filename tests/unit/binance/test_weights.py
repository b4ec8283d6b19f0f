"""Request weights: Binance's tiers, and the REST client paces by exactly what the local exchange charges."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.weights import depth_weight
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
