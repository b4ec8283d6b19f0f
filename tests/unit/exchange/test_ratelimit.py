"""The weight limiter: fixed 1-minute windows per IP, 429 past the limit, 418 for clients that keep going."""

from __future__ import annotations

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.exchange.ratelimit import WeightLimiter

MINUTE = 60.0 * 16_667  # the start of a minute


class FakeTime:
    def __init__(self, now: float = MINUTE + 20) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_used_weight_adds_endpoint_weights_within_the_minute() -> None:
    limiter = WeightLimiter(6000, clock=FakeTime())
    assert [limiter.check("1.1.1.1", 4).used_weight for _ in range(4)] == [4, 8, 12, 16]
    assert limiter.check("2.2.2.2", 25).used_weight == 25  # per IP
    assert limiter.used_weight("1.1.1.1") == 16


def test_window_is_aligned_to_the_minute_and_resets_at_its_end() -> None:
    t = FakeTime(MINUTE + 20)
    limiter = WeightLimiter(100, clock=t)
    limiter.check("a", 60)
    t.now = MINUTE + 59.9
    assert limiter.check("a", 30).used_weight == 90
    t.now = MINUTE + 60
    assert limiter.check("a", 30).used_weight == 30
    assert limiter.used_weight("a") == 30


def test_request_past_the_limit_gets_429_with_seconds_to_the_window_end() -> None:
    t = FakeTime(MINUTE + 45.5)
    limiter = WeightLimiter(10, clock=t)
    assert limiter.check("a", 8).status == 200
    assert limiter.check("a", 2).status == 200  # exactly at the limit is allowed
    refused = limiter.check("a", 1)
    assert (refused.status, refused.retry_after_s, refused.used_weight) == (429, 15, 11)
    stats = limiter.stats()
    assert stats.rejected_429 == 1
    assert stats.max_used_weight == 11
    assert stats.banned_418 == 0


def test_client_ignoring_429s_is_banned_with_418_and_the_ban_doubles() -> None:
    t = FakeTime(MINUTE + 10)
    limiter = WeightLimiter(10, clock=t, tolerated_429s=2, ban_s=120)
    limiter.check("a", 10)
    statuses = [limiter.check("a", 1).status for _ in range(4)]
    assert statuses == [429, 429, 429, 418]
    banned = limiter.check("a", 1)
    assert banned.status == 418
    assert banned.retry_after_s == 120
    t.now += 121  # ban over, new minute: the client may come back
    assert limiter.check("a", 1).status == 200
    assert limiter.check("a", 10).status == 429
    assert [limiter.check("a", 1).status for _ in range(3)] == [429, 429, 418]
    assert limiter.check("a", 1).retry_after_s == 240
    assert limiter.stats().banned_418 == 4  # two bans, each followed by one refused request


def test_client_that_waits_out_its_429_is_not_banned() -> None:
    t = FakeTime(MINUTE + 50)
    limiter = WeightLimiter(10, clock=t, tolerated_429s=1)
    limiter.check("a", 10)
    assert limiter.check("a", 1).status == 429
    t.now = MINUTE + 60  # waited Retry-After
    assert [limiter.check("a", 5).status for _ in range(2)] == [200, 200]
    assert limiter.stats().banned_418 == 0


def test_other_ips_are_not_affected_by_a_ban() -> None:
    limiter = WeightLimiter(5, clock=FakeTime(), tolerated_429s=0)
    limiter.check("a", 6)
    assert limiter.check("a", 1).status == 418
    assert limiter.check("b", 5).status == 200


def test_reset_forgets_clients_and_counters() -> None:
    limiter = WeightLimiter(5, clock=FakeTime())
    limiter.check("a", 9)
    limiter.reset()
    assert limiter.stats().max_used_weight == 0
    assert limiter.check("a", 5).status == 200


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ConfigError, match="positive"):
        WeightLimiter(0)
