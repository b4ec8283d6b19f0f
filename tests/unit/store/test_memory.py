"""In-process online store: TTL on the injected clock, bounded memory, latest after expiry."""

from __future__ import annotations

from dataclasses import dataclass

from btcpipe.domain.messages import FeatureVector1s
from btcpipe.store.memory import InProcessOnlineStore

T0 = 1_723_100_000_000_000


@dataclass
class ManualClock:
    now: int = T0

    def now_us(self) -> int:
        return self.now


def row(ts_sec: int) -> FeatureVector1s:
    return FeatureVector1s("BTCUSDT", ts_sec, "h", (1.0,), ts_sec)


def test_a_row_lives_exactly_its_ttl_on_the_injected_clock() -> None:
    clock = ManualClock()
    store = InProcessOnlineStore(clock)
    store.put_features("BTCUSDT", T0, row(T0), ttl_s=10)
    clock.now += 10_000_000 - 1
    assert store.get_features("BTCUSDT", T0) == row(T0)
    clock.now += 1
    assert store.get_features("BTCUSDT", T0) is None


def test_expired_rows_are_swept_so_memory_stays_bounded() -> None:
    clock = ManualClock()
    store = InProcessOnlineStore(clock, sweep_every=100)
    for i in range(10_000):
        clock.now = T0 + i * 1_000_000
        store.put_features("BTCUSDT", clock.now, row(clock.now), ttl_s=5)
    assert len(store._rows) <= 100 + 5


def test_an_expired_latest_is_replaced_even_by_an_older_fresh_row() -> None:
    clock = ManualClock()
    store = InProcessOnlineStore(clock)
    store.put_features("BTCUSDT", T0 + 5_000_000, row(T0 + 5_000_000), ttl_s=1)
    clock.now += 2_000_000
    assert store.get_latest("BTCUSDT") is None
    store.put_features("BTCUSDT", T0 + 1_000_000, row(T0 + 1_000_000), ttl_s=60)
    assert store.get_latest("BTCUSDT") == row(T0 + 1_000_000)
