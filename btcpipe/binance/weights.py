"""Binance spot market-data request weights (``shared/binance/REST.md``): facts of the API, kept once.

The REST client paces itself by them and the local exchange charges them, so both must read the same
table; a weight changed here changes for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

API = "/api/v3"
DEPTH_PATH = f"{API}/depth"
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000

# Endpoints whose weight does not depend on the parameters. depth's does: ``depth_weight``.
WEIGHTS: Mapping[str, int] = MappingProxyType(
    {
        f"{API}/ping": 1,
        f"{API}/time": 1,
        f"{API}/exchangeInfo": 20,
        f"{API}/aggTrades": 4,
        f"{API}/historicalTrades": 25,
        f"{API}/trades": 25,
        f"{API}/klines": 2,
        f"{API}/uiKlines": 2,
        f"{API}/avgPrice": 2,
    }
)

# The heaviest fixed-weight request (historicalTrades): a client's weight budget must hold at least one.
MAX_PAGE_WEIGHT = max(WEIGHTS.values())

def ticker_weight(path: str, n_symbols: int | None) -> int | None:
    """The weight of a ticker endpoint asked for ``n_symbols`` symbols (None: all); None if not a ticker path."""
    k = n_symbols
    if path == f"{API}/ticker/24hr":
        return 80 if k is None or k > 100 else (2 if k <= 20 else 40)
    if path == f"{API}/ticker":
        return min(4 * (k or 1), 200)
    if path in (f"{API}/ticker/price", f"{API}/ticker/bookTicker"):
        return 2 if k == 1 else 4
    return None

# (largest limit of the tier, weight): 1–100 → 5, 101–500 → 25, 501–1000 → 50, 1001–5000 → 250.
_DEPTH_TIERS = ((100, 5), (500, 25), (1000, 50))
_DEPTH_TOP_WEIGHT = 250


def depth_weight(limit: int) -> int:
    """The weight of ``/api/v3/depth`` with this ``limit`` (callers cap the limit to 1..5000 first)."""
    for largest, weight in _DEPTH_TIERS:
        if limit <= largest:
            return weight
    return _DEPTH_TOP_WEIGHT
