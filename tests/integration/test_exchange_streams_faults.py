"""Injected stream faults as a client sees them: dropped connections, garbage frames, a skipped trade id
(still on REST), a skipped depth diff (the U/u chain breaks), a stall."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from support.streams import (
    KEY,
    Received,
    Window,
    collect,
    decode_all,
    expected_depth_ids,
    expected_trade_groups,
    run,
    wait_clients_then_play,
)

from btcpipe.binance.sbe import TradesEvent, decode
from btcpipe.domain.errors import DecodeError
from btcpipe.domain.records import DepthDiff
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate

SBE_HEADERS = {"X-MBX-APIKEY": KEY}


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return simulate(SimConfig(seed=11, duration_s=300))


@pytest.fixture(scope="module")
def clock(tape: MarketTape) -> ManualClock:
    return ManualClock(tape.start_us + US_PER_SEC)


@pytest.fixture(scope="module")
def exchange(tape: MarketTape, clock: ManualClock) -> Iterator[LocalExchange]:
    with LocalExchange(tape, clock=clock, streams=StreamConfig(api_keys=frozenset({KEY}))) as ex:
        yield ex


def _trade_ids(got: Received) -> list[int]:
    return [t.id for e in decode_all(got.binary) if isinstance(e, TradesEvent) for t in e.trades]


def test_dropped_connections_end_abruptly_for_every_client(exchange: LocalExchange) -> None:
    ctl = exchange.streams
    opened = ctl.stats().connections_opened

    async def two() -> list[Received]:
        results = await asyncio.gather(
            collect(f"{exchange.ws_url}/ws/btcusdt@trade", headers=SBE_HEADERS, until=lambda r: r.closed),
            collect(f"{exchange.ws_url}/json/ws/btcusdt@trade", until=lambda r: r.closed),
            asyncio.to_thread(
                lambda: (ctl.wait_until(lambda s: s.connections_opened >= opened + 2), ctl.drop_connections())
            ),
        )
        return list(results[:2])

    for got in run(two()):
        assert got.closed
        assert got.close_code not in (1000, 1001)  # no close handshake: the socket just died
    assert ctl.stats().dropped_fault >= 2
    ctl.wait_until(lambda s: s.connections_open == 0)


def test_a_garbage_frame_reaches_sbe_and_json_clients_and_fails_to_decode(exchange: LocalExchange) -> None:
    ctl = exchange.streams
    opened = ctl.stats().connections_opened

    async def two() -> list[Received]:
        results = await asyncio.gather(
            collect(f"{exchange.ws_url}/ws/btcusdt@trade", headers=SBE_HEADERS, until=lambda r: len(r.binary) >= 1),
            collect(f"{exchange.ws_url}/json/ws/btcusdt@trade", until=lambda r: len(r.text) >= 1),
            asyncio.to_thread(
                lambda: (ctl.wait_until(lambda s: s.connections_opened >= opened + 2), ctl.send_garbage())
            ),
        )
        return list(results[:2])

    sbe, js = run(two())
    with pytest.raises(DecodeError):
        decode(sbe.binary[0])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(js.text[0])


def test_a_skipped_trade_is_missing_from_the_stream_but_served_by_rest(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 3.0)
    ids = [i for g in expected_trade_groups(tape, window.start, window.end) for i in g]
    exchange.streams.skip_trade()  # the next trade that goes out
    exchange.streams.skip_trade(ids[-3])  # and a given id
    got = run(
        collect(f"{exchange.ws_url}/ws/btcusdt@trade", headers=SBE_HEADERS,
                until=lambda r: sum(1 for _ in _trade_ids(r)) >= len(ids) - 2,
                on_open=lambda: window.play_when_connected(1))
    )
    received = _trade_ids(got)
    missing = sorted(set(ids) - set(received))
    assert missing == [ids[0], ids[-3]]
    assert received == [i for i in ids if i not in missing]
    assert exchange.streams.stats().skipped_trade_ids[-2:] == missing
    with httpx.Client(base_url=exchange.base_url) as rest:
        body = rest.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": missing[0], "limit": 1})
    assert body.status_code == 200
    assert body.json()[0]["id"] == missing[0]


def test_a_skipped_depth_update_breaks_the_clients_u_chain_exactly_once(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 4.0)
    expected = expected_depth_ids(tape, window.start, window.end)
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(expected))  # the tape's chain is whole
    exchange.streams.skip_depth_update()
    got = run(
        collect(f"{exchange.ws_url}/ws/btcusdt@depth", headers=SBE_HEADERS,
                until=lambda r: len(r.binary) >= len(expected) - 1, on_open=lambda: window.play_when_connected(1))
    )
    diffs = [d for d in decode_all(got.binary) if isinstance(d, DepthDiff)]
    received = [(d.first_update_id, d.last_update_id) for d in diffs]
    assert received == expected[1:]  # the first diff after the fault was armed is the one omitted
    assert exchange.streams.stats().skipped_depth[-1] == expected[0]
    # Later diffs chain on; the break is visible against the client's book (built up to expected[0] - 1).
    assert received[0][0] > expected[0][0]


def test_a_stall_holds_every_frame_back_then_delivers_them_all_in_order(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 2.0)
    ids = [i for g in expected_trade_groups(tape, window.start, window.end) for i in g]
    ctl = exchange.streams
    stall_s = 0.6
    opened = ctl.stats().connections_opened
    started: list[float] = []

    def stall_then_play() -> None:
        ctl.wait_until(lambda s: s.connections_opened >= opened + 1)
        ctl.stall(stall_s)
        started.append(time.monotonic())  # the clients' loop time is monotonic too
        clock.set(window.end)
        ctl.wake()

    async def one() -> Received:
        got, _ = await asyncio.gather(
            collect(f"{exchange.ws_url}/json/ws/btcusdt@trade", until=lambda r: len(r.text) >= len(ids)),
            asyncio.to_thread(stall_then_play),
        )
        return got

    got = run(one())
    assert [orjson.loads(t)["t"] for t in got.text] == ids
    assert got.arrival[0] - started[0] >= stall_s * 0.8  # nothing came while the stall lasted
    assert not got.closed


def test_many_clients_get_identical_frames_and_only_from_when_they_joined(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 2.0)
    groups = expected_trade_groups(tape, window.start, window.end)
    n = 5
    url = f"{exchange.ws_url}/ws/btcusdt@trade"

    async def clients() -> list[Received]:
        results = await asyncio.gather(
            *(collect(url, headers=SBE_HEADERS, until=lambda r: len(r.binary) >= len(groups)) for _ in range(n)),
            asyncio.to_thread(wait_clients_then_play, window, n),
        )
        return list(results[:n])  # type: ignore[arg-type]

    got = run(clients())
    assert all(g.binary == got[0].binary for g in got)
    assert [[t.id for t in e.trades] for e in decode_all(got[0].binary) if isinstance(e, TradesEvent)] == groups
    # A late client starts at the exchange's now, not at the start of the tape.
    late_window = Window(exchange, clock, 1.0)
    late_groups = expected_trade_groups(tape, late_window.start, late_window.end)
    late = run(
        collect(url, headers=SBE_HEADERS, until=lambda r: len(r.binary) >= len(late_groups),
                on_open=lambda: late_window.play_when_connected(1))
    )
    first = decode_all(late.binary)[0]
    assert isinstance(first, TradesEvent)
    assert first.transact_time > late_window.start
