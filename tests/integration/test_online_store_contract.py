"""One online-store contract for the in-process store and the Redis store on a real redis-server."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.store.port import OnlineStore
from btcpipe.store.redis_store import RedisOnlineStore

pytestmark = pytest.mark.services

T0 = 1_723_100_000_000_000


@dataclass
class ManualClock:
    now: int = T0

    def now_us(self) -> int:
        return self.now


@dataclass
class StoreUnderTest:
    store: OnlineStore
    clock: ManualClock | None  # None: real time (Redis expires on its own clock)

    def let_expire(self, ttl_s: int, probe: FeatureVector1s) -> bool:
        """Let ``ttl_s`` pass; True once ``probe`` reads as missing."""
        if self.clock is not None:
            self.clock.now += ttl_s * 1_000_000
            return self.store.get_features(probe.symbol, probe.ts_sec) is None
        deadline = time.monotonic() + ttl_s + 3
        while time.monotonic() < deadline:  # Redis expiry is an event on the server's clock; poll for it
            if self.store.get_features(probe.symbol, probe.ts_sec) is None:
                return True
            time.sleep(0.05)
        return False


@pytest.fixture(params=["in-process", "redis"])
def sut(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    if request.param == "in-process":
        clock = ManualClock()
        s = StoreUnderTest(InProcessOnlineStore(clock), clock)
    else:
        s = StoreUnderTest(RedisOnlineStore(RedisOptions(request.getfixturevalue("redis_url"))), None)
    yield s
    s.store.close()


def row(ts_sec: int, symbol: str = "BTCUSDT", *values: float) -> FeatureVector1s:
    return FeatureVector1s(symbol, ts_sec, "f00d" * 16, values or (0.5, math.nan, -1e-9, 3.0), ts_sec + 1234)


def same(a: FeatureVector1s | None, b: FeatureVector1s) -> bool:
    return a is not None and (a.symbol, a.ts_sec, a.schema_hash, a.ts_computed) == (
        b.symbol, b.ts_sec, b.schema_hash, b.ts_computed
    ) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a.values, b.values, strict=True))


def test_a_stored_row_reads_back_value_for_value_including_nan(sut: StoreUnderTest) -> None:
    r = row(T0)
    sut.store.put_features("BTCUSDT", T0, r)
    assert same(sut.store.get_features("BTCUSDT", T0), r)
    assert same(sut.store.get_latest("BTCUSDT"), r)


def test_missing_rows_and_symbols_read_as_none(sut: StoreUnderTest) -> None:
    sut.store.put_features("BTCUSDT", T0, row(T0))
    assert sut.store.get_features("BTCUSDT", T0 + 1_000_000) is None
    assert sut.store.get_features("ETHUSDT", T0) is None
    assert sut.store.get_latest("ETHUSDT") is None


def test_latest_only_moves_forward_in_time(sut: StoreUnderTest) -> None:
    sut.store.put_features("BTCUSDT", T0 + 2_000_000, row(T0 + 2_000_000))
    sut.store.put_features("BTCUSDT", T0 + 1_000_000, row(T0 + 1_000_000))  # late row
    latest = sut.store.get_latest("BTCUSDT")
    assert latest is not None
    assert latest.ts_sec == T0 + 2_000_000
    assert same(sut.store.get_features("BTCUSDT", T0 + 1_000_000), row(T0 + 1_000_000))
    sut.store.put_features("BTCUSDT", T0 + 3_000_000, row(T0 + 3_000_000))
    assert same(sut.store.get_latest("BTCUSDT"), row(T0 + 3_000_000))


def test_put_many_stores_every_row_and_points_latest_at_the_newest_per_symbol(sut: StoreUnderTest) -> None:
    rows = [row(T0 + i * 1_000_000, sym, float(i)) for i in range(50) for sym in ("BTCUSDT", "ETHUSDT")]
    sut.store.put_many(rows[::-1])
    for r in rows:
        assert same(sut.store.get_features(r.symbol, r.ts_sec), r)
    for sym in ("BTCUSDT", "ETHUSDT"):
        latest = sut.store.get_latest(sym)
        assert latest is not None
        assert latest.ts_sec == T0 + 49_000_000


def test_rows_expire_after_their_ttl(sut: StoreUnderTest) -> None:
    r = row(T0)
    sut.store.put_features("BTCUSDT", T0, r, ttl_s=1)
    assert sut.store.get_features("BTCUSDT", T0) is not None
    assert sut.let_expire(1, r)
    assert sut.store.get_latest("BTCUSDT") is None


@pytest.mark.parametrize(
    ("symbol", "ts_sec", "vector", "ttl"),
    [
        ("ETHUSDT", T0, row(T0), 300),  # filed under another symbol
        ("BTCUSDT", T0 + 1_000_000, row(T0), 300),  # filed under another second
        ("BTCUSDT", T0 // 1_000_000, row(T0 // 1_000_000), 300),  # seconds, not µs
        ("BTCUSDT", T0 + 5, row(T0 + 5), 300),  # not a whole second
        ("BTCUSDT", T0, row(T0), 0),
    ],
)
def test_malformed_writes_are_refused_and_store_nothing(
    sut: StoreUnderTest, symbol: str, ts_sec: int, vector: FeatureVector1s, ttl: int
) -> None:
    with pytest.raises(MalformedRecordError):
        sut.store.put_features(symbol, ts_sec, vector, ttl_s=ttl)
    assert sut.store.get_latest(symbol) is None
    assert sut.store.get_latest(vector.symbol) is None
