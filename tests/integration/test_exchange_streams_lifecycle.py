"""Connection lifecycle of the exchange's streams over real sockets: pings, serverShutdown, maximum age,
the connection-attempt limit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import orjson
import pytest
from support.streams import KEY, Received, collect, handshake, run

from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig, StreamStats
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate

SBE_HEADERS = {"X-MBX-APIKEY": KEY}


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return simulate(SimConfig(seed=3, duration_s=120))


def _exchange(tape: MarketTape, **cfg: float | int) -> LocalExchange:
    config = StreamConfig(api_keys=frozenset({KEY}), **cfg)  # type: ignore[arg-type]
    return LocalExchange(tape, clock=ManualClock(tape.start_us + 10 * US_PER_SEC), streams=config)


@pytest.fixture(scope="module")
def fast_pings(tape: MarketTape) -> Iterator[LocalExchange]:
    with _exchange(tape, ping_interval_s=0.1, pong_timeout_s=0.4, shutdown_grace_s=0.3) as ex:
        yield ex


def _once(
    ex: LocalExchange, predicate: Callable[[StreamStats], bool], action: Callable[[], object]
) -> threading.Thread:
    """Run ``action`` from another thread as soon as the stream counters satisfy ``predicate``."""

    def go() -> None:
        ex.streams.wait_until(predicate, timeout=10)
        action()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_a_client_that_pongs_stays_connected_through_many_pings(fast_pings: LocalExchange) -> None:
    before = fast_pings.streams.stats()
    got = run(
        collect(f"{fast_pings.ws_url}/ws/btcusdt@trade", headers=SBE_HEADERS, autoping=False, pong=True,
                until=lambda r: r.pings >= 5)
    )
    assert got.pings >= 5
    assert not got.closed
    after = fast_pings.streams.stats()
    assert after.pongs_received - before.pongs_received >= 5
    assert after.closed_no_pong == before.closed_no_pong


def test_a_client_that_does_not_pong_is_disconnected_after_the_pong_timeout(fast_pings: LocalExchange) -> None:
    before = fast_pings.streams.stats()
    got = run(
        collect(f"{fast_pings.ws_url}/json/ws/btcusdt@trade", autoping=False, pong=False, until=lambda r: r.closed)
    )
    assert got.closed
    assert got.close_code == 1008
    assert got.pings == 1  # one unanswered ping is enough
    assert fast_pings.streams.stats().closed_no_pong == before.closed_no_pong + 1


def test_server_shutdown_sends_the_event_frame_then_closes_after_the_grace_period(fast_pings: LocalExchange) -> None:
    ctl = fast_pings.streams
    before = ctl.stats()
    opened = before.connections_opened
    _once(fast_pings, lambda s: s.connections_opened >= opened + 2, ctl.server_shutdown)

    async def two() -> tuple[Received, Received]:
        sbe, js = await asyncio.gather(
            collect(f"{fast_pings.ws_url}/stream?streams=btcusdt@trade", headers=SBE_HEADERS, until=lambda r: r.closed),
            collect(f"{fast_pings.ws_url}/json/stream?streams=btcusdt@trade", until=lambda r: r.closed),
        )
        return sbe, js

    sbe, js = run(two())
    now = fast_pings.state.now_us()
    for got, unit in ((sbe, 1), (js, 1000)):
        assert got.closed
        assert got.close_code == 1001
        assert len(got.text) == 1
        event = orjson.loads(got.text[0])
        if got is js:  # a combined JSON stream wraps it like every payload (Binance's "!serverShutdown")
            assert event["stream"] == "!serverShutdown"
            event = event["data"]
        assert event == {"e": "serverShutdown", "E": now // unit}  # µs on SBE, ms on JSON by default
        assert got.closed_at - got.arrival[0] >= 0.2  # the grace period (0.3 s) passed before the close
    after = ctl.stats()
    assert after.shutdowns_sent - before.shutdowns_sent == 2
    assert after.closed_shutdown - before.closed_shutdown == 2
    # The exchange itself stays up: a client reconnects at once.
    status, _ = run(handshake(f"{fast_pings.ws_url}/ws/btcusdt@trade", SBE_HEADERS))
    assert status == 101


def test_connections_older_than_the_maximum_age_are_closed(tape: MarketTape) -> None:
    with _exchange(tape, max_connection_age_s=0.3) as ex:
        got = run(collect(f"{ex.ws_url}/ws/btcusdt@depth", headers=SBE_HEADERS, until=lambda r: r.closed))
        assert got.closed
        assert got.close_code == 1001
        assert "age" in got.close_message
        assert ex.streams.stats().closed_max_age == 1


def test_connection_attempts_beyond_the_limit_per_ip_are_refused_429_until_reset(tape: MarketTape) -> None:
    with _exchange(tape, attempt_limit=4, attempt_window_s=300) as ex:
        url = f"{ex.ws_url}/ws/btcusdt@trade"

        async def attempts() -> list[tuple[int, dict[str, str]]]:
            # Refused handshakes count too: the 401 below uses up an attempt.
            results = [await handshake(url)]
            results += [await handshake(url, SBE_HEADERS) for _ in range(4)]
            return results

        results = run(attempts())
        assert [s for s, _ in results] == [401, 101, 101, 101, 429]
        assert 1 <= int(results[-1][1]["Retry-After"]) <= 300
        assert run(handshake(f"{ex.ws_url}/json/ws/btcusdt@trade"))[0] == 429  # per IP, not per path
        assert ex.streams.stats().refused_429 == 2
        ex.streams.reset_attempts()
        assert run(handshake(url, SBE_HEADERS))[0] == 101
