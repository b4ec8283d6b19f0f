"""Fixtures of the conformance suite: two exchanges serving the real recording (history and live replay).

The clients run in their own venv as scripts (``support.binance_clients``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.binance_clients import after_everything_us
from support.binance_tape import RecordedStreams, read_recording

from btcpipe.binance.recording import load_recording
from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig, replay_clock
from btcpipe.infra.clocks import ManualClock

REPLAY_SPEED = 2.0
REPLAY_START_S = 120.0


@pytest.fixture(scope="session")
def recorded(recording_paths: list[Path]) -> RecordedStreams:
    return read_recording(recording_paths)


@pytest.fixture(scope="session")
def tape(recording_paths: list[Path]) -> MarketTape:
    return load_recording(recording_paths).to_tape()


@pytest.fixture(scope="session")
def history_exchange(tape: MarketTape) -> Iterator[LocalExchange]:
    """Exchange time stands just after the recording's last message: REST answers are fixed and comparable."""
    with LocalExchange(tape, clock=ManualClock(after_everything_us(tape))) as ex:
        yield ex


@pytest.fixture(scope="session")
def live_exchange(tape: MarketTape) -> Iterator[LocalExchange]:
    """The recording replayed at 2x from two minutes in: the streams carry it while the clients listen."""
    clock = replay_clock(tape, speed=REPLAY_SPEED, start_offset_s=REPLAY_START_S)
    with LocalExchange(tape, clock=clock, streams=StreamConfig(api_keys=frozenset({"conformance-key"}))) as ex:
        yield ex
