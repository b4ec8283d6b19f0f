"""Fault plans: seeded, scriptable, limited to the paths they are meant for, and validated."""

from __future__ import annotations

import threading

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.exchange.faults import Faults


def _kinds(faults: Faults, n: int, path: str = "/api/v3/aggTrades") -> list[str | None]:
    return [faults.plan(path).kind for _ in range(n)]


def test_same_seed_gives_the_same_faults() -> None:
    a, b = Faults(seed=7), Faults(seed=7)
    for f in (a, b):
        f.set(error_rate=0.2, truncate_rate=0.1, drop_rate=0.1)
    assert _kinds(a, 200) == _kinds(b, 200)


def test_rates_give_roughly_their_share() -> None:
    faults = Faults(seed=1)
    faults.set(error_rate=0.3, drop_rate=0.1)
    kinds = _kinds(faults, 4000)
    assert 0.26 < kinds.count("5xx") / 4000 < 0.34
    assert 0.07 < kinds.count("drop") / 4000 < 0.13
    assert kinds.count("truncate") == 0
    assert faults.stats().errors_5xx == kinds.count("5xx")


def test_scripted_faults_come_first_and_in_order() -> None:
    faults = Faults()
    faults.script("truncate", "5xx", "drop")
    assert _kinds(faults, 4) == ["truncate", "5xx", "drop", None]


def test_paths_outside_the_prefixes_are_never_faulted() -> None:
    faults = Faults()
    faults.set(error_rate=1.0, latency_s=0.5)
    plan = faults.plan("/ws/btcusdt@trade")
    assert plan.kind is None
    assert plan.delay_s == 0.0
    assert faults.plan("/data/spot/daily/trades/BTCUSDT/x.zip").kind == "5xx"


def test_latency_with_jitter_stays_within_bounds() -> None:
    faults = Faults(seed=3)
    faults.set(latency_s=0.1, jitter_s=0.05)
    delays = [faults.plan("/api/v3/ping").delay_s for _ in range(100)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 50


def test_5xx_statuses_come_from_the_configured_set() -> None:
    faults = Faults()
    faults.set(error_rate=1.0, error_statuses=(503,))
    assert {faults.plan("/api/v3/ping").status for _ in range(20)} == {503}


def test_clear_switches_everything_off() -> None:
    faults = Faults()
    faults.set(error_rate=0.5, latency_s=1.0)
    faults.script("drop")
    faults.set_dump_fault("corrupt_zip")
    faults.clear()
    assert _kinds(faults, 50) == [None] * 50
    assert faults.plan("/api/v3/ping").delay_s == 0.0
    assert faults.dump_fault() is None


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"error_rate": 0.6, "drop_rate": 0.6}, {"latency_s": -1.0}, {"error_statuses": (404,)}],
)
def test_invalid_settings_are_refused_and_leave_the_old_ones(kwargs: dict[str, object]) -> None:
    faults = Faults()
    faults.set(truncate_rate=0.25)
    with pytest.raises(ConfigError, match=r"rate|latency|statuses"):
        faults.set(**kwargs)  # type: ignore[arg-type]
    faults.set(seed=0)
    kinds = _kinds(faults, 2000)
    assert kinds.count("5xx") == 0
    assert 0.2 < kinds.count("truncate") / 2000 < 0.3


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown fault"):
        Faults().script("explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown dump fault"):
        Faults().set_dump_fault("late")  # type: ignore[arg-type]


def test_switching_from_another_thread_while_planning_is_safe() -> None:
    faults = Faults(seed=5)
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            faults.set(error_rate=0.5)
            faults.script("drop")
            faults.set(error_rate=0.0)

    thread = threading.Thread(target=toggle)
    thread.start()
    try:
        kinds = _kinds(faults, 20_000)
    finally:
        stop.set()
        thread.join()
    assert set(kinds) <= {None, "5xx", "drop"}
    stats = faults.stats()
    assert stats.errors_5xx == kinds.count("5xx")
    assert stats.dropped == kinds.count("drop")
