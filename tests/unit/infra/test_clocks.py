"""Exchange clocks: history shows the whole tape, replay maps wall time onto tape time."""

from __future__ import annotations

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.infra.clocks import HistoryClock, ManualClock, ReplayClock


def test_history_clock_is_never_before_the_tapes_end() -> None:
    wall = ManualClock(1_000)
    clock = HistoryClock(5_000, wall=wall)
    assert clock.now_us() == 5_000
    wall.set(9_000)
    assert clock.now_us() == 9_000


def test_replay_clock_advances_tape_time_with_the_wall_at_its_speed() -> None:
    wall = ManualClock(1_700_000_000_000_000)
    clock = ReplayClock(1_600_000_000_000_000, speed=4.0, wall=wall)
    assert clock.now_us() == 1_600_000_000_000_000
    wall.advance(2.5)
    assert clock.now_us() == 1_600_000_010_000_000


def test_replay_speed_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="positive"):
        ReplayClock(0, speed=0.0)


def test_a_held_replay_stays_at_the_tape_start_until_started_then_runs_at_its_speed() -> None:
    wall = ManualClock(5_000_000)
    clock = ReplayClock(1_000_000, speed=4.0, wall=wall, held=True)
    wall.advance(10)
    assert clock.now_us() == 1_000_000
    clock.start()
    wall.advance(0.5)
    assert clock.now_us() == 1_000_000 + 2_000_000
