"""Ticker statistics (rolling windows, average price, best bid/ask) over a hand-made tape."""

from __future__ import annotations

import pytest

from btcpipe.domain.decimal import parse_decimal
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.tickers import (
    average_price,
    last_price,
    rolling_24h,
    rolling_window,
    window_size_us,
)
from btcpipe.market.handmade import market_tape

T0 = 1_735_689_600_000_000  # 2025-01-01 00:00 UTC
MIN = 60_000_000


def _market() -> SymbolMarket:
    return SymbolMarket(market_tape("BTCUSDT", [
        (1, T0 + 10 * MIN, "100.00", "1", False),
        (2, T0 + 20 * MIN + 5, "110.00", "1", True),
        (3, T0 + 21 * MIN, "90.00", "2", False),
        (4, T0 + 22 * MIN, "95.00", "1", True),
    ]))


@pytest.mark.parametrize(("raw", "us"), [("1m", MIN), ("59m", 59 * MIN), ("23h", 23 * 60 * MIN),
                                         ("7d", 7 * 24 * 60 * MIN)])
def test_window_sizes_binance_accepts(raw: str, us: int) -> None:
    assert window_size_us(raw) == us


@pytest.mark.parametrize("raw", ["0m", "60m", "24h", "8d", "1d2h", "1s", "", "1w"])
def test_window_sizes_binance_refuses(raw: str) -> None:
    assert window_size_us(raw) is None


def test_the_24h_window_sums_the_visible_trades_only() -> None:
    m = _market()
    s = rolling_24h(m, T0 + 21 * MIN)  # trade 4 has not happened yet
    assert (s.first_id, s.last_id, s.count) == (1, 3, 3)
    assert (s.open, s.high, s.low, s.last) == (parse_decimal("100"), parse_decimal("110"), parse_decimal("90"),
                                               parse_decimal("90"))
    assert s.volume == parse_decimal("4")
    assert s.price_change_percent() == "-10.000"
    assert s.weighted_avg_price == parse_decimal("97.5")  # (100 + 110 + 180) / 4


def test_an_empty_window_has_minus_one_ids_and_the_previous_close() -> None:
    s = rolling_window(_market(), MIN, T0 + 40 * MIN)
    assert (s.first_id, s.last_id, s.count, s.open, s.volume) == (-1, -1, 0, 0, 0)
    assert s.prev_close == parse_decimal("95")


def test_the_rolling_window_opens_on_the_minute() -> None:
    s = rolling_window(_market(), 2 * MIN, T0 + 22 * MIN + 30_000_000)  # asked from 20:30 → opens at 20:00
    assert s.open_time == T0 + 20 * MIN
    assert (s.first_id, s.count) == (2, 3)


def test_average_price_weights_the_last_five_minutes_and_falls_back_to_the_last_price() -> None:
    m = _market()
    assert average_price(m, T0 + 22 * MIN) == (parse_decimal("96.25"), T0 + 22 * MIN)  # (110 + 180 + 95) / 4
    assert average_price(m, T0 + 60 * MIN) == (parse_decimal("95"), T0 + 22 * MIN)
    assert average_price(m, T0) is None
    assert last_price(m, T0 + 20 * MIN + 5) == parse_decimal("110")
