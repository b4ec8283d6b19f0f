"""Capped exponential backoff with equal jitter, and the dumps client retrying through it."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import httpx
import pytest

from btcpipe.binance.dumps import DumpsClient, dump_name
from btcpipe.domain.backoff import backoff_ceiling, backoff_delay
from btcpipe.domain.errors import ConfigError, ExchangeServerError


class Fixed:
    """A uniform source that always answers the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_ceiling_doubles_from_the_base_until_the_cap() -> None:
    assert [backoff_ceiling(n, 0.5, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_delay_spans_half_the_ceiling_to_the_ceiling() -> None:
    assert backoff_delay(3, 1.0, 60.0, Fixed(0.0)) == 2.0
    assert backoff_delay(3, 1.0, 60.0, Fixed(0.5)) == 3.0
    assert backoff_delay(3, 1.0, 60.0, Fixed(0.999999)) == pytest.approx(4.0, abs=1e-5)


def test_delays_from_a_seeded_source_stay_in_bounds_and_repeat_with_the_seed() -> None:
    first = [backoff_delay(n, 0.2, 15.0, random.Random(7)) for n in range(1, 40)]
    again = [backoff_delay(n, 0.2, 15.0, random.Random(7)) for n in range(1, 40)]
    assert first == again
    for n, delay in enumerate(first, start=1):
        ceiling = min(15.0, 0.2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_a_very_late_attempt_is_capped_not_an_overflow() -> None:
    assert backoff_ceiling(5000, 3.0, 30.0) == 30.0
    assert backoff_delay(10**6, 0.5, 30.0, Fixed(0.0)) == 15.0


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "message"),
    [(0, 1.0, 2.0, "from 1"), (-1, 1.0, 2.0, "from 1"), (1, -1.0, 2.0, "negative"), (1, 1.0, -2.0, "negative")],
)
def test_nonsense_arguments_are_refused(attempt: int, base: float, cap: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backoff_delay(attempt, base, cap, Fixed(0.5))


# --- the dumps client retries through it ------------------------------------------------------------------
DAY = dt.date(2025, 1, 2)
ZIP = b"not inspected by download()"


def _dumps_server(failures_before_success: int) -> tuple[list[str], httpx.MockTransport]:
    seen: list[str] = []
    name = dump_name("trades", "BTCUSDT", DAY)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) <= failures_before_success:
            return httpx.Response(503)
        if request.url.path.endswith(".CHECKSUM"):
            return httpx.Response(200, content=f"{hashlib.sha256(ZIP).hexdigest()}  {name}\n".encode())
        return httpx.Response(200, content=ZIP)

    return seen, httpx.MockTransport(handle)


def test_dump_download_retries_5xx_with_capped_jittered_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    seen, transport = _dumps_server(failures_before_success=4)
    with DumpsClient("http://127.0.0.1:1", backoff_base_s=1.0, backoff_cap_s=3.0, sleep=sleeps.append,
                     rng=random.Random(1), transport=transport) as client:
        name, data, sha = client.download("trades", "BTCUSDT", DAY)
    assert (name, data, sha) == (dump_name("trades", "BTCUSDT", DAY), ZIP, hashlib.sha256(ZIP).hexdigest())
    assert len(seen) == 6  # four 503s, then the checksum and the zip
    assert client.retries == 4
    for slept, ceiling in zip(sleeps, [1.0, 2.0, 3.0, 3.0], strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_dump_download_gives_up_after_max_retries_naming_the_request() -> None:
    sleeps: list[float] = []
    seen, transport = _dumps_server(failures_before_success=100)
    with DumpsClient("http://127.0.0.1:1", max_retries=2, sleep=sleeps.append, transport=transport) as client, \
            pytest.raises(ExchangeServerError, match=r"GET http://127.0.0.1:1/data/spot/daily/trades/.*HTTP 503"):
        client.download("trades", "BTCUSDT", DAY)
    assert len(seen) == 3
    assert len(sleeps) == 2
